"""Small environments that give action masks, from each source, for test_masking.py (and sampling workers).

The mask is a function of the observation (:func:`mask_of`), so a test can recompute the mask of
every state a batch holds without asking the environment again.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

EPISODE = 8  # steps per episode (time limit)


def mask_of(observation: np.ndarray, multi: bool = False) -> np.ndarray:
    """The mask of an observation [3] (int8: 1 allowed): Discrete(4) → [4], action 3 always allowed and the only
    one when observation[0] > 0.7; MultiDiscrete([3, 2]) → [3 + 2], the second component's one allowed choice
    given by the sign of observation[2]."""
    x = np.asarray(observation, np.float64)
    first = [x[0] > -0.3 and x[0] <= 0.7, x[1] > -0.3 and x[0] <= 0.7, x[2] > -0.3 and x[0] <= 0.7, True]
    if not multi:
        return np.array(first, np.int8)
    return np.array(first[:2] + [True] + [x[2] > 0.0, x[2] <= 0.0], np.int8)


class GateEnv(gym.Env):
    """Box(3) observations drawn uniformly in [-1, 1]; Discrete(4) actions (MultiDiscrete([3, 2]) with ``multi``).

    The mask (:func:`mask_of`) comes from ``source``: "info" (``info["action_mask"]``), "method"
    (``action_masks()``), "observation" (a Dict observation ``{"observation", "action_mask"}``), "both"
    (info, and a method that allows everything: the info must win) or "none". The reward is 1 for the
    allowed action of the lowest index (in each component), else 0; a forbidden action ends the
    episode with reward -1. ``bad`` = (steps, mask) replaces the mask returned after that many steps
    of this environment (0: the first reset) by ``mask`` (anything: a wrong shape, NaN, ...);
    ``actions`` = "box" gives Box(2) actions (which take no mask).
    """

    def __init__(self, source: str = "info", multi: bool = False, bad: tuple[int, Any] | None = None,
                 actions: str = "discrete"):
        self.source, self.multi, self.bad = source, multi, bad
        box = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        size = 5 if multi else 4
        self.observation_space = gym.spaces.Dict({"observation": box, "action_mask": gym.spaces.Box(
            0, 1, (size,), np.int8)}) if source == "observation" else box
        self.action_space = (gym.spaces.Box(-1.0, 1.0, (2,), np.float32) if actions == "box" else
                             gym.spaces.MultiDiscrete([3, 2]) if multi else gym.spaces.Discrete(4))
        self.steps, self.t = 0, 0
        self.observation = np.zeros(3, np.float32)
        self.forbidden_taken = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._emit()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        mask = mask_of(self.observation, self.multi)
        choices = np.atleast_1d(np.asarray(action))
        offsets = [0, 3] if self.multi else [0]
        allowed = all(mask[offset + int(choice)] for offset, choice in zip(offsets, choices))
        self.steps, self.t = self.steps + 1, self.t + 1
        if not allowed:
            self.forbidden_taken += 1
            observation, info = self._emit()
            return observation, -1.0, True, False, info
        best = [int(np.argmax(mask[offset:offset + n])) for offset, n in zip(offsets, [3, 2] if self.multi else [4])]
        reward = float(all(int(c) == b for c, b in zip(choices, best)))
        observation, info = self._emit()
        return observation, reward, False, self.t >= EPISODE, info

    def action_masks(self) -> np.ndarray:
        if self.source == "both":
            return np.ones(5 if self.multi else 4, np.int8)
        return self._mask()

    def _mask(self) -> Any:
        if self.bad is not None and self.bad[0] == self.steps:
            return self.bad[1]
        return mask_of(self.observation, self.multi)

    def _emit(self) -> tuple[Any, dict]:
        self.observation = self.np_random.uniform(-1.0, 1.0, 3).astype(np.float32)
        if self.source == "observation":
            return {"observation": self.observation, "action_mask": self._mask()}, {}
        return self.observation, ({"action_mask": self._mask()} if self.source in ("info", "both") else {})


class PlainGateEnv(GateEnv):
    """A GateEnv without an ``action_masks`` method (for the sources "info", "observation" and "none")."""

    action_masks = None  # type: ignore[assignment]


class Deterministic:
    """Acts with a policy snapshot's most probable allowed actions, whatever generator it is handed
    (samplers with different random streams then act alike); picklable for workers."""

    def __init__(self, snapshot: Any):
        self.snapshot = snapshot

    def act(self, observations: Any, rng: Any, masks: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return self.snapshot.act(observations, None, masks)


def make(source: str = "info", **kwargs: Any) -> GateEnv:
    """A GateEnv whose only mask source is ``source`` (an ``action_masks`` method only for "method" and "both")."""
    return (GateEnv if source in ("method", "both") else PlainGateEnv)(source, **kwargs)


GATE_ID = "MaskedGate-v0"
"""The registered GateEnv with masks in its info; sampling workers make it as "masked_envs:MaskedGate-v0"."""
if GATE_ID not in gym.registry:
    gym.register(GATE_ID, entry_point=make)
