"""The server's CPU time from /proc: the tritonserver process and its descendants (the Python-backend stubs),
nothing else on the machine."""

from __future__ import annotations

import os

from tritonforge.perf.cpu import ProcessSampler, tree_pids, tree_usage


def _proc(root, pid: int, parent: int, comm: str, ticks: tuple[int, int, int, int], rss_pages: int) -> None:
    d = root / str(pid)
    d.mkdir()
    utime, stime, cutime, cstime = ticks
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
    (d / "stat").write_text(f"{pid} ({comm}) S {parent} {pid} {pid} 0 -1 0 0 0 0 0 {utime} {stime} {cutime} {cstime} 20 0\n")
    (d / "statm").write_text(f"1000 {rss_pages} 10 1 0 100 0\n")


def test_the_server_tree_is_the_server_and_its_descendants_only(tmp_path):
    _proc(tmp_path, 100, 1, "tritonserver", (300, 100, 5, 5), 1000)
    _proc(tmp_path, 101, 100, "triton_python_backend_stub", (150, 50, 0, 0), 500)
    _proc(tmp_path, 102, 101, "odd (name) x", (10, 0, 0, 0), 10)  # a parenthesis in the name
    _proc(tmp_path, 200, 1, "perf_analyzer", (9000, 9000, 0, 0), 4000)  # the client: not the server
    (tmp_path / "self").mkdir()
    assert sorted(tree_pids(100, tmp_path)) == [100, 101, 102]
    seconds, rss = tree_usage(100, tmp_path)
    assert seconds == (410 + 200 + 10) / os.sysconf("SC_CLK_TCK")
    assert rss == 1510 * os.sysconf("SC_PAGE_SIZE")
    assert tree_usage(999, tmp_path) is None


def test_cpu_use_is_the_tree_s_cpu_time_over_the_wall_time(tmp_path):
    sampler = ProcessSampler(100, proc=tmp_path)
    sampler.samples = [(10.0, 1.0, 100 * 2**20), (12.0, 4.0, 300 * 2**20), (14.0, 7.0, 200 * 2**20)]
    assert sampler.result(12000) == {"cpu_pct": 150.0, "cpu_s": 6.0, "rss_peak_mb": 300.0, "cpu_ms_per_inference": 0.5}
    assert "not a local process" in ProcessSampler(None).result()["absent"]


def test_a_busy_process_reads_as_busy_on_the_real_proc():
    import time

    with ProcessSampler(os.getpid(), every_s=0.05) as sampler:
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            pass
    used = sampler.result(1000)
    assert used["cpu_s"] > 0.05 and used["cpu_pct"] > 10 and used["rss_peak_mb"] > 10, used
