"""Shared by the kill -9 tests: SIGKILL a training process once a checkpoint exists."""

import signal
import subprocess
import time

from trpo_tf import checkpoint


def kill_9_after_checkpoint(process: subprocess.Popen, run_dir: str, iteration: int, delay: float) -> None:
    """Wait (≤ 90 s) until ``run_dir`` has a checkpoint of at least ``iteration``, sleep ``delay``
    seconds so the kill lands inside a later iteration or save, then SIGKILL ``process``."""
    try:
        deadline = time.monotonic() + 90
        while checkpoint.latest(run_dir) is None or checkpoint.iteration_of(checkpoint.latest(run_dir)) < iteration:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
