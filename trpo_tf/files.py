"""Writing files so that a reader never sees half of one, and never through a symbolic link.

A run or export directory may come from elsewhere (downloaded, unpacked, shared): an entry
in it that is a symbolic link would send what trpo_tf writes to a file outside it. Every file
the package creates or rewrites there is opened with ``O_NOFOLLOW`` (new files also with
``O_EXCL``), and :func:`refuse_link` refuses an entry that is a link before anything is written.
"""

from __future__ import annotations

import os
from typing import IO

from trpo_tf.errors import InputError, RunDirError

# What a run directory holds (see trpo_tf.checkpoint, trpo_tf.rundir and trpo_tf.monitor):
RUN_FILE = "run.json"  # env id, seed, run id, command, ...
CONFIG_FILE = "config.yaml"  # the run's TRPOConfig
CHECKPOINT_DIR = "checkpoints"  # tf.train.CheckpointManager's files
PROGRESS_FILE = "progress.csv"  # one row per iteration (trpo_tf.monitor.CSVLogger)
LOCK_FILE = ".lock"  # held by the training that writes the run (trpo_tf.rundir)
DEFAULT_CHECKPOINT_EVERY = 10  # iterations between checkpoints of a training run
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


def refuse_link(path: str, error: type[InputError] = RunDirError) -> None:
    """Raise ``error`` naming ``path`` when it is a symbolic link (a missing path is fine)."""
    if os.path.islink(path):
        raise error(f"{path} is a symbolic link (to {os.readlink(path)}); trpo_tf writes nothing through a link, so "
                    f"that no file outside {os.path.dirname(path) or '.'} changes: remove the link")


def refuse_run_links(run_dir: str) -> None:
    """RunDirError naming the first entry of ``run_dir`` that trpo_tf writes and that is a symbolic link:
    ``.lock``, ``run.json``, ``config.yaml``, ``progress.csv``, ``checkpoints/`` and everything in it.

    Called before anything is written (TensorFlow writes a checkpoint through names of its own in
    ``checkpoints/``); the files are then opened without following links.
    """
    paths = [os.path.join(run_dir, name) for name in (LOCK_FILE, RUN_FILE, CONFIG_FILE, PROGRESS_FILE, CHECKPOINT_DIR)]
    checkpoint_dir = paths[-1]
    if os.path.isdir(checkpoint_dir) and not os.path.islink(checkpoint_dir):
        paths += [os.path.join(checkpoint_dir, name) for name in sorted(os.listdir(checkpoint_dir))]
    for path in paths:
        refuse_link(path)


def atomic_write(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a new temporary file, fsync and ``os.replace``.

    A process killed meanwhile leaves the old file (or none) and no temporary file behind
    it in the normal case; a reader sees either the old or the new contents. RunDirError when
    ``path`` (or the temporary name) is a symbolic link.
    """
    refuse_link(path)
    temporary = f"{path}.{os.getpid()}.tmp"
    refuse_link(temporary)
    if os.path.lexists(temporary):  # left by a killed process of the same id
        os.unlink(temporary)
    try:
        with os.fdopen(os.open(temporary, _NEW_FILE, 0o644), "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise


def create_new(path: str, error: type[InputError] = RunDirError) -> None:
    """Create ``path`` as a new empty file (mode 0644 less the umask); ``error`` naming it when anything,
    a symbolic link included, is there already. A writer that then opens it by name writes into this file."""
    refuse_link(path, error)
    try:
        os.close(os.open(path, _NEW_FILE, 0o644))
    except OSError as problem:
        raise error(f"cannot create {path}: {problem.strerror or problem}") from None


def open_append(path: str) -> IO[str]:
    """``path`` opened to append UTF-8 text, never through a symbolic link (RunDirError naming it)."""
    refuse_link(path)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    except OSError as problem:
        raise RunDirError(f"cannot open {path}: {problem.strerror or problem}") from None
    return os.fdopen(descriptor, "a", encoding="utf-8", newline="")
