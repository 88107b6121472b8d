"""`tritonforge serve` keeps the server's log after the server stops, in the cache directory (one per start, the
newest LOGS_KEPT kept); a log path the caller gives is never removed."""

from __future__ import annotations

import os

from tritonforge.server.process import LOGS_KEPT, LocalTritonServer, serve_log_path


def test_serve_logs_go_to_the_cache_directory_and_the_oldest_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONFORGE_CACHE", str(tmp_path))
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(LOGS_KEPT + 5):
        old = logs / f"tritonserver-old{i:03d}.log"
        old.write_text("x")
        os.utime(old, (1000 + i, 1000 + i))
    path = serve_log_path()
    assert path.parent == logs and path.name.startswith("tritonserver-") and not path.exists()
    left = sorted(p.name for p in logs.glob("tritonserver-*.log"))
    assert len(left) == LOGS_KEPT - 1 and left[0] == f"tritonserver-old{6:03d}.log"  # room for the new one


def test_a_given_log_survives_cleanup(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("what happened")
    server = LocalTritonServer(tmp_path, log_path=log)
    server.cleanup()
    assert log.read_text() == "what happened"
