"""Sampling from gymnasium vector environments into a :class:`Batch`.

The sampler knows nothing about TensorFlow or the trust region: it calls ``act`` — any
function from a batch of raw observations to actions — once per vectorized step, and
records what the environments answer. Episodes are reset by the vector environment in
``AutoresetMode.SAME_STEP``, so the true final observation of every finished episode is
kept for bootstrapping truncated ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

EnvLike = "str | gym.Env | gym.vector.VectorEnv"


class EnvironmentValueError(ValueError):
    """An environment returned a NaN or infinite observation or reward."""


@dataclasses.dataclass
class Batch:
    """One iteration's experience from N environments over T steps.

    observations [T, N, *obs_shape]: what the policy saw before acting;
    actions [T, N, *act_shape]: what it sampled (before clipping to a Box's bounds);
    rewards, terminated, truncated [T, N];
    final_observations [M, *obs_shape] with final_index [M, 2] (t, n): the last observation
    of each episode that ended at step t in environment n;
    last_observations [N, *obs_shape]: the observations after step T - 1;
    episode_returns, episode_lengths: of the episodes that finished during this batch.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_observations: np.ndarray
    final_index: np.ndarray
    last_observations: np.ndarray
    episode_returns: list[float]
    episode_lengths: list[int]

    @property
    def size(self) -> int:
        return self.rewards.size


class SerialVectorEnv(gym.vector.VectorEnv):
    """N environments stepped one after another in this process, reset in ``SAME_STEP`` mode.

    A lean ``SyncVectorEnv``: it keeps only the final observations from the environments'
    infos and copies nothing it need not, which saves about 13 µs per step — 40% of a
    HalfCheetah step — when the policy itself costs a few µs. Reset seeds are
    ``seed + i`` for environment i, as in gymnasium.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]]):
        self.envs = [make() for make in env_fns]
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.spec = self.envs[0].spec
        self.metadata = dict(self.envs[0].metadata, autoreset_mode=AutoresetMode.SAME_STEP)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        observations = [env.reset(seed=s, options=options)[0] for env, s in zip(self.envs, seeds)]
        return np.stack(observations), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        observations, rewards = [], np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        final_observations = None
        for i, env in enumerate(self.envs):
            observation, rewards[i], terminated[i], truncated[i], _ = env.step(actions[i])
            if terminated[i] or truncated[i]:
                if final_observations is None:
                    final_observations = np.full(self.num_envs, None, dtype=object)
                final_observations[i] = observation
                observation, _ = env.reset()
            observations.append(observation)
        info = {} if final_observations is None else {
            "final_obs": final_observations, "_final_obs": terminated | truncated}
        return np.array(observations), rewards, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None, **extra: Any) -> gym.Env:
    """``gymnasium.make(env_id, **env_kwargs, **extra)``; an unknown id or keyword raises ValueError."""
    check_env_id(env_id)
    try:
        return gym.make(env_id, **(env_kwargs or {}), **extra)
    except TypeError as error:
        if not env_kwargs:
            raise
        raise ValueError(f"{env_id} does not accept env_kwargs {env_kwargs}: {error}") from None


def make_vector_env(env: EnvLike, n_envs: int, env_kwargs: dict[str, Any] | None = None
                    ) -> gym.vector.VectorEnv:
    """A vector environment in ``SAME_STEP`` autoreset mode from an id, an Env or a VectorEnv.

    ``env_kwargs`` are passed to ``gymnasium.make`` and apply to an id only.
    """
    if isinstance(env, str):
        return SerialVectorEnv([functools.partial(make_env, env, env_kwargs)] * n_envs)
    if env_kwargs:
        raise ValueError(f"env_kwargs {env_kwargs} apply to environment ids only; got an environment "
                         f"instance {env!r}: build it with those arguments yourself")
    if isinstance(env, gym.vector.VectorEnv):
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"the vector environment resets in {mode}; trpo_tf needs the final observation of each "
                "episode, so create it with autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP "
                "(e.g. gym.make_vec(id, num_envs, vector_kwargs={'autoreset_mode': AutoresetMode.SAME_STEP}))")
        return env
    if isinstance(env, gym.Env):
        if n_envs != 1:
            raise ValueError(f"one gymnasium Env instance cannot provide n_envs={n_envs} environments: "
                             "pass an environment id or a VectorEnv")
        return SerialVectorEnv([lambda: env])
    raise TypeError(f"env must be an environment id, a gymnasium Env or a gymnasium VectorEnv, got {env!r}")


def check_env_id(env_id: str) -> None:
    """Raise a ValueError with close matches when ``env_id`` is not registered."""
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown environment id {env_id!r}{hint}")


class Sampler:
    """Steps a vector environment with a policy and returns :class:`Batch` es.

    Episodes continue across calls to :meth:`collect`; the first call resets the
    environments with ``seed``.
    """

    def __init__(self, env: gym.vector.VectorEnv, seed: int | None):
        self.env = env
        self.seed = seed
        self.n_envs = env.num_envs
        self.observations: np.ndarray | None = None
        self.running_returns = np.zeros(self.n_envs)
        self.running_lengths = np.zeros(self.n_envs, dtype=np.int64)
        self.total_steps = 0

    def collect(self, act: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], steps: int) -> Batch:
        """Run ``steps`` vectorized steps. ``act(obs [N, ...])`` returns (env actions, stored actions).

        The loop only steps and records; episode bookkeeping and the finiteness checks run on
        the whole batch afterwards, which keeps the per-step cost near the environment's own.
        """
        if self.observations is None:
            self.observations, _ = self.env.reset(seed=self.seed)
            self._check_finite(self.observations[None], "observation", "reset", self.total_steps)
        observations, actions, rewards, terminated, truncated, infos = [], [], [], [], [], {}
        step, obs = self.env.step, self.observations
        for t in range(steps):
            env_actions, stored_actions = act(obs)
            observations.append(obs)
            actions.append(stored_actions)
            obs, reward, term, trunc, info = step(env_actions)
            rewards.append(reward)
            terminated.append(term)
            truncated.append(trunc)
            if info:
                infos[t] = info
        self.observations = obs
        steps_before, self.total_steps = self.total_steps, self.total_steps + steps * self.n_envs
        seen = np.asarray(observations + [obs])  # [T + 1, N, ...]: seen[t + 1] came from step t
        rewards = np.asarray(rewards, dtype=np.float64)
        self._check_finite(seen[1:], "observation", "step", steps_before)
        self._check_finite(rewards, "reward", "step", steps_before)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        final_index = np.argwhere(terminated | truncated)  # [M, 2] (t, n), in time order
        final_observations = [self._final_observation(infos, t, n, steps_before) for t, n in final_index]
        episode_returns, episode_lengths = self._finish_episodes(rewards, final_index)
        obs_shape = obs.shape[1:]
        return Batch(
            observations=seen[:-1].astype(np.float32),
            actions=np.asarray(actions),
            rewards=rewards.astype(np.float32),
            terminated=terminated,
            truncated=truncated,
            final_observations=np.asarray(final_observations, dtype=np.float32).reshape((-1,) + obs_shape),
            final_index=final_index.astype(np.int64).reshape(-1, 2),
            last_observations=np.asarray(obs, dtype=np.float32),
            episode_returns=episode_returns,
            episode_lengths=episode_lengths,
        )

    def _final_observation(self, infos: dict[int, dict], t: int, n: int, steps_before: int) -> np.ndarray:
        """The last observation of the episode that ended at step t in environment n."""
        info = infos.get(t, {})
        if "final_obs" not in info:
            raise ValueError(f"environment {n} ended an episode at step {t} without a 'final_obs' in the "
                             "vector environment's info: trpo_tf needs the final observation of every episode, "
                             "as gymnasium's vector environments report it in AutoresetMode.SAME_STEP")
        final = np.asarray(info["final_obs"][n])
        self._check_finite(final[None, None], "final observation", "step", steps_before + t * self.n_envs, n)
        return final

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

    def _check_finite(self, values: np.ndarray, what: str, call: str, steps_before: int,
                      env_index: int | None = None) -> None:
        """Raise :class:`EnvironmentValueError` naming the environment, the value and the step.

        ``values`` is [T, N, ...] from consecutive vectorized steps that began after
        ``steps_before`` environment steps (or [1, 1, ...] for one environment's value).
        """
        if np.isfinite(values).all():
            return
        flat = np.asarray(values, dtype=np.float64).reshape(values.shape[0], values.shape[1], -1)
        t, n = np.argwhere(~np.isfinite(flat).all(axis=2))[0]
        env = n if env_index is None else env_index
        steps = steps_before + (t + 1) * self.n_envs if call == "step" else steps_before
        raise EnvironmentValueError(
            f"environment {env} returned a non-finite {what} {flat[t, n].tolist()} from {call}() "
            f"after {steps} environment steps")
