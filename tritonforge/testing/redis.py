"""A real redis-server (Debian package redis-server) on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING

from tritonforge.extras import require
from tritonforge.server.ports import free_ports

if TYPE_CHECKING:
    import redis


class RedisServer:
    """Start/stop/kill a private redis-server without persistence; `args` are extra redis-server options
    (e.g. ["--maxmemory", "1mb", "--maxmemory-policy", "noeviction"]), `password` sets requirepass."""

    def __init__(self, args: list[str] | None = None, password: str = "") -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server; make test does it)")
        self.port = free_ports(1)[0]
        self.dir = tempfile.mkdtemp(prefix="tf-redis-")
        self.args = list(args or [])
        self.password = password
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        auth = ["--requirepass", self.password] if self.password else []
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--protected-mode",
                "yes",
                *auth,
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return self
            except require("redis", "testing", "RedisServer").ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self) -> redis.Redis:
        """A redis-py client of this server."""
        return require("redis", "testing", "RedisServer").Redis.from_url(self.url, password=self.password or None)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
