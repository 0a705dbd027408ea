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


def make_vector_env(env: EnvLike, n_envs: int) -> gym.vector.VectorEnv:
    """A vector environment in ``SAME_STEP`` autoreset mode from an id, an Env or a VectorEnv."""
    if isinstance(env, str):
        check_env_id(env)
        return SerialVectorEnv([functools.partial(gym.make, env)] * n_envs)
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
        """Run ``steps`` vectorized steps. ``act(obs [N, ...])`` returns (env actions, stored actions)."""
        if self.observations is None:
            self.observations, _ = self.env.reset(seed=self.seed)
            self._check_finite(self.observations, "observation", "reset")
        observations, actions, rewards, terminated, truncated = [], [], [], [], []
        final_observations, final_index, episode_returns, episode_lengths = [], [], [], []
        for t in range(steps):
            env_actions, stored_actions = act(self.observations)
            observations.append(self.observations)
            actions.append(stored_actions)
            next_obs, reward, term, trunc, info = self.env.step(env_actions)
            self.total_steps += self.n_envs
            self._check_finite(next_obs, "observation", "step")
            self._check_finite(reward, "reward", "step")
            rewards.append(reward)
            terminated.append(term)
            truncated.append(trunc)
            self.running_returns += reward
            self.running_lengths += 1
            ended = term | trunc
            if ended.any():
                for n in np.flatnonzero(ended):
                    final = np.asarray(info["final_obs"][n])
                    self._check_finite(final, "final observation", "step", env_index=n)
                    final_observations.append(final)
                    final_index.append((t, n))
                    episode_returns.append(float(self.running_returns[n]))
                    episode_lengths.append(int(self.running_lengths[n]))
                self.running_returns[ended] = 0.0
                self.running_lengths[ended] = 0
            self.observations = next_obs
        obs_shape = self.observations.shape[1:]
        return Batch(
            observations=np.asarray(observations, dtype=np.float32),
            actions=np.asarray(actions),
            rewards=np.asarray(rewards, dtype=np.float32),
            terminated=np.asarray(terminated, dtype=bool),
            truncated=np.asarray(truncated, dtype=bool),
            final_observations=np.asarray(final_observations, dtype=np.float32).reshape((-1,) + obs_shape),
            final_index=np.asarray(final_index, dtype=np.int64).reshape(-1, 2),
            last_observations=np.asarray(self.observations, dtype=np.float32),
            episode_returns=episode_returns,
            episode_lengths=episode_lengths,
        )

    def _check_finite(self, values, what: str, call: str, env_index: int | None = None) -> None:
        """Raise :class:`EnvironmentValueError` naming the environment, the value and the step."""
        if np.isfinite(values).all():
            return
        array = np.asarray(values, dtype=np.float64)
        if env_index is None:
            env_index = int(np.argwhere(~np.isfinite(array.reshape(self.n_envs, -1)))[0, 0])
            array = array.reshape(self.n_envs, -1)[env_index]
        raise EnvironmentValueError(
            f"environment {env_index} returned a non-finite {what} {array.tolist()} from {call}() "
            f"after {self.total_steps} environment steps")
