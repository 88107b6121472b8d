"""CPU time and memory of the server during a measurement: the tritonserver process and its children (the
Python-backend stubs, which run the serving logic and the in-process ONNX Runtime), read from /proc.

Triton's own CPU metrics (nv_cpu_utilization, nv_cpu_memory_used_bytes on /metrics) describe the whole machine,
perf_analyzer and anything else running included, so they say little about the server on a shared machine; the
process tree says what the server itself spent. A server started elsewhere (--url) cannot be read this way.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

PROC = Path("/proc")


def _stat_fields(text: str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses): [0] is the
    state, [1] the parent pid, [11:15] utime, stime, cutime, cstime in clock ticks."""
    return text.rsplit(")", 1)[1].split()


def tree_pids(root: int, proc: Path = PROC) -> list[int]:
    """`root` and every process descended from it that is alive now."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields((entry / "stat").read_text())[1])
        except (OSError, IndexError, ValueError):
            continue  # gone while reading
        children.setdefault(parent, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def tree_usage(root: int, proc: Path = PROC) -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of `root` and its descendants: user + system time of each, with that of
    children they have reaped; None if `root` is gone."""
    if not (proc / str(root)).is_dir():
        return None
    ticks, rss = 0, 0
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in tree_pids(root, proc):
        try:
            fields = _stat_fields((proc / str(pid) / "stat").read_text())
            statm = (proc / str(pid) / "statm").read_text().split()
        except OSError:
            continue
        ticks += sum(int(x) for x in fields[11:15])
        rss += int(statm[1]) * page
    return ticks / os.sysconf("SC_CLK_TCK"), rss


class ProcessSampler:
    """with ProcessSampler(pid) as s: ... -> s.result(inferences): the server's CPU use over the block (cores
    busy on average, as a percentage of one core, and CPU ms per inference) and its peak resident memory, or
    why there is none."""

    def __init__(self, pid: int | None, every_s: float = 0.25, proc: Path = PROC) -> None:
        self.pid, self.every_s, self.proc = pid, every_s, proc
        self.samples: list[tuple[float, float, int]] = []  # (monotonic time, CPU seconds, resident bytes)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        usage = tree_usage(self.pid, self.proc) if self.pid else None
        if usage is not None:
            self.samples.append((time.monotonic(), *usage))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def __enter__(self) -> ProcessSampler:
        if self.pid:
            self._sample()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._sample()

    def result(self, inferences: int | None = None) -> dict:
        if not self.pid:
            return {"absent": "the server is not a local process (--url): its CPU cannot be read"}
        if len(self.samples) < 2 or self.samples[-1][0] <= self.samples[0][0]:
            return {"absent": "the server process could not be read"}
        (t0, cpu0, _), (t1, cpu1, _) = self.samples[0], self.samples[-1]
        out = {
            "cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
            "cpu_s": round(cpu1 - cpu0, 3),
            "rss_peak_mb": round(max(rss for _, _, rss in self.samples) / 2**20, 1),
        }
        if inferences:
            out["cpu_ms_per_inference"] = round(1000 * (cpu1 - cpu0) / inferences, 4)
        return out
