"""The in-process sampler: steps a vector environment with a policy snapshot into a :class:`Batch`.

One of the :class:`~trpo_tf.sampling.protocol.Sampler` backends, and the one every sampling
worker runs over its own environments. It knows nothing about TensorFlow or the trust region:
it acts with a :class:`~trpo_tf.policies.PolicySnapshot` (NumPy) once per vectorized step and
records what the environments answer. Episodes are reset by the vector environment in
``AutoresetMode.SAME_STEP``, so the true final observation of every finished episode is
kept for bootstrapping truncated ones. Its state (:meth:`Sampler.state`) is plain data; the
environments' state is a pickle (:meth:`Sampler.environment_state`).

A recurrent policy (an actor with a ``state_size`` S > 0 and ``act_recurrent``) acts from each
environment's state, which the sampler carries from step to step and from one :meth:`collect` to the
next (reset to zeros when an episode ends), records at the start of each segment in the batch with
the episode starts, and keeps in its :meth:`~InProcessSampler.state` for checkpoints.

Action masks (:mod:`.masks`) are read after every reset and step from the source the
environments offer, acted on, and recorded in the batch. To know whether there is one before the
policy is built, a sampler over a Discrete or MultiDiscrete action space (with ``action_masks``
"auto") resets its environments when it is made, as the first :meth:`~InProcessSampler.collect`
would (same seed): the first reset's info tells whether masks come with it.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from trpo_tf.errors import CheckpointWarning, EnvironmentValueError
from trpo_tf.sampling.batch import Batch
from trpo_tf.sampling.checks import (NUMERIC_KINDS, as_stored, describe_invalid, invalid_rows, structure_problem,
                                     to_float32)
from trpo_tf.sampling.environments import (describe_environment, environment_name, environment_state,
                                           restore_environment_state)
from trpo_tf.sampling.masks import MaskReader, find_source, mask_size, policy_observation_space, without_mask
from trpo_tf.sampling.protocol import Actor


class InProcessSampler:
    """Steps a vector environment in this process with a policy and returns :class:`Batch` es.

    ``env`` is the vector environment (N = ``env.num_envs``), which must reset in ``SAME_STEP``
    autoreset mode. Episodes continue across calls to :meth:`collect`; the first call resets the
    environments with ``seed``. Actions are drawn with ``rng``. ``action_masks``:
    ``TRPOConfig.action_masks`` ("auto": read the masks the environments give; "off": ignore them).
    """

    needs_picklable_actor = False

    def __init__(self, env: gym.vector.VectorEnv, seed: int | None, rng: np.random.Generator,
                 action_masks: str = "auto"):
        self.env = env
        self.seed = seed
        self.rng = rng
        self.n_envs = env.num_envs
        self.observations: np.ndarray | None = None
        self.masks: np.ndarray | None = None  # [N, M]: the action masks of ``observations``, as given
        self.running_returns = np.zeros(self.n_envs)
        self.running_lengths = np.zeros(self.n_envs, dtype=np.int64)
        self.total_steps = 0
        self.recurrent_states: np.ndarray | None = None  # [N, S]: a recurrent policy's states before the next step
        self.episode_starts = np.ones(self.n_envs, dtype=bool)  # [N]: the next step begins an episode
        self.action_masks = action_masks
        self.mask_reader: MaskReader | None = None  # chosen at the first reset (None: masks "off")
        if action_masks == "auto" and mask_size(env.single_action_space) is not None:
            self.observations = self._reset()  # its info tells whether masks come with the observations

    @property
    def mask_source(self) -> str | None:
        """Where the environments' action masks come from (see :mod:`.masks`), or None when they give none."""
        return None if self.mask_reader is None else self.mask_reader.source

    @property
    def mask_size(self) -> int | None:
        """M, the length of an action mask of the action space (None for one that takes none)."""
        return mask_size(self.env.single_action_space)

    def collect(self, policy: Actor, steps: int) -> Batch:
        """Run ``steps`` vectorized steps, acting with ``policy.act(observations, rng)``.

        The loop only steps, records and checks each observation's shape and dtype; episode
        bookkeeping and the value checks (finite in float32, Discrete values in range) run on the
        whole batch afterwards, which keeps the per-step cost near the environment's own. A bad
        value raises :class:`EnvironmentValueError` naming the environment, the value and the step,
        before anything learns from the batch; an exception the environment raises itself
        propagates unchanged (unless a bad value it returned earlier explains it).
        """
        if self.observations is None:
            self.observations = self._reset()
        seen_list: list[np.ndarray] = []
        action_list, reward_list, terminated_list, truncated_list = [], [], [], []
        mask_list: list[np.ndarray] = []  # mask_list[t]: the masks acted on at step t (with masks only)
        infos: dict[int, dict] = {}
        step, obs, act, rng, masks = self.env.step, self.observations, policy.act, self.rng, self.masks
        carrier, state_size = None, int(getattr(policy, "state_size", 0))
        if state_size:  # a recurrent policy: act from each environment's state
            carrier = StateCarrier(policy, self._states_for(state_size), self.episode_starts)
            act = carrier.act
        reader = self.mask_reader if self.mask_reader is not None and self.mask_reader.reads_steps else None
        batch_shape, n_envs, steps_before = (self.n_envs,) + self.obs_shape, self.n_envs, self.total_steps
        try:
            for t in range(steps):
                env_actions, stored_actions = act(obs, rng) if masks is None else act(obs, rng, masks)
                seen_list.append(obs)
                action_list.append(stored_actions)
                try:
                    obs, reward, term, trunc, info = step(env_actions)
                except EnvironmentValueError as error:  # from SerialVectorEnv, which does not count steps
                    raise EnvironmentValueError(
                        f"{error} from step() after {steps_before + (t + 1) * n_envs} environment steps") from None
                if reader is not None:
                    if masks is not None:
                        mask_list.append(masks)
                    obs, masks = reader.read(self.env, obs, info, "step", steps_before + (t + 1) * n_envs)
                if type(obs) is not np.ndarray or obs.shape != batch_shape or obs.dtype.kind not in NUMERIC_KINDS:
                    self._refuse_structure(obs, "step", steps_before + (t + 1) * n_envs)
                reward_list.append(reward)
                terminated_list.append(term)
                truncated_list.append(trunc)
                if info:
                    infos[t] = info
                if carrier is not None:
                    carrier.end(term | trunc)
        except Exception as error:
            if not isinstance(error, EnvironmentValueError):  # a bad value may explain the failure
                recorded = seen_list if seen_list and seen_list[-1] is obs else seen_list + [obs]
                self._check_values(self._stack(recorded), steps_before, error)
                if masks is not None:
                    self._check_masks(mask_list[1:] + [masks], steps_before, error)
            raise
        seen = self._stack(seen_list + [obs])  # [T + 1, N, ...]: seen[t + 1] came from step t
        stored = self._check_values(seen, steps_before)
        action_masks = None
        if masks is not None:  # masks [T + 1, N, M]: masks[t] acted on at step t, masks[0] checked before
            every = np.concatenate([np.asarray(self.masks)[None] != 0,
                                    self._check_masks(mask_list[1:] + [masks] if mask_list else [], steps_before)])
            action_masks, masks = every[:-1], every[-1]
        rewards = self._rewards(reward_list, steps_before)
        terminated = np.asarray(terminated_list, dtype=bool)
        truncated = np.asarray(truncated_list, dtype=bool)
        final_index = np.argwhere(terminated | truncated)  # [M, 2] (t, n), in time order
        final_observations = self._final_observations(infos, final_index, steps_before)
        self.observations, self.masks, self.total_steps = obs, masks, steps_before + steps * n_envs
        if carrier is not None:
            self.recurrent_states, self.episode_starts = carrier.states, carrier.starts
        episode_returns, episode_lengths = self._finish_episodes(rewards, final_index)
        return Batch(
            observations=self._map_parts(lambda part, key: part[:-1], stored),
            actions=np.asarray(action_list),
            rewards=rewards.astype(np.float32),
            terminated=terminated,
            truncated=truncated,
            final_observations=final_observations,
            final_index=final_index.astype(np.int64).reshape(-1, 2),
            last_observations=self._map_parts(lambda part, key: part[-1], stored),
            episode_returns=episode_returns,
            episode_lengths=episode_lengths,
            action_masks=action_masks,
            recurrent_states=None if carrier is None else carrier.initial,
            episode_starts=None if carrier is None else np.asarray(carrier.start_list, dtype=bool).reshape(
                steps, n_envs),
        )

    def _states_for(self, size: int) -> np.ndarray:
        """The recurrent states [N, S] the next step starts from: the carried ones, or zeros (a first
        collect, fresh episodes, or a policy of another state size)."""
        states = self.recurrent_states
        if states is None or states.shape != (self.n_envs, size):
            return np.zeros((self.n_envs, size), np.float32)
        return states

    @property
    def vector_env(self) -> gym.vector.VectorEnv:
        """The environments, stepped in this process."""
        return self.env

    @property
    def observation_space(self) -> gym.Space:
        """One environment's observation space, as the policy reads it (without the masks, when an
        observation key holds them)."""
        return policy_observation_space(self.env.single_observation_space, self.mask_source)

    @property
    def action_space(self) -> gym.Space:
        """One environment's action space."""
        return self.env.single_action_space

    def take_restarts(self) -> None:
        """None: environments in this process are never replaced."""
        return None

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """The shape of one environment's observation, as its observation space declares."""
        return tuple(self.env.single_observation_space.shape or ())

    # A Dict observation is a dict of arrays, one per key; the checks run key by key on the
    # parts (key None: the whole observation of any other space).

    @property
    def parts(self) -> dict[str | None, gym.Space]:
        """The observation space's parts by key: a Dict's sub-spaces, else ``{None: space}``."""
        space = self.observation_space
        if isinstance(space, gym.spaces.Dict):
            return {str(key): sub for key, sub in space.spaces.items()}
        return {None: space}

    def _map_parts(self, function: Callable[[Any, str | None], Any], observations: Any) -> Any:
        """``function(part, key)`` on each part of ``observations``, joined back as they came (a dict for a Dict)."""
        done = {key: function(observations if key is None else observations[key], key) for key in self.parts}
        return done[None] if None in done else done

    def _stack(self, observations: list[Any]) -> Any:
        """Observations alike [N, ...] (dicts of them for a Dict) stacked into [K, N, ...]."""
        keys = list(self.parts)
        if keys == [None]:
            return np.asarray(observations)
        return {key: np.asarray([o[key] for o in observations]) for key in keys}

    def state(self) -> dict[str, Any]:
        """Where sampling stands, as plain data (arrays, numbers): resumes with :meth:`load_state`."""
        return {"observations": self.observations, "masks": self.masks,
                "running_returns": self.running_returns.copy(),
                "running_lengths": self.running_lengths.copy(), "total_steps": int(self.total_steps),
                "seed": self.seed, "rng": self.rng.bit_generator.state,
                "recurrent_states": None if self.recurrent_states is None else self.recurrent_states.copy(),
                "episode_starts": self.episode_starts.copy()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state`; raises ValueError when it does not fit these environments."""
        observations = state["observations"]
        running_returns = np.asarray(state["running_returns"], dtype=np.float64)
        running_lengths = np.asarray(state["running_lengths"], dtype=np.int64)
        sizes = [] if observations is None else [len(part) for part in
                                                 (observations.values() if isinstance(observations, dict) else
                                                  [observations])]
        if running_returns.shape != (self.n_envs,) or any(size != self.n_envs for size in sizes):
            raise ValueError(f"the sampler state is for {len(running_returns)} environments, "
                             f"this sampler has {self.n_envs}")
        if state["rng"].get("bit_generator") != type(self.rng.bit_generator).__name__:
            raise ValueError(f"the sampler's random generator is {state['rng'].get('bit_generator')}, "
                             f"expected {type(self.rng.bit_generator).__name__}")
        masks = state.get("masks")
        found = None if masks is None else tuple(np.shape(masks))
        expected = None if self.mask_source is None else (self.n_envs, self.mask_size)
        if observations is not None and found != expected:
            raise ValueError(f"the sampler state holds action masks of shape {found}; these environments' masks "
                             f"have shape {expected}")
        self.observations = None if observations is None else self._map_parts(lambda part, key: np.asarray(part),
                                                                               observations)
        self.masks = None if masks is None else np.asarray(masks, dtype=bool)
        self.running_returns, self.running_lengths = running_returns, running_lengths
        self.total_steps = int(state["total_steps"])
        self.seed = state["seed"]
        self.rng.bit_generator.state = state["rng"]
        states = state.get("recurrent_states")  # absent from checkpoints written before recurrent policies
        self.recurrent_states = None if states is None else np.asarray(states, dtype=np.float32)
        self.episode_starts = np.asarray(state.get("episode_starts", np.ones(self.n_envs)), dtype=bool)

    def environment_state(self) -> bytes:
        """The environments' state, pickled; empty (with a warning) when they cannot be pickled."""
        try:
            return environment_state(self.env)
        except Exception as error:  # noqa: BLE001 - any failure to pickle means "not picklable"
            warnings.warn(f"the environment ({type(self.env).__name__}) cannot be pickled "
                          f"({' '.join(str(error).split()) or type(error).__name__}); a run resumed from this "
                          "checkpoint starts fresh episodes", CheckpointWarning, stacklevel=2)
            return b""

    def load_environment_state(self, pickled: bytes | None, fresh_seed: int) -> None:
        """Put :meth:`environment_state` bytes ``pickled`` back (this unpickles them: trusted bytes only).

        Without bytes (None or empty), or when they do not fit, warns (:class:`~trpo_tf.errors.CheckpointWarning`)
        and starts fresh episodes reset with ``fresh_seed`` (new episodes, not a replay of the first ones).
        """
        problem = (restore_environment_state(self.env, pickled) if pickled else
                   "the checkpoint holds no environment state (it could not be pickled when saved)")
        if problem is not None:
            warnings.warn(f"{problem}; continuing with freshly reset environments", CheckpointWarning,
                          stacklevel=2)
            self.restart_episodes(fresh_seed)

    def restart_episodes(self, seed: int) -> None:
        """Forget the running episodes: the next :meth:`collect` resets the environments with ``seed``."""
        self.observations, self.masks = None, None
        self.recurrent_states, self.episode_starts = None, np.ones(self.n_envs, dtype=bool)
        self.running_returns = np.zeros(self.n_envs)
        self.running_lengths = np.zeros(self.n_envs, dtype=np.int64)
        self.seed = seed

    def close(self) -> None:
        """Close the environments."""
        self.env.close()

    def _reset(self) -> np.ndarray:
        """Reset the environments with ``seed``; their first observations [N, *obs_shape], checked, and
        their action masks in ``masks`` (the first reset chooses where masks come from)."""
        try:
            observations, info = self.env.reset(seed=self.seed)
        except EnvironmentValueError as error:  # from SerialVectorEnv, which does not count steps
            raise EnvironmentValueError(f"{error} from reset() after {self.total_steps} environment steps") from None
        if self.mask_reader is None and self.action_masks == "auto":
            self.mask_reader = self._choose_mask_reader(info)
        if self.mask_reader is not None:
            observations, masks = self.mask_reader.read(self.env, observations, info, "reset", self.total_steps)
            self.masks = None if masks is None else self._check_masks([masks], self.total_steps, call="reset")[0]
        self._refuse_structure(observations, "reset", self.total_steps)
        for key, space in self.parts.items():
            part = observations if key is None else observations[key]
            self._refuse_invalid(part, as_stored(part), _named("observation", key),
                                 lambda k: (k, "reset", self.total_steps), space=space)
        return observations

    def _choose_mask_reader(self, info: dict[str, Any]) -> MaskReader:
        """The reader of the masks the environments give from the source their first reset shows (one
        that refuses masks when there is none, or when the action space takes none)."""
        action_space = self.env.single_action_space
        source = find_source(self.env, info) if mask_size(action_space) is not None else None
        reader = MaskReader(source, action_space, self.n_envs, lambda n: describe_environment(self.env, n))
        reader.refuse_static_sources(self.env, "reset", self.total_steps)
        return reader

    def _check_masks(self, returned: list[np.ndarray], steps_before: int, cause: BaseException | None = None,
                     call: str = "step") -> np.ndarray:
        """``returned`` [T] masks [N, M], which T consecutive ``call`` s returned after ``steps_before``
        environment steps, as bool [T, N, M] once their values are checked (ActionMaskError from ``cause``)."""
        assert self.mask_reader is not None and self.mask_size is not None
        if not returned:
            return np.zeros((0, self.n_envs, self.mask_size), dtype=bool)
        stacked = np.asarray(returned)
        try:
            allowed = self.mask_reader.check_values(stacked.reshape(-1, stacked.shape[-1]), lambda k: (
                k % self.n_envs, call, steps_before + (k // self.n_envs + int(call == "step")) * self.n_envs))
        except EnvironmentValueError as error:
            raise error from cause
        return allowed.reshape(stacked.shape)

    def _final_observations(self, infos: dict[int, dict], final_index: np.ndarray, steps_before: int) -> Any:
        """The last observation of each episode that ended at step t in environment n, for (t, n) in
        ``final_index`` [M, 2], as stored (:func:`as_stored`) [M, *obs_shape], checked like every observation."""
        finals = []
        for t, n in final_index:
            info = infos.get(t, {})
            if "final_obs" not in info:
                raise ValueError(f"environment {n} ended an episode at step {t} without a 'final_obs' in the "
                                 "vector environment's info: trpo_tf needs the final observation of every episode, "
                                 "as gymnasium's vector environments report it in AutoresetMode.SAME_STEP")
            final = info["final_obs"][n]
            final = {key: _as_array(part) for key, part in without_mask(final, self.mask_source).items()} \
                if isinstance(final, dict) else _as_array(final)
            self._refuse_structure(final, "step", steps_before + (t + 1) * self.n_envs, n, "a final observation")
            finals.append(final)

        def checked(key: str | None) -> np.ndarray:
            space = self.parts[key]
            shape = tuple(space.shape or ())
            values = (np.asarray([final if key is None else final[key] for final in finals]).reshape((-1,) + shape)
                      if finals else np.zeros((0,) + shape, space.dtype))
            return self._refuse_invalid(values, as_stored(values), _named("final observation", key), lambda k: (
                int(final_index[k, 1]), "step", steps_before + (int(final_index[k, 0]) + 1) * self.n_envs), space=space)

        parts = {key: checked(key) for key in self.parts}
        return parts[None] if None in parts else parts

    def _rewards(self, reward_list: list[np.ndarray], steps_before: int) -> np.ndarray:
        """The rewards of the vectorized steps as float64 [T, N], checked to be finite in float32."""
        if not reward_list:
            return np.zeros((0, self.n_envs))
        try:
            rewards = np.asarray(reward_list, dtype=np.float64)
        except (ValueError, TypeError):
            rewards = np.zeros(0)
        if rewards.shape != (len(reward_list), self.n_envs):
            t = next((t for t, r in enumerate(reward_list) if np.shape(r) != (self.n_envs,) or
                     np.asarray(r).dtype.kind not in NUMERIC_KINDS), 0)
            raise EnvironmentValueError(f"the vector environment returned rewards {reward_list[t]!r} from step() "
                                        f"after {steps_before + (t + 1) * self.n_envs} environment steps; "
                                        f"expected one number per environment, shape ({self.n_envs},)")
        self._refuse_invalid(rewards.reshape(-1), to_float32(rewards.reshape(-1)), "reward", lambda k: (
            k % self.n_envs, "step", steps_before + (k // self.n_envs + 1) * self.n_envs))
        return rewards

    def _finish_episodes(self, rewards: np.ndarray, final_index: np.ndarray) -> tuple[list[float], list[int]]:
        """Returns and lengths of the episodes that ended in this batch (rewards [T, N], final_index
        [M, 2] in time order); what the unfinished episodes gathered carries over to the next batch."""
        cumulative = np.cumsum(rewards, axis=0)  # [T, N]

        def gathered(n: int, first: int, last: int) -> float:
            """Sum of rewards[first..last, n]."""
            return cumulative[last, n] - (cumulative[first - 1, n] if first > 0 else 0.0)

        first_step = np.zeros(self.n_envs, dtype=np.int64)  # where the running episode began in this batch
        episode_returns, episode_lengths = [], []
        for t, n in final_index:
            episode_returns.append(float(self.running_returns[n] + gathered(n, first_step[n], t)))
            episode_lengths.append(int(self.running_lengths[n] + t + 1 - first_step[n]))
            self.running_returns[n], self.running_lengths[n] = 0.0, 0
            first_step[n] = t + 1
        for n in range(self.n_envs):
            self.running_returns[n] += gathered(n, first_step[n], len(rewards) - 1)
            self.running_lengths[n] += len(rewards) - first_step[n]
        return episode_returns, episode_lengths

    def _check_values(self, seen: Any, steps_before: int, cause: BaseException | None = None) -> Any:
        """``seen`` [T + 1, N, *obs_shape] (a dict of them for a Dict) as stored (float32, or uint8 frames),
        after checking ``seen[1:]``, which T consecutive vectorized steps returned after ``steps_before``
        environment steps (``seen[0]`` was checked before). A bad value raises EnvironmentValueError
        (from ``cause``, the failure it explains)."""
        def checked(part: np.ndarray, key: str | None) -> np.ndarray:
            converted = as_stored(part)
            rows = (-1,) + tuple(self.parts[key].shape or ())  # [T·N, *part_shape]
            self._refuse_invalid(part[1:].reshape(rows), converted[1:].reshape(rows), _named("observation", key),
                                 lambda k: (k % self.n_envs, "step",
                                            steps_before + (k // self.n_envs + 1) * self.n_envs),
                                 cause, space=self.parts[key])
            return converted

        return self._map_parts(checked, seen)

    def _refuse_invalid(self, values: np.ndarray, converted: np.ndarray, what: str,
                        locate: Callable[[int], tuple[int, str, int]], cause: BaseException | None = None,
                        space: gym.Space | None = None) -> np.ndarray:
        """``converted`` (``values`` [K, ...] as stored) when every row is valid; else raise
        EnvironmentValueError for the first invalid row k, placed by ``locate(k)`` → (environment
        index, "step" or "reset", environment steps taken when it was returned). ``space``: the
        observation (part) space the values belong to; None for rewards."""
        bad = invalid_rows(values, converted, space)
        if not bad.any():
            return converted
        k = int(np.argmax(bad))
        n, call, steps = locate(k)
        raise EnvironmentValueError(
            f"{describe_environment(self.env, n)} returned {describe_invalid(values[k], what, space)} "
            f"from {call}() after {steps} environment steps") from cause

    def _refuse_structure(self, observations: Any, call: str, steps: int, env_index: int | None = None,
                          what: str = "an observation") -> None:
        """Raise EnvironmentValueError unless ``observations`` is numeric [N, *obs_shape], as the vector
        environment returns them (or one environment's [*obs_shape] when ``env_index`` is given); for a
        Dict, a dict with the space's keys, each part so."""
        if None in self.parts:
            self._refuse_part_structure(observations, call, steps, env_index, what, None)
            return
        keys = sorted(str(key) for key in self.parts)
        if not isinstance(observations, dict) or sorted(observations) != keys:
            found = sorted(observations) if isinstance(observations, dict) else type(observations).__name__
            where = (f"the vector environment ({environment_name(self.env, 0)})" if env_index is None
                     else describe_environment(self.env, env_index))
            raise EnvironmentValueError(
                f"{where} returned {what} {found} from {call}() after "
                f"{steps} environment steps; {self.env.single_observation_space} holds a dict with keys {keys}")
        for key in keys:
            self._refuse_part_structure(observations[key], call, steps, env_index, what, key)

    def _refuse_part_structure(self, observations: Any, call: str, steps: int, env_index: int | None, what: str,
                               key: str | None) -> None:
        """:meth:`_refuse_structure` for the part ``key`` of the observations (None: the whole observation)."""
        shape, space = tuple(self.parts[key].shape or ()), self.parts[key]
        what = what if key is None else f"{what} whose {key!r} is"
        if env_index is None:
            batch_shape = (self.n_envs,) + shape
            if isinstance(observations, np.ndarray) and observations.ndim >= 1 and len(observations) == self.n_envs:
                observations, env_index = observations[0, ...], 0  # [N, ...] stacks alike observations
            elif structure_problem(observations, batch_shape) is not None:
                raise EnvironmentValueError(
                    f"the vector environment ({environment_name(self.env, 0)}) returned observations "
                    f"{'' if key is None else f'whose {key!r} is '}of {structure_problem(observations, batch_shape)} "
                    f"from {call}() after {steps} environment steps; expected numbers of shape {batch_shape}")
        problem = structure_problem(observations, shape)
        if problem is not None:
            raise EnvironmentValueError(
                f"{describe_environment(self.env, env_index or 0)} returned {what} of "
                f"{problem} from {call}() after {steps} environment steps; {space} holds numbers of shape {shape}")


class StateCarrier:
    """Acts like an :class:`~.protocol.Actor` for the sampler's loop, carrying a recurrent ``actor`` 's states.

    ``states`` [N, S]: the states before the first step (kept as ``initial``); ``starts`` [N]: whether
    that step begins an episode. :meth:`act` steps the actor from the current states; :meth:`end` tells
    which environments ended an episode at that step, whose states go back to zeros.
    ``start_list[t]`` [N] records the episode starts of step t.
    """

    def __init__(self, actor: Any, states: np.ndarray, starts: np.ndarray):
        self.actor = actor
        self.initial = np.asarray(states, np.float32).copy()
        self.states = self.initial
        self.starts = np.asarray(starts, dtype=bool)
        self.start_list: list[np.ndarray] = []

    def act(self, observations: Any, rng: np.random.Generator | None,
            masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Actions for ``observations`` [N, ...] (drawn with ``rng``, among ``masks``), moving the states on."""
        self.start_list.append(self.starts)
        env_actions, stored, self.states = self.actor.act_recurrent(observations, self.states, rng, masks)
        return env_actions, stored

    def end(self, done: np.ndarray) -> None:
        """``done`` [N]: the environments whose episode ended at this step: their states restart at zeros."""
        self.starts = np.asarray(done, dtype=bool)
        if self.starts.any():
            self.states = np.where(self.starts[:, None], np.float32(0.0), self.states).astype(np.float32)


def _named(what: str, key: str | None) -> str:
    """How an error names a value: ``what``, and for a part of a Dict observation, its key."""
    return what if key is None else f"{what} part {key!r}"

def _as_array(value: Any) -> Any:
    """``value`` as a NumPy array when NumPy can make one (a number, a list of numbers), else ``value``."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        return value
