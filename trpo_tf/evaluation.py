"""Evaluation episodes: one loop for the agent, the command line and the tests.

Episode i is reset with ``seed + i``; by default ``seed`` is :data:`DEFAULT_SEED` whatever
the training seed, so ``agent.evaluate()`` and ``trpo-tf evaluate`` run the same episodes.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

DEFAULT_EPISODES = 10
DEFAULT_SEED = 10_000


def run_episodes(env: gym.Env, act: Callable[[np.ndarray], np.ndarray], episodes: int = DEFAULT_EPISODES,
                 seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Undiscounted returns of ``episodes`` episodes of ``env`` acting with ``act``.

    ``act`` maps a batch of one raw observation [1, *obs_shape] (a dict of them for a Dict
    space) to a batch of one action [1, *A]. Returns ``mean_return``, ``std_return``,
    ``episodes``, ``returns`` (per episode) and ``seed``.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    returns = []
    for episode in range(int(episodes)):
        observation, _ = env.reset(seed=int(seed) + episode)
        done, total = False, 0.0
        while not done:
            action = act(batch_of_one(observation))[0]
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = bool(terminated or truncated)
        returns.append(total)
    return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
            "episodes": int(episodes), "returns": returns, "seed": int(seed)}


def batch_of_one(observation: Any) -> Any:
    """One raw observation as a batch [1, *obs_shape]; for a Dict space, each key's array so."""
    if isinstance(observation, dict):
        return {key: np.asarray(value)[None] for key, value in observation.items()}
    return np.asarray(observation)[None]
