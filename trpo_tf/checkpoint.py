"""Resumable checkpoints in a run directory: serializes what the agent and its sampler hand over.

A run directory holds::

    run.json            env id, seed, command line, target timesteps, library version
    config.yaml         the TRPOConfig of the run (also usable as ``trpo-tf train --config``)
    checkpoints/        tf.train.CheckpointManager: checkpoint, ckpt-<iteration>.{index,data-*}
    progress.csv, events.out.tfevents.*   written by trpo_tf.monitor

One checkpoint is one ``tf.train.Checkpoint`` of:

- ``agent.trackables()``: the policy (network, head with the Gaussian's log-std, observation
  normalizer), the value network, the value optimizer's moments and the reward scaler;
- ``state`` (JSON, as a ``tf.train.experimental.PythonState``): ``agent.state()`` — timesteps,
  history, recent returns, random generator states and ``sampler.state()``;
- ``environment`` (bytes, as a ``PythonState``): ``sampler.environment_state()``, the
  environments pickled (simulators, random generators, wrappers); empty when they cannot be
  pickled, and such a run resumes with fresh episodes (with a warning).

Because the Python state lives inside the TensorFlow checkpoint, it is written and made
current together with the weights: TensorFlow writes ``ckpt-N`` under temporary names and
only then atomically rewrites ``checkpoints/checkpoint``, so a process killed during a save
leaves the previous checkpoint current and intact.

Trust: only :func:`restore` with ``environments=True`` (resuming training) unpickles
anything. Restoring for evaluation or export reads weights and JSON only, so a downloaded
run directory can be inspected and exported safely.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import tensorflow as tf
import yaml

from trpo_tf.config import TRPOConfig
from trpo_tf.errors import CheckpointWarning, RunDirError
from trpo_tf.files import PROGRESS_FILE, atomic_write

if TYPE_CHECKING:
    from trpo_tf.trpo import TRPO

__all__ = ["CheckpointCallback", "CheckpointWarning", "RunDirError", "check_new_run_dir", "check_same_run",
           "checkpoint_state", "iteration_of", "latest", "read_config", "read_run", "read_run_info", "restore", "save",
           "update_run", "write_run"]

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = "ckpt"
MAX_TO_KEEP = 3
STATE_FORMAT = 3  # 1: before the policy held its normalizer and head; 2: one random stream for all


# --------------------------------------------------------------------------- run directory

def write_run(run_dir: str, agent: TRPO, command: str | None = None, total_timesteps: int | None = None,
              **extra: Any) -> None:
    """Write ``run.json`` and ``config.yaml`` for ``agent`` into ``run_dir`` (atomically, each)."""
    os.makedirs(run_dir, exist_ok=True)
    from trpo_tf import __version__
    info = {
        "env_id": agent.env_id,
        "seed": agent.seed,
        "total_timesteps": total_timesteps,
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "trpo_tf_version": __version__,
        "tensorflow_version": tf.__version__,
        **extra,
    }
    atomic_write(os.path.join(run_dir, RUN_FILE), json.dumps(info, indent=2) + "\n")
    header = [f"# TRPOConfig of the run in {run_dir} ({agent.env_id}, seed {agent.seed})"]
    if command:
        header.append(f"# command: {command}")
    header.append("# Edit before --resume to change hyperparameters of the rest of the run.")
    body = yaml.safe_dump(agent.config.to_dict(), sort_keys=False, default_flow_style=None)
    atomic_write(os.path.join(run_dir, CONFIG_FILE), "\n".join(header) + "\n" + body)


def check_new_run_dir(run_dir: str, agent: TRPO | None = None) -> None:
    """RunDirError unless ``run_dir`` is free for a new run.

    Free: absent, or holding no checkpoint and no progress rows; a ``run.json`` there must
    describe ``agent`` (a run created for it that never trained). A directory with another
    run's checkpoints or progress is never started over: nothing in it is touched.
    """
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"{run_dir} exists and is not a directory")
    held = []
    checkpoints = os.path.join(run_dir, CHECKPOINT_DIR)
    if os.path.isdir(checkpoints) and os.listdir(checkpoints):
        held.append(f"{CHECKPOINT_DIR}/")
    progress = os.path.join(run_dir, PROGRESS_FILE)
    if os.path.isfile(progress) and os.path.getsize(progress) > 0:
        held.append(PROGRESS_FILE)
    if held:
        raise RunDirError(f"{run_dir} already holds a run ({' and '.join(held)}); continue it with --resume "
                          f"(in Python: TRPO.load(run_dir, resume=True)), or choose another run directory")
    if agent is not None and os.path.isfile(os.path.join(run_dir, RUN_FILE)):
        check_same_run(agent, run_dir)


def update_run(run_dir: str, **changes: Any) -> None:
    """Merge ``changes`` into ``run.json`` (atomically)."""
    info = read_run_info(run_dir)
    info.update(changes)
    atomic_write(os.path.join(run_dir, RUN_FILE), json.dumps(info, indent=2) + "\n")


def read_run_info(run_dir: str) -> dict[str, Any]:
    """The contents of ``run_dir/run.json``; RunDirError when the directory is not a run."""
    if not os.path.isdir(run_dir):
        raise RunDirError(f"no run directory at {run_dir}")
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isfile(path):
        raise RunDirError(f"{run_dir} is not a trpo_tf run directory (it has no {RUN_FILE})")
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    except (OSError, ValueError) as error:
        raise RunDirError(f"{path} is unreadable or corrupted: {error}") from None
    if not isinstance(info, dict) or "seed" not in info or "env_id" not in info:
        raise RunDirError(f"{path} is corrupted: it must be a JSON object with env_id and seed")
    return info


def read_config(run_dir: str) -> TRPOConfig:
    """The run's TRPOConfig from ``run_dir/config.yaml``."""
    from trpo_tf.presets import parse_yaml
    path = os.path.join(run_dir, CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            values = parse_yaml(handle.read(), path)
    except OSError as error:
        raise RunDirError(f"cannot read {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise RunDirError(str(error)) from None
    if not isinstance(values, dict):
        raise RunDirError(f"{path} is corrupted: it must be a mapping of TRPOConfig fields")
    try:
        return TRPOConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise RunDirError(f"{path}: {error}") from None


def read_run(run_dir: str) -> tuple[str | None, TRPOConfig, int]:
    """(env id, config, seed) of the run in ``run_dir``, as :meth:`TRPO.load` needs them."""
    info = read_run_info(run_dir)
    return info["env_id"], read_config(run_dir), int(info["seed"])


# --------------------------------------------------------------------------- save / restore

def latest(run_dir: str) -> str | None:
    """Path prefix of the current checkpoint in ``run_dir`` (``.../checkpoints/ckpt-N``), or None."""
    directory = os.path.join(run_dir, CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        return None
    try:
        return tf.train.latest_checkpoint(directory)
    except (tf.errors.OpError, ValueError) as error:  # a garbled checkpoint state file
        raise RunDirError(f"{directory}/checkpoint is corrupted: {_first_line(error)}") from None


def iteration_of(path: str) -> int:
    """The iteration number N of a checkpoint path ``.../ckpt-N``."""
    match = re.search(rf"{CHECKPOINT_NAME}-(\d+)$", path)
    if not match:
        raise ValueError(f"{path} is not a trpo_tf checkpoint path")
    return int(match.group(1))


def save(agent: TRPO, run_dir: str) -> str:
    """Checkpoint ``agent`` as ``run_dir/checkpoints/ckpt-<iteration>``; returns that path.

    Writes ``run.json``/``config.yaml`` first when the directory has none, and refuses a
    directory that holds a run of another environment, seed or config. Keeps the last
    :data:`MAX_TO_KEEP` checkpoints. Saving twice at the same iteration writes once.
    """
    if os.path.isfile(os.path.join(run_dir, RUN_FILE)):
        check_same_run(agent, run_dir)
    else:
        write_run(run_dir, agent)
    checkpoint = tf.train.Checkpoint(**agent.trackables(), state=_Serialized(lambda: _encode_state(agent.state())),
                                     environment=_Serialized(agent.sampler.environment_state))
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(run_dir, CHECKPOINT_DIR), max_to_keep=MAX_TO_KEEP,
                                         checkpoint_name=CHECKPOINT_NAME)
    number = len(agent.history)
    if manager.latest_checkpoint and iteration_of(manager.latest_checkpoint) == number:
        return manager.latest_checkpoint
    return manager.save(checkpoint_number=number)


def restore(agent: TRPO, run_dir: str, path: str | None = None, environments: bool = True) -> str:
    """Load the current checkpoint of ``run_dir`` (or ``path``) into ``agent``; returns its path.

    ``agent`` must have been built with the run's env id, config and seed (as
    :meth:`TRPO.load` does). With ``environments`` the pickled environment state is
    restored (this unpickles: only for runs you trust); without, nothing is unpickled and the
    environments start fresh episodes. Raises :class:`RunDirError` saying what is wrong when
    there is no checkpoint or it cannot be read.
    """
    path = path or latest(run_dir)
    if path is None:
        raise RunDirError(f"{run_dir} has no checkpoint yet (nothing under {CHECKPOINT_DIR}/)")
    state, environment = _Serialized(), _Serialized()
    try:
        tf.train.Checkpoint(**agent.trackables(), state=state, environment=environment).restore(
            path).assert_existing_objects_matched()
    except Exception as error:  # noqa: BLE001 - truncated files raise IndexError, OpError, ...
        raise RunDirError(f"checkpoint {path} cannot be restored (corrupted, or written with another "
                          f"config or trpo_tf version): {_first_line(error)}") from None
    if state.restored is None:
        raise RunDirError(f"checkpoint {path} cannot be restored: it has no agent state")
    try:
        values = _decode_state(state.restored)
        if values["agent"].get("iteration") != iteration_of(path):
            raise RunDirError(f"checkpoint {path} is inconsistent: it holds iteration "
                              f"{values['agent'].get('iteration')}")
        agent.load_state(values["agent"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        if isinstance(error, RunDirError):
            raise
        raise RunDirError(f"checkpoint {path} holds an unreadable agent state: {_first_line(error)}") from None
    # New episodes, not a replay of the first ones: their reset seed follows from the progress.
    fresh_seed = int(np.random.SeedSequence([agent.seed, agent.timesteps]).generate_state(1)[0] % 2**31)
    if environments:
        agent.sampler.load_environment_state(environment.restored, fresh_seed)
    else:
        agent.sampler.restart_episodes(fresh_seed)
    return path


def checkpoint_state(path: str) -> dict[str, Any]:
    """The agent state (timesteps, history, ...) stored in checkpoint ``path``, without an agent."""
    reader = tf.train.load_checkpoint(path)
    keys = [key for key in reader.get_variable_to_shape_map() if key.startswith("state/")]
    if not keys:
        raise RunDirError(f"checkpoint {path} has no agent state")
    return _decode_state(reader.get_tensor(keys[0]))["agent"]


class CheckpointCallback:
    """A :meth:`TRPO.learn` callback that checkpoints every ``every`` iterations (0: never)."""

    def __init__(self, agent: TRPO, run_dir: str, every: int):
        if not isinstance(every, int) or every < 0:
            raise ValueError(f"checkpoint interval must be a non-negative integer, got {every!r}")
        self.agent, self.run_dir, self.every = agent, run_dir, every
        self.last_path: str | None = None

    def __call__(self, entry: dict[str, Any]) -> None:
        if self.every and entry["iteration"] % self.every == 0:
            self.last_path = save(self.agent, self.run_dir)


# --------------------------------------------------------------------------- internals

class _Serialized(tf.train.experimental.PythonState):
    """Bytes in a checkpoint: made by ``produce()`` when saved, kept in ``restored`` when restored."""

    def __init__(self, produce: Callable[[], bytes] | None = None):
        self.produce = produce
        self.restored: bytes | None = None

    def serialize(self) -> bytes:
        return self.produce() if self.produce is not None else b""

    def deserialize(self, string_value: bytes) -> None:
        self.restored = bytes(string_value)


def _encode_state(agent_state: dict[str, Any]) -> bytes:
    """The checkpoint's JSON document for ``agent.state()`` (arrays keep their dtype and shape)."""
    return json.dumps({"format": STATE_FORMAT, "agent": agent_state}, default=_json_default).encode("utf-8")


def _decode_state(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`_encode_state`; ValueError for another format or a document that is not one."""
    values = json.loads(bytes(data).decode("utf-8"), object_hook=_json_object)
    if not isinstance(values, dict) or not isinstance(values.get("agent"), dict):
        raise ValueError("not a trpo_tf agent state")
    if values.get("format") != STATE_FORMAT:
        raise ValueError(f"state format {values.get('format')!r}; this trpo_tf reads format {STATE_FORMAT} "
                         "(the run was written by another version)")
    return values


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"__ndarray__": {"dtype": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}}
    raise TypeError(f"cannot store {type(value).__name__} in the agent state")


def _json_object(value: dict[str, Any]) -> Any:
    if set(value) == {"__ndarray__"}:
        array = value["__ndarray__"]
        return np.asarray(array["data"], dtype=np.dtype(array["dtype"])).reshape(array["shape"])
    return value


def check_same_run(agent: TRPO, run_dir: str) -> None:
    """RunDirError when ``run_dir`` records another environment, seed or config than ``agent``."""
    info = read_run_info(run_dir)
    config = read_config(run_dir)
    differences = []
    if info["env_id"] != agent.env_id:
        differences.append(f"env {info['env_id']} (agent: {agent.env_id})")
    if int(info["seed"]) != agent.seed:
        differences.append(f"seed {info['seed']} (agent: {agent.seed})")
    if config != agent.config:
        changed = [k for k, v in config.to_dict().items() if agent.config.to_dict()[k] != v]
        differences.append(f"config values of {', '.join(changed)}")
    if differences:
        raise RunDirError(f"{run_dir} holds another run: {'; '.join(differences)}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.splitlines()[0].split())


