"""Shared by the kill -9 tests: SIGKILL a process once what it writes shows it has reached a given point."""

import signal
import subprocess
import time
from typing import Callable

from trpo_tf import checkpoint


def kill_9_after_checkpoint(process: subprocess.Popen, run_dir: str, iteration: int, delay: float) -> None:
    """Wait (≤ 90 s) until ``run_dir`` has a checkpoint of at least ``iteration``, sleep ``delay``
    seconds so the kill lands inside a later iteration or save, then SIGKILL ``process``."""
    kill_9_when(process, lambda: checkpoint.latest(run_dir) is not None
                and checkpoint.iteration_of(checkpoint.latest(run_dir)) >= iteration, delay, 90, "no checkpoint appeared")


def kill_9_when(process: subprocess.Popen, ready: Callable[[], bool], delay: float, timeout: float,
                never: str) -> None:
    """Wait (≤ ``timeout`` s; failing with ``never``) until ``ready()``, sleep ``delay`` seconds, then SIGKILL
    ``process`` (whose stderr must be a pipe: it is shown if the process ends first)."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, never
            time.sleep(0.02)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
