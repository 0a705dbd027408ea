"""Environments: building them from ids, a lean serial vector environment, and their state.

The state of a vector environment (each environment's simulator, random generator and
wrappers) is taken out with :func:`environment_state` and put back with
:func:`restore_environment_state`, in whatever process owns the environments. It is a
pickle: restoring it runs whatever the bytes say, so only restore state this program wrote.
"""

from __future__ import annotations

import copyreg
import difflib
import functools
import importlib
import io
import numbers
import pickle
from types import ModuleType
from typing import Any, Callable, NoReturn, Sequence, TypeAlias, Union

import gymnasium as gym
import numpy as np
from gymnasium.utils import EzPickle
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from trpo_tf import startup
from trpo_tf.errors import EnvironmentValueError, InputError, UnknownEnvironmentError, UntrustedModuleError
from trpo_tf.sampling.masks import MASK_KEY

EnvLike: TypeAlias = Union[str, gym.Env, gym.vector.VectorEnv]
"""What :class:`~trpo_tf.TRPO` trains on: an environment id, a gymnasium Env or a VectorEnv."""

_PLAIN_REWARD_TYPES = frozenset({float, int, np.float64, np.float32, np.int64, np.int32})
"""Reward types taken without further checks (one set look-up per step)."""


class SerialVectorEnv(gym.vector.VectorEnv):
    """N environments stepped one after another in this process, reset in ``SAME_STEP`` mode.

    A lean ``SyncVectorEnv``: it keeps only the final observations and the action masks
    (:mod:`~trpo_tf.sampling.masks`: one entry per environment, None where it gave none) from the
    environments' infos and copies nothing it need not, which matters when the environment step
    and the policy each cost a few microseconds (MuJoCo). Reset seeds are ``seed + i`` for environment i, as in
    gymnasium.

    ``env_fns`` are the N functions that make the environments (called once each, now);
    ``first_index`` is the run-wide index of environment 0 here (a worker's share starts there), used
    to name environments in errors.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], first_index: int = 0):
        self.envs = [make() for make in env_fns]
        self.first_index = first_index  # environment 0 here is environment first_index of the run (workers)
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.spec = self.envs[0].spec
        self.metadata = dict(self.envs[0].metadata, autoreset_mode=AutoresetMode.SAME_STEP)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Reset every environment, environment i with ``seed + i`` (all unseeded when ``seed`` is None) and
        ``options``; returns (observations [N, *obs_shape], an empty info dict). For a ``Dict`` space the
        observations are a dict of such arrays by key."""
        seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        results = [self._checked_reset(i, env.reset(seed=s, options=options)) for i, (env, s) in
                   enumerate(zip(self.envs, seeds))]
        masks = [info.get(MASK_KEY) for _, info in results]
        info = {MASK_KEY: masks} if any(mask is not None for mask in masks) else {}
        return self._stack([observation for observation, _ in results]), info

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step environment i with ``actions[i]`` (``actions`` [N, *A]); an environment whose episode ends
        is reset at once (``SAME_STEP``), its last observation kept in ``info["final_obs"]`` (with the mask
        ``info["_final_obs"]``). Returns (observations [N, *obs_shape], rewards [N], terminated [N],
        truncated [N], info). Raises :class:`~trpo_tf.errors.EnvironmentValueError`, naming the
        environment, for a reward that is not one real number or observations that do not stack."""
        observations, rewards = [], np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        final_observations, masks = None, None
        for i, env in enumerate(self.envs):
            observation, reward, terminated[i], truncated[i], env_info = env.step(actions[i])
            rewards[i] = reward if type(reward) in _PLAIN_REWARD_TYPES else self._checked_reward(reward, i)
            if terminated[i] or truncated[i]:
                if final_observations is None:
                    final_observations = np.full(self.num_envs, None, dtype=object)
                final_observations[i] = observation
                observation, env_info = self._checked_reset(i, env.reset())
            observations.append(observation)
            if env_info and MASK_KEY in env_info:  # the mask of the observation returned (after an autoreset: the reset's)
                masks = masks or [None] * self.num_envs
                masks[i] = env_info[MASK_KEY]
        info: dict[str, Any] = {} if final_observations is None else {
            "final_obs": final_observations, "_final_obs": terminated | truncated}
        if masks is not None:
            info[MASK_KEY] = masks
        return self._stack(observations), rewards, terminated, truncated, info

    def _checked_reset(self, index: int, result: Any) -> tuple[Any, dict]:
        """Environment ``index``'s reset ``result`` if it is gymnasium's (observation, info dict); otherwise an
        :class:`~trpo_tf.errors.EnvironmentValueError` naming the environment and what it returned."""
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
            return result
        found = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
        raise EnvironmentValueError(f"{describe_environment(self, index)}'s reset() returned {found}, not gymnasium's "
                                    "(observation, info) with info a dict")

    def call(self, name: str, *args: Any) -> tuple[Any, ...]:
        """``name(*args)`` called on each environment (through its wrappers): one result per environment."""
        return tuple(env.get_wrapper_attr(name)(*args) for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        """Close every environment (``kwargs`` from ``VectorEnv.close`` are not used)."""
        for env in self.envs:
            env.close()

    def _stack(self, observations: list[Any]) -> Any:
        """One observation per environment → [N, *obs_shape]; for a Dict space, a dict of such arrays by key."""
        space = self.single_observation_space
        if not isinstance(space, gym.spaces.Dict):
            try:
                return np.array(observations)
            except (ValueError, TypeError):
                self._refuse_unstackable(observations, space)
        for i, observation in enumerate(observations):
            if not isinstance(observation, dict) or sorted(observation) != sorted(space.spaces):
                found = sorted(observation) if isinstance(observation, dict) else type(observation).__name__
                raise EnvironmentValueError(f"{describe_environment(self, i)} returned the observation "
                                            f"{found}, not a dict with the keys {sorted(space.spaces)} of {space}")
        stacked = {}
        for key, sub in space.spaces.items():
            parts = [observation[key] for observation in observations]
            try:
                stacked[key] = np.array(parts)
            except (ValueError, TypeError):
                self._refuse_unstackable(parts, sub, key)
        return stacked

    def _refuse_unstackable(self, observations: list[Any], space: gym.Space, key: str | None = None) -> NoReturn:
        """Raise EnvironmentValueError naming the environment whose observation (one per environment; the
        part ``key`` of it for a Dict) does not stack with the others into [N, *shape of ``space``]."""
        shapes = [_shape_of(o) for o in observations]
        expected = space.shape
        i = next((i for i, shape in enumerate(shapes) if shape != expected), 0)
        raise EnvironmentValueError(
            f"{describe_environment(self, i)} returned an observation "
            f"{'' if key is None else f'whose {key!r} is '}of "
            f"{'shape ' + str(shapes[i]) if shapes[i] is not None else type(observations[i]).__name__} "
            f"({space} has shape {expected})")

    def _checked_reward(self, reward: Any, i: int) -> float:
        """``reward`` of environment ``i`` as a float; EnvironmentValueError unless it is one real number."""
        if isinstance(reward, np.ndarray) and reward.ndim == 0:
            reward = reward[()]
        if isinstance(reward, (numbers.Real, np.bool_)):
            return float(reward)
        raise EnvironmentValueError(f"{describe_environment(self, i)} returned the reward "
                                    f"{reward!r}, not one real number")


def _shape_of(value: Any) -> tuple[int, ...] | None:
    """``np.shape(value)``, or None when ``value`` is no array (a ragged list, say)."""
    try:
        return tuple(np.shape(value))
    except (ValueError, TypeError):
        return None


def environment_name(env: gym.vector.VectorEnv, index: int) -> str:
    """How errors name environment ``index`` of ``env``: its id, else its class name."""
    envs = getattr(env, "envs", None)
    single = envs[index] if envs is not None and index < len(envs) else env
    spec = getattr(single, "spec", None)
    return spec.id if spec is not None else type(getattr(single, "unwrapped", single)).__name__


def describe_environment(env: gym.vector.VectorEnv, index: int) -> str:
    """"environment i (id)" for environment ``index`` of ``env``, i counted among all the run's
    environments (a worker's ``env`` starts at its ``first_index``)."""
    return f"environment {index + getattr(env, 'first_index', 0)} ({environment_name(env, index)})"


def env_module(env_id: str) -> str | None:
    """The module an id of the form ``"module:Env-v0"`` imports (``"module"``); None for any other ``env_id``."""
    module, separator, _ = env_id.partition(":")
    return module if separator else None


def refuse_recorded_module(env_id: Any, source: str, env_allowed: bool = True) -> None:
    """:class:`UntrustedModuleError` when ``env_id``, as ``source`` (a run's run.json, an export's metadata)
    records it, would import a module: what a file chose is not run. The message says how the user allows
    it: by passing the environment themselves (unless not ``env_allowed``), or trust."""
    module = env_module(env_id) if isinstance(env_id, str) else None
    if module is None:
        return
    ways = (["pass the environment yourself (env=...) if you know that module"] if env_allowed else []) + [
        "pass trust=True if you trust whoever wrote it"]
    raise UntrustedModuleError(
        f"{source} names the environment {env_id!r}, which would import the module {module!r}: a file from a run "
        f"or an export does not choose code to run; {', or '.join(ways)}",
        command_line={"(env=...)": "(--env ENV_ID)", "trust=True": "--trust-run"})


ENV_FAMILIES: dict[str, tuple[str, Callable[[ModuleType], None], str]] = {
    # id prefix: (module to import, what to do with it then, the extra that installs it)
    "MinAtar/": ("minatar.gym", lambda module: module.register_envs(), "minatar"),
    # ale_py registers its ids on import. Its environments set its log level to errors when the first is
    # made, after the ALE printed its banner to stderr; set here first, the banner stays out of the way.
    "ALE/": ("ale_py", lambda module: module.ALEInterface.setLoggerMode(module.LoggerMode.Error), "atari"),
}
"""Families of image environments whose package registers their ids only when asked (MinAtar) or when
imported (ALE); :func:`check_env_id` registers a family the first time one of its ids is asked for."""


def check_env_id(env_id: str) -> str:
    """The registered id of ``env_id``; :class:`UnknownEnvironmentError` with close matches when there is none.

    ``"module:Env-v0"`` imports ``module`` first (which registers ``Env-v0``) and gives ``"Env-v0"``,
    so a worker process that builds environments from the id finds one registered by a module. An id of
    a family in :data:`ENV_FAMILIES` (``MinAtar/Breakout-v1``, ``ALE/Breakout-v5``) registers its family
    when it is not registered yet; UnknownEnvironmentError naming the install command when its package is
    missing.
    """
    module = env_module(env_id)
    if module is not None:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise UnknownEnvironmentError(f"{env_id}: cannot import {module!r} ({error})") from None
        env_id = env_id.partition(":")[2]
    if env_id not in gym.registry:
        _register_family(env_id)
    if env_id in gym.registry:
        return env_id
    close = difflib.get_close_matches(env_id, list(gym.registry), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownEnvironmentError(f"unknown environment id {env_id!r}{hint}")


def portable_registration(env_id: str) -> bytes | None:
    """This process's registration of ``env_id`` (its ``EnvSpec``), pickled by value for sampling workers,
    which may not know the id: one registered by the user's script, say. None for ``"module:Env-v0"``
    ids, which workers register by importing the module.

    The creator travels by value (cloudpickle, as Ray sends functions), so a class or function defined
    in the script works. :class:`UnknownEnvironmentError` when it cannot be pickled, naming the id and
    the ``"module:Env-v0"`` form that works instead.
    """
    if ":" in env_id:
        return None
    import cloudpickle  # gymnasium's own dependency
    spec = gym.spec(check_env_id(env_id))
    try:
        return bytes(cloudpickle.dumps(spec))
    except Exception as error:  # noqa: BLE001 - whatever stops pickling: the creator cannot travel
        raise UnknownEnvironmentError(
            f"environment id {env_id!r} is registered in this process, but its creator ({spec.entry_point!r}) "
            f"cannot be sent to sampling workers ({type(error).__name__}: {' '.join(str(error).split())}); "
            f"register it in a module the workers can import and pass 'module:{env_id}' (see gymnasium.register), "
            "or sample in this process (n_workers=1)") from None


def register_portable(env_id: str, registration: bytes) -> None:
    """Register ``env_id`` from ``registration``, the learner's :func:`portable_registration` bytes (a
    pickled ``EnvSpec``), unless this process knows the id already.

    :class:`UnknownEnvironmentError` when the creator cannot be rebuilt here (it names a module this
    process cannot import), naming the id and the ``"module:Env-v0"`` form.
    """
    if env_id in gym.registry:
        return
    try:
        spec = pickle.loads(registration)
    except Exception as error:  # noqa: BLE001 - the learner's creator does not exist here
        raise UnknownEnvironmentError(
            f"environment id {env_id!r} is registered in the learner's process but a sampling worker cannot rebuild "
            f"its creator ({type(error).__name__}: {' '.join(str(error).split())}); register it in a module the "
            f"workers can import and pass 'module:{env_id}'") from None
    gym.registry[env_id] = spec


def _register_family(env_id: str) -> None:
    """Register the ids of ``env_id``'s family (:data:`ENV_FAMILIES`), if it has one, through its package."""
    family = next((prefix for prefix in ENV_FAMILIES if env_id.startswith(prefix)), None)
    if family is None:
        return
    module, register, extra = ENV_FAMILIES[family]
    try:
        imported = importlib.import_module(module)
    except ImportError:
        raise UnknownEnvironmentError(f"{env_id} is one of the {family[:-1]} environments, which need the "
                                      f"{module.split('.')[0]} package: pip install -e '.[{extra}]'") from None
    register(imported)


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None, **extra: Any) -> gym.Env:
    """``gymnasium.make(env_id, **env_kwargs, **extra)``; an unknown id or keyword raises UnknownEnvironmentError."""
    registered = check_env_id(env_id)
    try:
        _import_environment_module(registered)
        return gym.make(registered, **(env_kwargs or {}), **extra)
    except TypeError as error:
        if not env_kwargs:
            raise
        raise UnknownEnvironmentError(f"{env_id} does not accept env_kwargs {env_kwargs}: {error}") from None
    except gym.error.Error as error:  # a missing dependency, a deprecated version, ...
        raise UnknownEnvironmentError(f"{env_id} cannot be made: {' '.join(str(error).split())}") from None


def _import_environment_module(env_id: str) -> None:
    """Import the module of ``env_id``'s entry point (MuJoCo with it, for a MuJoCo environment), so
    that MuJoCo's warnings are filtered before the environment compiles its model."""
    entry_point = gym.spec(env_id).entry_point
    if isinstance(entry_point, str):
        load_env_creator(entry_point)
    startup.filter_mujoco_warnings()


def make_vector_env(env: EnvLike, n_envs: int, env_kwargs: dict[str, Any] | None = None,
                    first_index: int = 0) -> gym.vector.VectorEnv:
    """A vector environment in ``SAME_STEP`` autoreset mode from ``env``: an id, an Env or a VectorEnv.

    An id gives a :class:`SerialVectorEnv` of ``n_envs`` environments made by :func:`make_env`; an Env
    (``n_envs`` must be 1) is wrapped in one; a VectorEnv is returned as it is. ``env_kwargs`` are
    passed to ``gymnasium.make`` and apply to an id only; errors name an id's environments from
    ``first_index`` on (a worker's share of the run's environments).

    Raises :class:`~trpo_tf.errors.InputError` for ``env_kwargs`` with an instance, a VectorEnv in
    another autoreset mode, or an Env with ``n_envs`` above 1; ``TypeError`` when ``env`` is none of the
    three; :class:`~trpo_tf.errors.UnknownEnvironmentError` (from :func:`make_env`) for an id that cannot
    be made.
    """
    if isinstance(env, str):
        return SerialVectorEnv([functools.partial(make_env, env, env_kwargs)] * n_envs, first_index)
    if env_kwargs:
        raise InputError(f"env_kwargs {env_kwargs} apply to environment ids only; got an environment "
                         f"instance {env!r}: build it with those arguments yourself")
    if isinstance(env, gym.vector.VectorEnv):
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.SAME_STEP:
            raise InputError(
                f"the vector environment resets in {mode}; trpo_tf needs the final observation of each "
                "episode, so create it with autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP "
                "(e.g. gym.make_vec(id, num_envs, vector_kwargs={'autoreset_mode': AutoresetMode.SAME_STEP}))")
        return env
    if isinstance(env, gym.Env):
        if n_envs != 1:
            raise InputError(f"one gymnasium Env instance cannot provide n_envs={n_envs} environments: "
                             "pass an environment id or a VectorEnv")
        return SerialVectorEnv([lambda: env])
    raise TypeError(f"env must be an environment id, a gymnasium Env or a gymnasium VectorEnv, got {env!r}")


# --------------------------------------------------------------------------- state

def environment_state(env: gym.vector.VectorEnv) -> bytes:
    """The state of ``env``, a vector environment, pickled (simulators, random generators, wrappers),
    with a signature of its type, size and wrappers that :func:`restore_environment_state` checks.

    Raises whatever pickling raises when the environments cannot be pickled.
    """
    state = {k: v for k, v in env.__dict__.items() if k != "env_fns"}
    buffer = io.BytesIO()
    _StatePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump({"signature": _signature(env), "state": state})
    return buffer.getvalue()


def restore_environment_state(env: gym.vector.VectorEnv, pickled: bytes) -> str | None:
    """Put state from :func:`environment_state` back into ``env``; returns None, or why it could not.

    Unpickles ``pickled``: call it only on bytes this program wrote.
    """
    try:
        saved = pickle.loads(pickled)
    except Exception as error:  # noqa: BLE001 - an unreadable pickle means "no state"
        return f"the environment state cannot be unpickled ({' '.join(str(error).split()) or type(error).__name__})"
    if not isinstance(saved, dict) or saved.get("signature") != _signature(env):
        found = saved.get("signature") if isinstance(saved, dict) else type(saved).__name__
        return f"the saved environment ({found}) differs from this one ({_signature(env)})"
    for sub_env in getattr(env, "envs", []):
        sub_env.close()
    env.__dict__.update(saved["state"])
    return None


class _StatePickler(pickle.Pickler):
    """Pickles environments by their state, not by how they were constructed.

    ``EzPickle`` environments (MuJoCo, Box2D, ...) pickle as "call the constructor again",
    which loses the simulator state and the random generator: pickle their ``__dict__``
    instead. ``SyncVectorEnv`` keeps its environment factories (often closures): leave them out.
    """

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, EzPickle):
            return copyreg.__newobj__, (type(obj),), dict(obj.__dict__), None, None, _set_dict  # type: ignore[attr-defined]
        if isinstance(obj, SyncVectorEnv):
            state = {k: v for k, v in obj.__dict__.items() if k != "env_fns"}
            return copyreg.__newobj__, (type(obj),), state, None, None, _set_dict  # type: ignore[attr-defined]
        return NotImplemented


def _set_dict(obj: Any, state: dict[str, Any]) -> None:
    obj.__dict__.update(state)


def _signature(env: gym.vector.VectorEnv) -> str:
    """What must match for a pickled vector env to stand in for ``env``: type, size, wrappers."""
    inner = [str(sub_env) for sub_env in getattr(env, "envs", [])]
    return f"{type(env).__name__}[{env.num_envs}]{inner}"
