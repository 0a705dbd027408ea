"""A simulator stand-in for benchmarks/scaling.py: Pendulum-v1 whose every step also sleeps.

Registered as ``padded_env:PaddedPendulum-v0`` when this folder is on PYTHONPATH, so sampling
workers (separate processes, Ray actors) can build it from its id. Sleeping costs wall time
but no core, so a 2-core machine can measure how sampling scales with 8 workers.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.pendulum import PendulumEnv


class PaddedPendulum(PendulumEnv):
    """Pendulum-v1 whose ``step`` takes at least ``step_seconds`` longer (default 2 ms)."""

    def __init__(self, step_seconds: float = 0.002, **kwargs: Any):
        super().__init__(**kwargs)
        self.step_seconds = step_seconds

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        time.sleep(self.step_seconds)
        return super().step(action)


gym.register("PaddedPendulum-v0", entry_point="padded_env:PaddedPendulum", max_episode_steps=200)
