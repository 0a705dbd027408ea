"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os

PROGRESS_FILE = "progress.csv"  # in a run directory: one row per iteration (trpo_tf.monitor.CSVLogger)
DEFAULT_CHECKPOINT_EVERY = 10  # iterations between checkpoints of a training run


def atomic_write(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file, fsync and ``os.replace``.

    A process killed meanwhile leaves the old file (or none) and no temporary file behind
    it in the normal case; a reader sees either the old or the new contents.
    """
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
