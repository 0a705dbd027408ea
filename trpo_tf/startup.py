"""Start-up: a quiet TensorFlow when asked for, XLA's persistent cache, and MuJoCo's warnings.

Importing ``trpo_tf`` changes nothing in the host program: no environment variable, logging
level or file. What this module does happens only when it is called:

- :func:`quiet` (``trpo_tf.quiet()``; what the ``trpo-tf`` command does, since it owns its
  process): TensorFlow's C++ code logs through absl in lines like ``I0000 00:00:1795901736.420237
  22565 file.cc:31] text`` (severity I, W, E or F first) and hides those below
  ``TF_CPP_MIN_LOG_LEVEL`` (0: show all, 1: hide INFO, 2: hide WARNING too, 3: hide ERROR too).
  :func:`quiet` sets it to :data:`QUIET_LOG_LEVEL` (2) unless the user set it, so errors still
  show; then it imports TensorFlow and lets it find its devices while dropping the lines that
  level hides from what the libraries write before they read the variable, and the one error line a
  machine without CUDA drivers always logs (``failed call to cuInit``, after TensorFlow's own
  "Could not find cuda drivers" note). After :func:`quiet`, an agent's first iteration, where XLA
  compiles its steps or loads them from the persistent cache, runs inside
  :func:`dropping_cache_messages`: loading a cache entry logs :data:`XLA_CACHE_MESSAGES` at ERROR
  level although nothing is wrong; those lines alone are dropped.
- :func:`configure_xla_cache`, called when an agent is created: XLA compiles the trust-region
  step and the value fit on the first iteration; pointing XLA's persistent cache at
  :func:`xla_cache_directory` lets later runs of the same shapes load the compiled code. Only when
  the user set no ``TF_XLA_FLAGS``; ``TRPO_TF_XLA_CACHE=`` (empty) turns it off. XLA never removes
  an entry, so the directory is kept under ``$TRPO_TF_XLA_CACHE_MB`` (default
  :data:`DEFAULT_XLA_CACHE_MB`), dropping the oldest entries first (:func:`prune_xla_cache`).
- :func:`filter_mujoco_warnings`, called when an environment is made: MuJoCo prints its warnings
  itself, and appends them to ``MUJOCO_LOG.TXT`` in the working directory, unless a handler is set;
  the handler set here drops :data:`KNOWN_MUJOCO_MESSAGES` (deprecations in gymnasium's own model
  files) and turns the others into Python warnings (``RuntimeWarning``).
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
QUIET_LOG_LEVEL = "2"  # INFO and WARNING hidden; errors shown
SEVERITIES = "IWEF"  # absl's severities, in the order TF_CPP_MIN_LOG_LEVEL counts them
NO_CUDA_DRIVERS = "Could not find cuda drivers"  # TensorFlow's INFO note on a machine without a GPU driver
CUINIT_FAILED = "failed call to cuInit"  # the ERROR that then always follows; nothing to act on

XLA_CACHE_MESSAGES = (
    # TensorFlow 2.21 reads each entry of its own XLA cache as text first, then as binary, which works
    "Error parsing text-format tensorflow.XlaSerializedCacheEntry",
    # tuning preferences XLA records with a compiled program, not instruction sets the host lacks
    "Target machine feature +prefer-no-scatter is not  supported on the host machine",
    "Target machine feature +prefer-no-gather is not  supported on the host machine",
)

KNOWN_MUJOCO_MESSAGES = (
    # gymnasium's half_cheetah.xml sets it; MuJoCo 4 warns each time the model is compiled
    "compiler attribute 'settotalmass' is deprecated",
)

_ABSL_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ [^\]\s]+:\d+\] ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def quiet(import_now: bool = True) -> None:
    """Quiet TensorFlow's start-up in this process and the processes it starts, as the ``trpo-tf`` command
    does; errors still show.

    Sets ``TF_CPP_MIN_LOG_LEVEL`` to :data:`QUIET_LOG_LEVEL` unless it is set, and
    :data:`QUIET_VARIABLE` (which child processes inherit: tuning trials call :func:`quiet` again);
    configures the XLA cache (:func:`configure_xla_cache`: TensorFlow reads XLA's flags when it first
    looks for its devices, which this does) and, with ``import_now``, imports TensorFlow (see
    :func:`import_tensorflow`). Call it before anything imports TensorFlow: once imported, TensorFlow
    has read the variable, and the lines it logged are out.
    """
    os.environ.setdefault(LOG_LEVEL_VARIABLE, QUIET_LOG_LEVEL)
    os.environ[QUIET_VARIABLE] = "1"
    configure_xla_cache()
    if import_now:
        import_tensorflow()


QUIET_VARIABLE = "TRPO_TF_QUIET"
"""Set to 1 by :func:`quiet`, in this process and for those it starts."""


def quiet_requested() -> bool:
    """Whether :func:`quiet` was called in this process or in the one that started it."""
    return os.environ.get(QUIET_VARIABLE) == "1"


@contextlib.contextmanager
def dropping_cache_messages() -> Iterator[None]:
    """After :func:`quiet`: within the block, drop the lines of :data:`XLA_CACHE_MESSAGES` that TensorFlow
    writes to stderr (everything else is written back after the block). Without :func:`quiet`, nothing."""
    if not quiet_requested():
        yield
        return
    with _stderr_filtered(lambda lines: [line for line in lines
                                         if not any(message in line for message in XLA_CACHE_MESSAGES)]):
        yield


XLA_FLAGS_VARIABLE = "TF_XLA_FLAGS"
XLA_CACHE_FLAG = "--tf_xla_persistent_cache_directory"
XLA_CACHE_VARIABLE = "TRPO_TF_XLA_CACHE"
"""Where trpo_tf keeps XLA's compiled code; empty turns the cache off."""
XLA_CACHE_SIZE_VARIABLE = "TRPO_TF_XLA_CACHE_MB"
DEFAULT_XLA_CACHE_MB = 512  # a configuration's compiled steps take about a megabyte: room for hundreds
_XLA_CACHE_ENTRY = re.compile(r"^xla_compile_cache__.*\.pb$")


def xla_cache_directory() -> str:
    """``$TRPO_TF_XLA_CACHE``, else ``$XDG_CACHE_HOME/trpo_tf/xla`` (``~/.cache/trpo_tf/xla``); "" when off."""
    if XLA_CACHE_VARIABLE in os.environ:
        return os.environ[XLA_CACHE_VARIABLE]
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache_home, "trpo_tf", "xla")


def configure_xla_cache() -> str | None:
    """Point XLA's persistent cache at :func:`xla_cache_directory` by setting ``TF_XLA_FLAGS``, unless the
    user set that variable (to anything) or the cache is off or cannot be created; then prune the
    cache to its size limit. Returns the directory in use, or None.

    Called when an agent is created (and by :func:`quiet`). TensorFlow reads the flags when it first
    looks for its devices — after ``import tensorflow``, at its first operation — so the cache is
    used when nothing ran on TensorFlow before (a network of your own built first runs on it: call
    :func:`quiet`, or set ``TF_XLA_FLAGS`` yourself, before building it).
    """
    flags = os.environ.get(XLA_FLAGS_VARIABLE, "")
    directory = xla_cache_directory()
    if flags.strip() or not directory:
        return directory if f"{XLA_CACHE_FLAG}={directory}" in flags.split() else None
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        return None  # a read-only home, say: compile every time, as without the cache
    os.environ[XLA_FLAGS_VARIABLE] = f"{XLA_CACHE_FLAG}={directory}"
    prune_xla_cache(directory, xla_cache_limit_bytes())
    return directory


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
    """``import tensorflow`` and let it find its devices, dropping from what is written to stderr meanwhile
    the absl lines ``TF_CPP_MIN_LOG_LEVEL`` hides (its libraries log some before they read it), and
    the ``failed call to cuInit`` error when TensorFlow noted that the machine has no CUDA drivers.

    Nothing is filtered when TensorFlow is already imported or the level is 0.
    """
    level = min_log_level()
    if "tensorflow" in sys.modules or level == 0:
        return importlib.import_module("tensorflow")
    with _stderr_filtered(lambda lines: [line for line in lines if not hidden_by_level(line, level)
                                         and not (CUINIT_FAILED in line and _mentions(lines, NO_CUDA_DRIVERS))]):
        tensorflow = importlib.import_module("tensorflow")
        tensorflow.config.list_physical_devices()  # where TensorFlow probes for CUDA
    return tensorflow


def _mentions(lines: list[str], text: str) -> bool:
    return any(text in line for line in lines)


@contextlib.contextmanager
def _stderr_filtered(keep: Callable[[list[str]], list[str]]) -> Iterator[None]:
    """Capture file descriptor 2 (C and Python writes alike), then write back the lines ``keep`` returns of them.

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
            sys.stderr.write("".join(keep(lines)))
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
