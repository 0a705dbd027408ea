"""A quiet start-up: TensorFlow's C++ logging, and third-party messages a user cannot act on.

TensorFlow's C++ code logs through absl, in lines like ``I0000 00:00:1795901736.420237 22565 file.cc:31] text``
(severity I, W, E or F first). It hides those below ``TF_CPP_MIN_LOG_LEVEL`` (0: show all,
1: hide INFO, 2: hide WARNING too, 3: hide ERROR too); importing ``trpo_tf`` sets that variable
to :data:`DEFAULT_LOG_LEVEL` unless the user set it, so the CUDA probes a machine without a GPU
logs (``failed call to cuInit``) and the XLA start-up lines are not shown. A few lines are
logged while TensorFlow's libraries load, before TensorFlow reads the variable (absl's
``WARNING: All log messages before absl::InitializeLog() ...`` and ``cudart_stub.cc] Could not
find cuda drivers``); :func:`import_tensorflow` drops those that the level hides and passes on
everything else written to stderr meanwhile.

XLA compiles the trust-region step and the value fit on the first iteration (about 1.4 s of
the first iteration's ~4.4 s); :func:`use_xla_cache` points XLA's persistent cache at
:func:`xla_cache_directory` so later runs of the same shapes load the compiled code instead.
XLA never removes an entry, so :func:`prune_xla_cache` keeps the directory under
``$TRPO_TF_XLA_CACHE_MB`` (default :data:`DEFAULT_XLA_CACHE_MB`), dropping the oldest entries first.

MuJoCo prints its warnings itself, and appends them to ``MUJOCO_LOG.TXT`` in the working
directory, unless a handler is set; :func:`filter_mujoco_warnings` sets one that drops
:data:`KNOWN_MUJOCO_MESSAGES` (deprecations in gymnasium's own model files) and turns the
others into Python warnings (``RuntimeWarning``).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
import warnings
from types import ModuleType
from typing import Callable, Iterator

LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
DEFAULT_LOG_LEVEL = "3"
SEVERITIES = "IWEF"  # absl's severities, in the order TF_CPP_MIN_LOG_LEVEL counts them

KNOWN_MUJOCO_MESSAGES = (
    # gymnasium's half_cheetah.xml sets it; MuJoCo 4 warns each time the model is compiled
    "compiler attribute 'settotalmass' is deprecated",
)

_ABSL_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\]\s]+:\d+\] ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def quiet_tensorflow_logging() -> None:
    """Set ``TF_CPP_MIN_LOG_LEVEL`` to :data:`DEFAULT_LOG_LEVEL` unless the user set it.

    Has an effect only before TensorFlow is first imported.
    """
    os.environ.setdefault(LOG_LEVEL_VARIABLE, DEFAULT_LOG_LEVEL)


XLA_FLAGS_VARIABLE = "TF_XLA_FLAGS"
XLA_CACHE_FLAG = "--tf_xla_persistent_cache_directory"
XLA_CACHE_VARIABLE = "TRPO_TF_XLA_CACHE"
"""Where trpo_tf keeps XLA's compiled code; empty turns the cache off."""
XLA_CACHE_SIZE_VARIABLE = "TRPO_TF_XLA_CACHE_MB"
DEFAULT_XLA_CACHE_MB = 512  # a MuJoCo preset's entries take 0.3-1.5 MB: hundreds of configurations
_XLA_CACHE_ENTRY = re.compile(r"^xla_compile_cache__.*\.pb$")


def xla_cache_directory() -> str:
    """``$TRPO_TF_XLA_CACHE``, else ``$XDG_CACHE_HOME/trpo_tf/xla`` (``~/.cache/trpo_tf/xla``); "" when off."""
    if XLA_CACHE_VARIABLE in os.environ:
        return os.environ[XLA_CACHE_VARIABLE]
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache_home, "trpo_tf", "xla")


def use_xla_cache() -> None:
    """Add ``--tf_xla_persistent_cache_directory`` to ``TF_XLA_FLAGS`` unless the user's flags name a
    cache already or :func:`xla_cache_directory` is off or cannot be created.

    Has an effect only before TensorFlow first compiles with XLA.
    """
    flags = os.environ.get(XLA_FLAGS_VARIABLE, "")
    directory = xla_cache_directory()
    if XLA_CACHE_FLAG in flags or not directory:
        return
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        return  # a read-only home, say: compile every time, as without the cache
    os.environ[XLA_FLAGS_VARIABLE] = f"{flags} {XLA_CACHE_FLAG}={directory}".strip()
    prune_xla_cache(directory, xla_cache_limit_bytes())


def xla_cache_limit_bytes() -> int:
    """``$TRPO_TF_XLA_CACHE_MB`` (default :data:`DEFAULT_XLA_CACHE_MB`) in bytes.

    Raises ValueError naming the variable when it is not a non-negative number.
    """
    text = os.environ.get(XLA_CACHE_SIZE_VARIABLE, "").strip() or str(DEFAULT_XLA_CACHE_MB)
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = -1.0
    if not megabytes >= 0 or megabytes == float("inf"):
        raise ValueError(f"{XLA_CACHE_SIZE_VARIABLE}={text!r}: expected the XLA cache's size limit in MB, "
                         f"a number ≥ 0 (default {DEFAULT_XLA_CACHE_MB}; {XLA_CACHE_VARIABLE}= turns the cache off)")
    return int(megabytes * 2**20)


def prune_xla_cache(directory: str, limit_bytes: int) -> list[str]:
    """Delete XLA's cache entries (``xla_compile_cache__*.pb``), oldest modification first, until
    the entries left take at most ``limit_bytes``; other files in ``directory`` are never touched.

    Returns the names deleted. Errors (an unreadable directory, an entry another process removed
    meanwhile) are skipped: a missing entry only means compiling again.
    """
    entries = []
    try:
        with os.scandir(directory) as listing:
            for entry in listing:
                if _XLA_CACHE_ENTRY.match(entry.name) and entry.is_file(follow_symlinks=False):
                    status = entry.stat(follow_symlinks=False)
                    entries.append((status.st_mtime, entry.name, status.st_size))
    except OSError:
        return []
    total = sum(size for _, _, size in entries)
    deleted = []
    for _, name, size in sorted(entries):
        if total <= limit_bytes:
            break
        try:
            os.remove(os.path.join(directory, name))
        except OSError:
            continue
        total -= size
        deleted.append(name)
    return deleted


def min_log_level() -> int:
    """The ``TF_CPP_MIN_LOG_LEVEL`` in force: 0 (show everything) when unset or not an integer."""
    try:
        return int(os.environ.get(LOG_LEVEL_VARIABLE, "0"))
    except ValueError:
        return 0


def hidden_by_level(line: str, level: int) -> bool:
    """Whether ``TF_CPP_MIN_LOG_LEVEL=level`` hides this absl log line (the preamble goes with INFO)."""
    if line.rstrip("\n") == _ABSL_PREAMBLE:
        return level >= 1
    match = _ABSL_LINE.match(line)
    return match is not None and SEVERITIES.index(match.group(1)) < level


def import_tensorflow() -> ModuleType:
    """``import tensorflow``, without the log lines its libraries write while loading that the level hides.

    Nothing is filtered when TensorFlow is already imported or the level is 0.
    """
    quiet_tensorflow_logging()
    level = min_log_level()
    if "tensorflow" in sys.modules or level == 0:
        return importlib.import_module("tensorflow")
    with _stderr_filtered(lambda line: not hidden_by_level(line, level)):
        return importlib.import_module("tensorflow")


@contextlib.contextmanager
def _stderr_filtered(keep: Callable[[str], bool]) -> Iterator[None]:
    """Capture file descriptor 2 (C and Python writes alike), then write back the lines ``keep`` accepts.

    Captures nothing when descriptor 2 cannot be duplicated (e.g. it is closed).
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if keep(line)))
            sys.stderr.flush()


def filter_mujoco_warnings() -> None:
    """Set MuJoCo's warning handler to :func:`_mujoco_warning` if MuJoCo is imported and has none."""
    mujoco = sys.modules.get("mujoco")
    if mujoco is not None and mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_mujoco_warning)


def _mujoco_warning(message: str) -> None:
    """Drop a known MuJoCo message, warn about any other; never raises (MuJoCo would abort the process)."""
    if any(known in message for known in KNOWN_MUJOCO_MESSAGES):
        return
    try:
        warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)
    except Exception:  # warnings made errors (-W error)
        print(f"MuJoCo warning: {message}", file=sys.stderr, flush=True)
