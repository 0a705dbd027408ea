"""The in-process sampler: steps a vector environment with a policy snapshot into a :class:`Batch`.

The sampler knows nothing about TensorFlow or the trust region: it acts with a
:class:`~trpo_tf.policies.PolicySnapshot` (NumPy) once per vectorized step and records
what the environments answer. Episodes are reset by the vector environment in
``AutoresetMode.SAME_STEP``, so the true final observation of every finished episode is
kept for bootstrapping truncated ones. Its state (:meth:`Sampler.state`) is plain data; the
environments' state is a pickle (:meth:`Sampler.environment_state`).
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from trpo_tf.errors import CheckpointWarning, EnvironmentValueError
from trpo_tf.sampling.batch import Batch
from trpo_tf.sampling.environments import environment_state, restore_environment_state


class Actor(Protocol):
    """What the sampler acts with (a :class:`~trpo_tf.policies.PolicySnapshot`)."""

    def act(self, observations: np.ndarray, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """Observations [N, *obs_shape] → (actions for the environments, actions to store)."""


class Sampler:
    """Steps a vector environment with a policy and returns :class:`Batch` es.

    Episodes continue across calls to :meth:`collect`; the first call resets the
    environments with ``seed``. Actions are drawn with ``rng``.
    """

    def __init__(self, env: gym.vector.VectorEnv, seed: int | None, rng: np.random.Generator):
        self.env = env
        self.seed = seed
        self.rng = rng
        self.n_envs = env.num_envs
        self.observations: np.ndarray | None = None
        self.running_returns = np.zeros(self.n_envs)
        self.running_lengths = np.zeros(self.n_envs, dtype=np.int64)
        self.total_steps = 0

    def collect(self, policy: Actor, steps: int) -> Batch:
        """Run ``steps`` vectorized steps, acting with ``policy.act(observations, rng)``.

        The loop only steps and records; episode bookkeeping and the finiteness checks run on
        the whole batch afterwards, which keeps the per-step cost near the environment's own.
        """
        if self.observations is None:
            self.observations, _ = self.env.reset(seed=self.seed)
            self._check_finite(self.observations[None], "observation", "reset", self.total_steps)
        seen_list: list[np.ndarray] = []
        action_list, reward_list, terminated_list, truncated_list = [], [], [], []
        infos: dict[int, dict] = {}
        step, obs, act, rng = self.env.step, self.observations, policy.act, self.rng
        for t in range(steps):
            env_actions, stored_actions = act(obs, rng)
            seen_list.append(obs)
            action_list.append(stored_actions)
            obs, reward, term, trunc, info = step(env_actions)
            reward_list.append(reward)
            terminated_list.append(term)
            truncated_list.append(trunc)
            if info:
                infos[t] = info
        self.observations = obs
        steps_before, self.total_steps = self.total_steps, self.total_steps + steps * self.n_envs
        seen = np.asarray(seen_list + [obs])  # [T + 1, N, ...]: seen[t + 1] came from step t
        rewards = np.asarray(reward_list, dtype=np.float64)
        self._check_finite(seen[1:], "observation", "step", steps_before)
        self._check_finite(rewards, "reward", "step", steps_before)
        terminated = np.asarray(terminated_list, dtype=bool)
        truncated = np.asarray(truncated_list, dtype=bool)
        final_index = np.argwhere(terminated | truncated)  # [M, 2] (t, n), in time order
        final_observations = [self._final_observation(infos, t, n, steps_before) for t, n in final_index]
        episode_returns, episode_lengths = self._finish_episodes(rewards, final_index)
        obs_shape = obs.shape[1:]
        return Batch(
            observations=seen[:-1].astype(np.float32),
            actions=np.asarray(action_list),
            rewards=rewards.astype(np.float32),
            terminated=terminated,
            truncated=truncated,
            final_observations=np.asarray(final_observations, dtype=np.float32).reshape((-1,) + obs_shape),
            final_index=final_index.astype(np.int64).reshape(-1, 2),
            last_observations=np.asarray(obs, dtype=np.float32),
            episode_returns=episode_returns,
            episode_lengths=episode_lengths,
        )

    def state(self) -> dict[str, Any]:
        """Where sampling stands, as plain data (arrays, numbers): resumes with :meth:`load_state`."""
        return {"observations": self.observations, "running_returns": self.running_returns.copy(),
                "running_lengths": self.running_lengths.copy(), "total_steps": int(self.total_steps),
                "seed": self.seed, "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state`; raises ValueError when it does not fit these environments."""
        observations = state["observations"]
        running_returns = np.asarray(state["running_returns"], dtype=np.float64)
        running_lengths = np.asarray(state["running_lengths"], dtype=np.int64)
        if running_returns.shape != (self.n_envs,) or (observations is not None and len(observations) != self.n_envs):
            raise ValueError(f"the sampler state is for {len(running_returns)} environments, "
                             f"this sampler has {self.n_envs}")
        if state["rng"].get("bit_generator") != type(self.rng.bit_generator).__name__:
            raise ValueError(f"the sampler's random generator is {state['rng'].get('bit_generator')}, "
                             f"expected {type(self.rng.bit_generator).__name__}")
        self.observations = None if observations is None else np.asarray(observations)
        self.running_returns, self.running_lengths = running_returns, running_lengths
        self.total_steps = int(state["total_steps"])
        self.seed = state["seed"]
        self.rng.bit_generator.state = state["rng"]

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
        """Put :meth:`environment_state` bytes back (this unpickles them: trusted bytes only).

        Without bytes, or when they do not fit, warns and starts fresh episodes reset with
        ``fresh_seed`` (new episodes, not a replay of the first ones).
        """
        problem = (restore_environment_state(self.env, pickled) if pickled else
                   "the checkpoint holds no environment state (it could not be pickled when saved)")
        if problem is not None:
            warnings.warn(f"{problem}; continuing with freshly reset environments", CheckpointWarning,
                          stacklevel=2)
            self.restart_episodes(fresh_seed)

    def restart_episodes(self, seed: int) -> None:
        """Forget the running episodes: the next :meth:`collect` resets the environments with ``seed``."""
        self.observations = None
        self.running_returns = np.zeros(self.n_envs)
        self.running_lengths = np.zeros(self.n_envs, dtype=np.int64)
        self.seed = seed

    def close(self) -> None:
        """Close the environments."""
        self.env.close()

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
