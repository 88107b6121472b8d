"""Free loopback ports for servers started by tests (re-exported: the helper lives in tritonforge.server.ports)."""

from __future__ import annotations

from tritonforge.server.ports import free_ports

__all__ = ["free_ports"]
