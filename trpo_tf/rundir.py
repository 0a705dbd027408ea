"""Claiming a run directory: one training at a time, and a new run never over an old one.

    with lock_run_dir(run_dir):          # RunDirInUseError at once if another process trains there
        check_new_run_dir(run_dir)       # RunDirError if run_dir already holds a run
        ...train, write progress and checkpoints...

The lock is ``fcntl.flock`` on ``RUN_DIR/.lock``, which holds the owner's process id for
messages. The operating system releases it when the process ends, however it ends, so a
lock left behind by a killed process never blocks anyone; the file itself is removed on a
normal release. Locks are advisory: they keep out other trainings that take them (the
``trpo-tf`` command does), not other programs. POSIX only (``fcntl``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Iterator

from trpo_tf.errors import RunDirError, RunDirInUseError
from trpo_tf.files import CHECKPOINT_DIR, LOCK_FILE, PROGRESS_FILE, RUN_FILE, refuse_run_links

__all__ = ["LOCK_FILE", "check_new_run_dir", "lock_run_dir", "run_files"]

_HELD: dict[str, int] = {}  # real path of a run directory this process holds → how many blocks hold it


@contextlib.contextmanager
def lock_run_dir(run_dir: str, create: bool = True) -> Iterator[None]:
    """Hold the lock of ``run_dir`` for the ``with`` block (creating the directory when ``create``).

    Raises :class:`RunDirInUseError`, naming the owner's process id, when another process
    holds it (a nested block of the process that holds it just goes on), and :class:`RunDirError` when
    ``run_dir`` is a file, or is missing and not ``create``, or holds a symbolic link where trpo_tf
    writes (:func:`trpo_tf.files.refuse_run_links`). The directories it created (``runs/`` of ``runs/CartPole-v1-seed0``
    too) are removed again if they are still empty at the end, so a refused command leaves nothing.
    """
    key = os.path.realpath(run_dir)
    if key in _HELD:  # this process holds it already (trpo-tf train, then TRPO.learn(log_dir=...))
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"{run_dir} exists and is not a directory")
    if not create and not os.path.isdir(run_dir):
        raise RunDirError(f"no run directory at {run_dir}")
    refuse_run_links(run_dir)
    created = _make_directories(run_dir)
    try:
        path = os.path.join(run_dir, LOCK_FILE)
        descriptor = _acquire(path)
    except BaseException:
        _remove_empty(created)
        raise
    _HELD[key] = 1
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # still holding the lock: a process that opened this file now retries
        os.close(descriptor)
        _remove_empty(created)


def check_new_run_dir(run_dir: str) -> None:
    """RunDirError when ``run_dir`` holds (part of) a run: a new run must not overwrite it."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"{run_dir} exists and is not a directory")
    found = run_files(run_dir)
    if found:
        raise RunDirError(f"{run_dir} already holds a run ({', '.join(found)}); continue it with "
                          f"TRPO.load(run_dir, resume=True), or choose another run directory",
                          command_line={"TRPO.load(run_dir, resume=True)": "--resume",
                                        "another run directory": "another run directory (--logdir)"})


def run_files(run_dir: str) -> list[str]:
    """The files of a run present in ``run_dir``: run.json, progress.csv and the newest checkpoints/ckpt-N."""
    from trpo_tf.checkpoint import checkpoints

    found = [name for name in (RUN_FILE, PROGRESS_FILE) if os.path.exists(os.path.join(run_dir, name))]
    stored = checkpoints(run_dir)
    if stored:
        found.append(f"{CHECKPOINT_DIR}/{os.path.basename(stored[0])}")
    return found


def _make_directories(path: str) -> list[str]:
    """Create ``path`` and its missing parents; the directories created, deepest first. RunDirError
    naming the path when it cannot be created (a parent is a file, say)."""
    missing = []
    folder = os.path.abspath(path)
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        _remove_empty(missing)
        raise RunDirError(f"cannot create the run directory {path}: {error.strerror or error}") from None
    return missing


def _remove_empty(directories: list[str]) -> None:
    """Remove each of ``directories`` (deepest first) that is empty; stop at the first that is not."""
    for folder in directories:
        try:
            os.rmdir(folder)
        except OSError:  # not empty: the run wrote into it
            return


def _acquire(path: str) -> int:
    """An open descriptor of ``path`` holding its exclusive flock; RunDirInUseError when taken."""
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as error:
            raise RunDirError(f"cannot create the lock file {path}: {error.strerror or error}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(descriptor, 32).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            run_dir = os.path.dirname(path)
            raise RunDirInUseError(f"{run_dir} is in use by another training (process {owner}, which holds "
                                   f"{path}); wait for it to end or stop it, or choose another run directory",
                                   command_line={"another run directory": "another run directory (--logdir)"}
                                   ) from None
        except OSError as error:  # a file system without locks
            os.close(descriptor)
            raise RunDirError(f"cannot lock {path}: {error.strerror or error}") from None
        if _is_same_file(descriptor, path):
            return descriptor
        os.close(descriptor)  # the owner removed the file as we locked it: take the new one


def _is_same_file(descriptor: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``descriptor``."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)
