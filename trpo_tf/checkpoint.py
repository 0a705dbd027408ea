"""Resumable checkpoints of a :class:`~trpo_tf.TRPO` agent in a run directory.

A run directory holds::

    run.json            env id, seed, command line, target timesteps, library version
    config.yaml         the TRPOConfig of the run (also usable as ``trpo-tf train --config``)
    checkpoints/        tf.train.CheckpointManager: checkpoint, ckpt-<iteration>.{index,data-*}
    progress.csv, events.out.tfevents.*   written by trpo_tf.monitor during ``trpo-tf train``

One checkpoint is one ``tf.train.Checkpoint`` and holds everything needed to continue
training exactly where it stopped:

- TensorFlow state: ``policy`` (network and log-std), ``value``, ``value_optimizer`` (Adam
  moments and step counter), ``normalizer`` (running mean, variance and count) and
  ``reward_scaler`` (running discounted returns and their statistics);
- ``state`` (JSON, as a ``tf.train.experimental.PythonState``): timesteps, history,
  the recent episode returns, the NumPy generator's bit-generator state, and the sampler's
  current observations, running episode returns/lengths and step counter;
- ``environment`` (pickle, as a ``PythonState``): the vector environment's state, including
  each environment's ``np_random`` and wrappers (time-limit counters). Environments that
  cannot be pickled are replaced, on restore, by freshly reset ones (with a warning).

Because the Python state lives inside the TensorFlow checkpoint, it is written and made
current together with the weights: TensorFlow writes ``ckpt-N`` under temporary names and
only then atomically rewrites ``checkpoints/checkpoint``, so a process killed during a save
leaves the previous checkpoint current and intact.

The environment state is a pickle: only restore run directories you trust.
"""

from __future__ import annotations

import copyreg
import datetime
import io
import json
import os
import pickle
import re
import warnings
from typing import Any

import numpy as np
import tensorflow as tf
import yaml
from gymnasium.utils import EzPickle
from gymnasium.vector import SyncVectorEnv

from trpo_tf.config import TRPOConfig

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = "ckpt"
MAX_TO_KEEP = 3
STATE_FORMAT = 1


class RunDirError(ValueError):
    """A run directory that is missing, incomplete, corrupted or belongs to another run."""


class CheckpointWarning(UserWarning):
    """Part of the agent's state could not be saved or restored exactly."""


# --------------------------------------------------------------------------- run directory

def write_run(run_dir: str, agent, command: str | None = None, total_timesteps: int | None = None,
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
    _atomic_write(os.path.join(run_dir, RUN_FILE), json.dumps(info, indent=2) + "\n")
    header = [f"# TRPOConfig of the run in {run_dir} ({agent.env_id}, seed {agent.seed})"]
    if command:
        header.append(f"# command: {command}")
    header.append("# Edit before --resume to change hyperparameters of the rest of the run.")
    body = yaml.safe_dump(agent.config.to_dict(), sort_keys=False, default_flow_style=None)
    _atomic_write(os.path.join(run_dir, CONFIG_FILE), "\n".join(header) + "\n" + body)


def update_run(run_dir: str, **changes: Any) -> None:
    """Merge ``changes`` into ``run.json`` (atomically)."""
    info = read_run_info(run_dir)
    info.update(changes)
    _atomic_write(os.path.join(run_dir, RUN_FILE), json.dumps(info, indent=2) + "\n")


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


def save(agent, run_dir: str) -> str:
    """Checkpoint ``agent`` as ``run_dir/checkpoints/ckpt-<iteration>``; returns that path.

    Writes ``run.json``/``config.yaml`` first when the directory has none, and refuses a
    directory that holds a run of another environment, seed or config. Keeps the last
    :data:`MAX_TO_KEEP` checkpoints. Saving twice at the same iteration writes once.
    """
    if os.path.isfile(os.path.join(run_dir, RUN_FILE)):
        _check_same_run(agent, run_dir)
    else:
        write_run(run_dir, agent)
    manager = tf.train.CheckpointManager(_checkpoint(agent), os.path.join(run_dir, CHECKPOINT_DIR),
                                         max_to_keep=MAX_TO_KEEP, checkpoint_name=CHECKPOINT_NAME)
    number = len(agent.history)
    if manager.latest_checkpoint and iteration_of(manager.latest_checkpoint) == number:
        return manager.latest_checkpoint
    return manager.save(checkpoint_number=number)


def restore(agent, run_dir: str, path: str | None = None) -> str:
    """Load the current checkpoint of ``run_dir`` (or ``path``) into ``agent``; returns its path.

    ``agent`` must have been built with the run's env id, config and seed (as
    :meth:`TRPO.load` does). Raises :class:`RunDirError` saying what is wrong when there is
    no checkpoint or it cannot be read.
    """
    path = path or latest(run_dir)
    if path is None:
        raise RunDirError(f"{run_dir} has no checkpoint yet (nothing under {CHECKPOINT_DIR}/)")
    state, environment = _AgentState(agent), _EnvironmentState(agent)
    checkpoint = _checkpoint(agent, state, environment)
    try:
        checkpoint.restore(path).assert_existing_objects_matched()
    except Exception as error:  # noqa: BLE001 - truncated files raise IndexError, OpError, ...
        raise RunDirError(f"checkpoint {path} cannot be restored (corrupted, or written with another "
                          f"config): {_first_line(error)}") from None
    if state.restored is None:
        raise RunDirError(f"checkpoint {path} cannot be restored: it has no agent state")
    try:
        values = json.loads(state.restored.decode("utf-8"))
        _apply_state(agent, values)
    except (ValueError, KeyError, TypeError) as error:
        raise RunDirError(f"checkpoint {path} holds an unreadable agent state: {_first_line(error)}") from None
    if values.get("iteration") != iteration_of(path):
        raise RunDirError(f"checkpoint {path} is inconsistent: it holds iteration {values.get('iteration')}")
    _apply_environment(agent, environment.restored)
    return path


def checkpoint_state(path: str) -> dict[str, Any]:
    """The JSON agent state (timesteps, history, ...) stored in checkpoint ``path``, without an agent."""
    reader = tf.train.load_checkpoint(path)
    keys = [key for key in reader.get_variable_to_shape_map() if key.startswith("state/")]
    if not keys:
        raise RunDirError(f"checkpoint {path} has no agent state")
    return json.loads(reader.get_tensor(keys[0]).decode("utf-8"))


class CheckpointCallback:
    """A :meth:`TRPO.learn` callback that checkpoints every ``every`` iterations (0: never)."""

    def __init__(self, agent, run_dir: str, every: int):
        if not isinstance(every, int) or every < 0:
            raise ValueError(f"checkpoint interval must be a non-negative integer, got {every!r}")
        self.agent, self.run_dir, self.every = agent, run_dir, every
        self.last_path: str | None = None

    def __call__(self, entry: dict[str, Any]) -> None:
        if self.every and entry["iteration"] % self.every == 0:
            self.last_path = save(self.agent, self.run_dir)


# --------------------------------------------------------------------------- internals

def _checkpoint(agent, state: "_AgentState | None" = None,
                environment: "_EnvironmentState | None" = None) -> tf.train.Checkpoint:
    """The object graph of one checkpoint."""
    return tf.train.Checkpoint(policy=agent.policy, value=agent.value, value_optimizer=agent.value_optimizer,
                               normalizer=agent.normalizer, reward_scaler=agent.reward_scaler,
                               state=state or _AgentState(agent),
                               environment=environment or _EnvironmentState(agent))


class _AgentState(tf.train.experimental.PythonState):
    """The agent's Python-side state as JSON (restored values are applied after the checkpoint)."""

    def __init__(self, agent):
        self.agent = agent
        self.restored: bytes | None = None

    def serialize(self) -> bytes:
        agent, sampler = self.agent, self.agent.sampler
        values = {
            "format": STATE_FORMAT,
            "iteration": len(agent.history),
            "timesteps": int(agent.timesteps),
            "history": agent.history,
            "recent_returns": [float(r) for r in agent.recent_returns],
            "rng": agent.rng.bit_generator.state,
            "sampler": {
                "observations": None if sampler.observations is None else _encode_array(sampler.observations),
                "running_returns": _encode_array(sampler.running_returns),
                "running_lengths": _encode_array(sampler.running_lengths),
                "total_steps": int(sampler.total_steps),
                "seed": sampler.seed,
            },
        }
        return json.dumps(values, default=_json_default).encode("utf-8")

    def deserialize(self, string_value: bytes) -> None:
        self.restored = bytes(string_value)


class _EnvironmentState(tf.train.experimental.PythonState):
    """The vector environment pickled (empty when it cannot be)."""

    def __init__(self, agent):
        self.agent = agent
        self.restored: bytes | None = None

    def serialize(self) -> bytes:
        env = self.agent.sampler.env
        try:
            return _dumps({"signature": _signature(env), "state": _env_state(env)})
        except Exception as error:  # noqa: BLE001 - any failure to pickle means "not picklable"
            warnings.warn(f"the environment ({type(env).__name__}) cannot be pickled ({_first_line(error)}); "
                          "a run resumed from this checkpoint starts fresh episodes", CheckpointWarning,
                          stacklevel=2)
            return b""

    def deserialize(self, string_value: bytes) -> None:
        self.restored = bytes(string_value)


def _apply_state(agent, values: dict[str, Any]) -> None:
    """Set the agent's Python-side state from a :class:`_AgentState` JSON document."""
    if values.get("format") != STATE_FORMAT:
        raise ValueError(f"unknown state format {values.get('format')!r}")
    rng_state = values["rng"]
    if rng_state.get("bit_generator") != type(agent.rng.bit_generator).__name__:
        raise ValueError(f"the random generator is {rng_state.get('bit_generator')}, "
                         f"expected {type(agent.rng.bit_generator).__name__}")
    sampler_values = values["sampler"]
    observations = sampler_values["observations"]
    observations = None if observations is None else _decode_array(observations)
    running_returns = _decode_array(sampler_values["running_returns"])
    running_lengths = _decode_array(sampler_values["running_lengths"])
    n_envs = agent.sampler.n_envs
    if running_returns.shape != (n_envs,) or (observations is not None and len(observations) != n_envs):
        raise ValueError(f"the sampler state is for {len(running_returns)} environments, the agent has {n_envs}")

    agent.timesteps = int(values["timesteps"])
    agent.history[:] = values["history"]
    agent.recent_returns.clear()
    agent.recent_returns.extend(values["recent_returns"])
    agent.rng.bit_generator.state = rng_state
    sampler = agent.sampler
    sampler.observations = observations
    sampler.running_returns = running_returns
    sampler.running_lengths = running_lengths
    sampler.total_steps = int(sampler_values["total_steps"])
    sampler.seed = sampler_values["seed"]


def _apply_environment(agent, pickled: bytes | None) -> None:
    """Put the pickled environment state into the agent's vector env, or start fresh episodes."""
    env = agent.sampler.env
    problem = None
    if not pickled:
        problem = "the checkpoint holds no environment state (it could not be pickled when saved)"
    else:
        try:
            saved = pickle.loads(pickled)
            if saved["signature"] != _signature(env):
                problem = (f"the checkpoint's environment ({saved['signature']}) differs from "
                           f"this agent's ({_signature(env)})")
        except Exception as error:  # noqa: BLE001 - an unreadable pickle means "no state"
            problem = f"the environment state cannot be unpickled ({_first_line(error)})"
    if problem is None:
        for sub_env in getattr(env, "envs", []):
            sub_env.close()
        state = dict(saved["state"])
        state.pop("env_fns", None)
        env.__dict__.update(state)
        return
    warnings.warn(f"{problem}; continuing with freshly reset environments", CheckpointWarning, stacklevel=3)
    sampler = agent.sampler
    sampler.observations = None
    sampler.running_returns = np.zeros(sampler.n_envs)
    sampler.running_lengths = np.zeros(sampler.n_envs, dtype=np.int64)
    # New episodes, not a replay of the first ones: derive the reset seed from the progress.
    sampler.seed = int(np.random.SeedSequence([agent.seed, agent.timesteps]).generate_state(1)[0] % 2**31)


def _check_same_run(agent, run_dir: str) -> None:
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


class _StatePickler(pickle.Pickler):
    """Pickles environments by their state, not by how they were constructed.

    ``EzPickle`` environments (MuJoCo, Box2D, ...) pickle as "call the constructor again",
    which loses the simulator state and the random generator: pickle their ``__dict__``
    instead. ``SyncVectorEnv`` keeps its environment factories (often closures): leave them out.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, EzPickle):
            return copyreg.__newobj__, (type(obj),), dict(obj.__dict__), None, None, _set_dict
        if isinstance(obj, SyncVectorEnv):
            state = {k: v for k, v in obj.__dict__.items() if k != "env_fns"}
            return copyreg.__newobj__, (type(obj),), state, None, None, _set_dict
        return NotImplemented


def _set_dict(obj: Any, state: dict[str, Any]) -> None:
    obj.__dict__.update(state)


def _dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _StatePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def _env_state(env) -> dict[str, Any]:
    return {k: v for k, v in env.__dict__.items() if k != "env_fns"}


def _signature(env) -> str:
    """What must match for a pickled vector env to stand in for ``env``: type, size, wrappers."""
    inner = [str(sub_env) for sub_env in getattr(env, "envs", [])]
    return f"{type(env).__name__}[{env.num_envs}]{inner}"


def _encode_array(array: np.ndarray) -> dict[str, Any]:
    array = np.asarray(array)
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": array.ravel().tolist()}


def _decode_array(value: dict[str, Any]) -> np.ndarray:
    return np.asarray(value["data"], dtype=np.dtype(value["dtype"])).reshape(value["shape"])


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in the agent state")


def _atomic_write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.splitlines()[0].split())
