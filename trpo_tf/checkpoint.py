"""Resumable checkpoints in a run directory: serializes what the agent and its sampler hand over.

A run directory holds::

    run.json            env id, seed, command line, target timesteps, library version, and the
                        Keras configs of networks of the user's own (``networks``)
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
  pickled, and such a run resumes with fresh episodes (with a warning). The JSON state holds
  its signature (``environment_signature``: the run id, ``ckpt-N`` and env id it belongs to, and
  an HMAC of them and the bytes; see :mod:`trpo_tf.signing`).

Because the Python state lives inside the TensorFlow checkpoint, it is written and made
current together with the weights: TensorFlow writes ``ckpt-N`` under temporary names and
only then atomically rewrites ``checkpoints/checkpoint``, so a process killed during a save
leaves the previous checkpoint current and intact.

Damage: :func:`restore` reads every tensor of a checkpoint (TensorFlow checks their
checksums) and its JSON state before it changes the agent, and falls back, with a
:class:`CheckpointWarning` naming what it skipped, to the newest intact checkpoint: the one
``checkpoints/checkpoint`` names, then older ones, and all ``ckpt-N`` files found when that
file is damaged or missing.

Trust: only :func:`restore` with ``environments=True`` (resuming training) unpickles
anything, and only bytes signed with this user's run key for this run, checkpoint and
environment id, unless ``trust=True``. Restoring for evaluation or export reads weights and
JSON only, so a downloaded run directory can be inspected and exported safely; an environment
id in ``run.json`` that would import a module is used only as :func:`check_recorded_env` allows.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import warnings
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import tensorflow as tf
import yaml

from trpo_tf import signing
from trpo_tf.config import TRPOConfig
from trpo_tf.errors import CheckpointWarning, RunDirError, UnreadableCheckpointError, UntrustedRunError
from trpo_tf.files import CHECKPOINT_DIR, CONFIG_FILE, RUN_FILE, atomic_write, refuse_run_links
from trpo_tf.sampling.environments import env_module, refuse_recorded_module

if TYPE_CHECKING:
    from trpo_tf.trpo import TRPO

__all__ = ["CheckpointCallback", "CheckpointWarning", "RunDirError", "check_recorded_env", "check_same_run",
           "checkpoint_state", "checkpoints", "iteration_of", "latest", "read_config", "read_networks", "read_run",
           "read_run_info", "restore", "save", "signature_problem", "update_run", "write_run"]

CHECKPOINT_NAME = "ckpt"
MAX_TO_KEEP = 3
STATE_FORMAT = 3  # 1: before the policy held its normalizer and head; 2: one random stream for all


# --------------------------------------------------------------------------- run directory

def write_run(run_dir: str, agent: TRPO, command: str | None = None, total_timesteps: int | None = None,
              **extra: Any) -> None:
    """Write ``run.json`` and ``config.yaml`` for ``agent`` into ``run_dir`` (atomically, each).

    Args:
        run_dir: the run directory (created when missing).
        agent: the agent whose environment id, seed, config and networks are recorded.
        command: the command line that started the run, if any.
        total_timesteps: the run's target length, which ``--resume`` trains to.
        **extra: more keys for ``run.json``.

    Raises:
        RunDirError: before either file is written, when an entry of ``run_dir`` is a symbolic link
            (:func:`refuse_run_links`).
    """
    refuse_run_links(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    from trpo_tf import __version__
    info = {
        "env_id": agent.env_id,
        "seed": agent.seed,
        "run_id": secrets.token_hex(16),
        "total_timesteps": total_timesteps,
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "trpo_tf_version": __version__,
        "tensorflow_version": tf.__version__,
        "networks": agent.network_records(),
        **extra,
    }
    atomic_write(os.path.join(run_dir, RUN_FILE), json.dumps(info, indent=2) + "\n")
    header = [f"# TRPOConfig of the run in {run_dir} ({agent.env_id}, seed {agent.seed})"]
    if command:
        header.append(f"# command: {command}")
    header.append("# Edit before --resume to change hyperparameters of the rest of the run.")
    body = yaml.safe_dump(agent.config.to_dict(), sort_keys=False, default_flow_style=None)
    atomic_write(os.path.join(run_dir, CONFIG_FILE), "\n".join(header) + "\n" + body)


def update_run(run_dir: str, **changes: Any) -> None:
    """Merge ``changes`` into the ``run.json`` of ``run_dir`` (atomically)."""
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


def read_networks(run_dir: str) -> dict[str, Any]:
    """The network records of the run in ``run_dir`` by role (``policy_network``, ``value_network``; see
    :meth:`TRPO.network_records`); {} for a run of built-in MLPs (or one written before they were recorded)."""
    networks = read_run_info(run_dir).get("networks") or {}
    if not isinstance(networks, dict):
        raise RunDirError(f"{os.path.join(run_dir, RUN_FILE)} is corrupted: 'networks' must be an object")
    return networks


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


def checkpoints(run_dir: str) -> list[str]:
    """Path prefixes of the checkpoints in ``run_dir`` to restore from, newest first (some may be damaged).

    When ``checkpoints/checkpoint`` is readable and names a checkpoint that has files: that
    one and every older one with files (files of newer numbers are interrupted saves). When
    it is damaged, missing or names a checkpoint without files: every ``ckpt-N`` with files.
    """
    return _candidates(run_dir)[0]


def save(agent: TRPO, run_dir: str) -> str:
    """Checkpoint ``agent`` as ``run_dir/checkpoints/ckpt-<iteration>``; returns that path.

    Writes ``run.json``/``config.yaml`` first when the directory has none, and refuses a
    directory that holds a run of another environment, seed or config. Keeps the last
    :data:`MAX_TO_KEEP` checkpoints. Saving twice at the same iteration writes once (unless
    the first is damaged). The environment state is signed with this user's run key. RunDirError,
    before anything is written, when an entry it would write is a symbolic link (:func:`refuse_run_links`).
    """
    refuse_run_links(run_dir)
    if os.path.isfile(os.path.join(run_dir, RUN_FILE)):
        check_same_run(agent, run_dir)
    else:
        write_run(run_dir, agent)
    directory = os.path.join(run_dir, CHECKPOINT_DIR)
    _repair_state_file(run_dir)
    number = len(agent.history)
    path = os.path.join(directory, f"{CHECKPOINT_NAME}-{number}")
    if _current_number(directory)[0] == number and _is_intact(path):
        return path
    pickled = agent.sampler.environment_state()
    document = _encode_state(agent.state(), signing.sign(pickled, {"run_id": _run_id(run_dir), "checkpoint":
                                                                   os.path.basename(path), "env_id": agent.env_id}))
    checkpoint = tf.train.Checkpoint(**agent.trackables(), state=_Serialized(lambda: document),
                                     environment=_Serialized(lambda: pickled))
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=MAX_TO_KEEP,
                                         checkpoint_name=CHECKPOINT_NAME)
    return manager.save(checkpoint_number=number)


def restore(agent: TRPO, run_dir: str, path: str | None = None, environments: bool = True,
            trust: bool = False) -> str:
    """Load the newest intact checkpoint of ``run_dir`` (or ``path``) into ``agent``; returns its path.

    ``agent`` must have been built with the run's env id, config and seed (as
    :meth:`TRPO.load` does). A damaged newer checkpoint is skipped with a
    :class:`CheckpointWarning` that names it and the one used. With ``environments`` the
    pickled environment state is restored: this unpickles, so it is done only when the state
    is signed with this user's run key (:mod:`trpo_tf.signing`) or ``trust`` is true, and
    :class:`UntrustedRunError` is raised otherwise. Without ``environments`` nothing is
    unpickled and the environments start fresh episodes. Raises :class:`RunDirError` saying
    what is wrong when there is no checkpoint or none can be restored; the agent is changed
    only after its checkpoint has been read whole.
    """
    if path is None:
        path, document, pickled = _newest_intact(run_dir)
    else:
        document, pickled = _read_checkpoint(path)
    if environments and pickled and not trust:
        problem = signature_problem(run_dir, path, document, pickled)
        if problem is not None:
            raise UntrustedRunError(
                f"checkpoint {path}: {problem}; unpickling it could run any code. If you trust whoever wrote this "
                f"run, resume with TRPO.load(run_dir, resume=True, trust=True); otherwise with TRPO.load(run_dir): "
                f"weights and statistics, without the environment state",
                command_line={"TRPO.load(run_dir, resume=True, trust=True)": "--trust-run",
                              "TRPO.load(run_dir)": "--fresh-episodes"})
    try:
        tf.train.Checkpoint(**agent.trackables(), state=_Serialized(), environment=_Serialized()).restore(
            path).assert_existing_objects_matched()
    except Exception as error:  # noqa: BLE001 - mismatched structures raise AssertionError, ValueError, ...
        own = any(record is not None for record in agent.network_records().values())
        raise RunDirError(f"checkpoint {path} cannot be restored (written with another config or trpo_tf version"
                          f"{', or other networks of your own' if own else ''}): {_first_line(error)}") from None
    try:
        agent.load_state(document["agent"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise RunDirError(f"checkpoint {path} holds an agent state that does not fit this agent: "
                          f"{_first_line(error)}") from None
    # New episodes, not a replay of the first ones: their reset seed follows from the progress.
    fresh_seed = int(np.random.SeedSequence([agent.seed, agent.timesteps]).generate_state(1)[0] % 2**31)
    if environments:
        agent.sampler.load_environment_state(pickled, fresh_seed)
    else:
        agent.sampler.restart_episodes(fresh_seed)
    return path


def checkpoint_state(path: str) -> dict[str, Any]:
    """The agent state (timesteps, history, ...) stored in checkpoint ``path``, without an agent."""
    return _read_checkpoint(path)[0]["agent"]


class CheckpointCallback:
    """A :meth:`TRPO.learn` callback that checkpoints ``agent`` into ``run_dir`` every ``every`` iterations
    (0: never); ``last_path`` is the newest checkpoint it wrote."""

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


def _encode_state(agent_state: dict[str, Any], environment_signature: dict[str, Any]) -> bytes:
    """The checkpoint's JSON document for ``agent.state()`` (arrays keep their dtype and shape)."""
    document = {"format": STATE_FORMAT, "agent": agent_state, "environment_signature": environment_signature}
    return json.dumps(document, default=_json_default).encode("utf-8")


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


def _candidates(run_dir: str) -> tuple[list[str], str | None]:
    """(:func:`checkpoints`, what is wrong with ``checkpoints/checkpoint`` or None)."""
    directory = os.path.join(run_dir, CHECKPOINT_DIR)
    on_disk = _numbers_on_disk(directory)
    current, problem = _current_number(directory)
    if current is not None and current not in on_disk:
        problem = f"{directory}/checkpoint names {CHECKPOINT_NAME}-{current}, which has no files"
    if current is not None and problem is None:
        on_disk = [n for n in on_disk if n <= current]
    return [os.path.join(directory, f"{CHECKPOINT_NAME}-{n}") for n in on_disk], problem


def _numbers_on_disk(directory: str) -> list[int]:
    """The numbers N of ``ckpt-N`` with an index or data file in ``directory``, newest first."""
    pattern = re.compile(rf"{CHECKPOINT_NAME}-(\d+)\.(index|data-\d+-of-\d+)")
    names = os.listdir(directory) if os.path.isdir(directory) else []
    return sorted({int(match.group(1)) for match in map(pattern.fullmatch, names) if match}, reverse=True)


def _current_number(directory: str) -> tuple[int | None, str | None]:
    """(N of the checkpoint ``directory/checkpoint`` names, None) or (None, what is wrong with that file)."""
    path = os.path.join(directory, "checkpoint")
    if not os.path.isfile(path):
        return None, f"{path} is missing"
    try:
        state = tf.train.get_checkpoint_state(directory)
        if state is None or not state.model_checkpoint_path:
            return None, f"{path} is damaged (it names no checkpoint)"
        return iteration_of(state.model_checkpoint_path), None
    except (tf.errors.OpError, ValueError) as error:  # unreadable text, a garbled proto, a foreign name
        return None, f"{path} is damaged ({_first_line(error)})"


def _repair_state_file(run_dir: str) -> None:
    """Rewrite a damaged or missing ``checkpoints/checkpoint`` from the checkpoint files there.

    The newest becomes current and all are kept in the list, so that the
    CheckpointManager deletes old ones as usual; their contents are not checked here.
    """
    candidates, problem = _candidates(run_dir)
    state_file = os.path.join(run_dir, CHECKPOINT_DIR, "checkpoint")
    if problem is None:
        return
    if candidates:  # the CheckpointState text format, as CheckpointManager writes it
        names = [os.path.basename(path) for path in reversed(candidates)]
        atomic_write(state_file, "".join([f'model_checkpoint_path: "{names[-1]}"\n']
                                         + [f'all_model_checkpoint_paths: "{name}"\n' for name in names]))
    elif os.path.isfile(state_file):
        os.remove(state_file)


def _newest_intact(run_dir: str) -> tuple[str, dict[str, Any], bytes]:
    """(path, state document, environment bytes) of the newest checkpoint that reads whole.

    Warns (:class:`CheckpointWarning`) naming what was skipped and the checkpoint used.
    """
    candidates, problem = _candidates(run_dir)
    if not candidates:
        raise RunDirError(f"{run_dir} has no checkpoint yet (nothing under {CHECKPOINT_DIR}/)")
    skipped = [problem] if problem else []
    for path in candidates:
        try:
            document, pickled = _read_checkpoint(path)
        except UnreadableCheckpointError as error:
            skipped.append(str(error))
            continue
        if skipped:
            warnings.warn(f"{'; '.join(skipped)}; using {path}, the newest intact checkpoint", CheckpointWarning,
                          stacklevel=3)
        return path, document, pickled
    if len(skipped) == 1:
        raise UnreadableCheckpointError(skipped[0])
    raise UnreadableCheckpointError(f"{run_dir} has no intact checkpoint: {'; '.join(skipped)}")


def _read_checkpoint(path: str) -> tuple[dict[str, Any], bytes]:
    """(state document, environment bytes) of checkpoint ``path``, after reading all of it.

    Every tensor is read, so TensorFlow checks every checksum; nothing is unpickled. Raises
    :class:`UnreadableCheckpointError` for missing or damaged files and unreadable or
    inconsistent state.
    """
    try:
        reader = tf.train.load_checkpoint(path)
        tensors = {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}
    except Exception as error:  # noqa: BLE001 - damaged files raise DataLossError, NotFoundError, ...
        raise UnreadableCheckpointError(f"checkpoint {path} cannot be restored: its files are damaged or "
                                        f"missing ({_first_line(error)})") from None
    state = [value for key, value in tensors.items() if key.startswith("state/")]
    environment = [bytes(value) for key, value in tensors.items() if key.startswith("environment/")]
    if not state:
        raise UnreadableCheckpointError(f"checkpoint {path} cannot be restored: it has no agent state")
    try:
        document = _decode_state(state[0])
    except (ValueError, KeyError, TypeError) as error:
        raise UnreadableCheckpointError(f"checkpoint {path} cannot be restored: its agent state is unreadable "
                                        f"({_first_line(error)})") from None
    if document["agent"].get("iteration") != iteration_of(path):
        raise UnreadableCheckpointError(f"checkpoint {path} cannot be restored: it is inconsistent (it holds "
                                        f"iteration {document['agent'].get('iteration')!r})")
    return document, environment[0] if environment else b""


def _is_intact(path: str) -> bool:
    """Whether checkpoint ``path`` reads whole (see :func:`_read_checkpoint`)."""
    try:
        _read_checkpoint(path)
    except UnreadableCheckpointError:
        return False
    return True


def signature_problem(run_dir: str, path: str, document: dict[str, Any], pickled: bytes) -> str | None:
    """None when checkpoint ``path``'s environment state ``pickled`` carries this user's signature for this
    run (``run_dir``'s run id), this checkpoint and the env id ``run.json`` records; else what is wrong.
    ``document`` is the checkpoint's decoded state document, whose ``environment_signature`` is checked."""
    try:
        bound = signing.vouched_for(pickled, document.get("environment_signature"))
    except signing.InvalidSignature as problem:
        return f"its pickled environment state {problem}"
    info = read_run_info(run_dir)
    here = {"run_id": info.get("run_id"), "checkpoint": os.path.basename(path), "env_id": info["env_id"]}
    if bound == here:
        return None
    return (f"its pickled environment state is signed for {_describe_binding(bound)}, but it is in "
            f"{_describe_binding(here)}: it was copied from another run or checkpoint")


def check_recorded_env(run_dir: str, env_id: Any, trust: bool, signed: bool, env_allowed: bool = True) -> None:
    """UntrustedModuleError when ``env_id``, as ``run_dir/run.json`` records it, would import a module
    (``"module:Env-v0"``) and nothing vouches for it: not ``trust``, nor (with ``signed``, as for resuming)
    this user's signature for that env id on the run's newest intact checkpoint, the rule its pickles follow.
    ``env_allowed``: whether the message offers passing the environment instead."""
    if trust or not isinstance(env_id, str) or env_module(env_id) is None:
        return
    if signed:
        with warnings.catch_warnings():  # the restore that follows warns about what it skips
            warnings.simplefilter("ignore", CheckpointWarning)
            path, document, pickled = _newest_intact(run_dir)
        if signature_problem(run_dir, path, document, pickled) is None:
            return
    refuse_recorded_module(env_id, os.path.join(run_dir, RUN_FILE), env_allowed)


def _describe_binding(bound: dict[str, Any]) -> str:
    run = f"run {bound['run_id']}" if bound["run_id"] else "a run without a run id"
    return f"{bound['checkpoint']} of {run} ({bound['env_id']})"


def _run_id(run_dir: str) -> str:
    """The run id ``run_dir/run.json`` records; one is made and recorded for a run written before run ids."""
    run_id = read_run_info(run_dir).get("run_id")
    if not isinstance(run_id, str) or not run_id:
        run_id = secrets.token_hex(16)
        update_run(run_dir, run_id=run_id)
    return run_id


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
    recorded = read_networks(run_dir)
    for role, record in agent.network_records().items():
        if (recorded.get(role) is None) != (record is None):
            differences.append(f"{role} ({'built-in MLP' if recorded.get(role) is None else 'your own'}; agent: "
                               f"{'built-in MLP' if record is None else 'your own'})")
    if differences:
        raise RunDirError(f"{run_dir} holds another run: {'; '.join(differences)}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.splitlines()[0].split())


