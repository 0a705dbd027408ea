"""Small environments whose correct action can be read only from the pixels (used by test_images.py)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

SIZE = 12  # frames are SIZE × SIZE × 1, uint8
BLOB = 3  # the bright square's side
EPISODE = 4  # steps per episode; the best return is EPISODE


class QuadrantEnv(gym.Env):
    """A dim noisy frame with one bright 3×3 square; the reward is 1 when the action names the square's
    quadrant (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right), else 0. Each step shows a new
    frame; episodes last 4 steps, so the best return is 4 and a blind policy's is 1.

    ``channels_first`` gives frames as [1, 12, 12] instead of [12, 12, 1]; ``binary`` gives bool grids
    (MinAtar's kind of observation: the square True on a False background). With ``as_dict`` the
    observation is ``{"image": frame, "side": [s]}``, s = ±1, and there are 8 actions: the correct
    one is the quadrant when s = −1, the quadrant + 4 when s = 1, so both parts are needed (a blind
    policy's return is 0.5).
    """

    def __init__(self, channels_first: bool = False, as_dict: bool = False, binary: bool = False):
        self.action_space = gym.spaces.Discrete(8 if as_dict else 4)
        shape = (1, SIZE, SIZE) if channels_first else (SIZE, SIZE, 1)
        image = gym.spaces.Box(0, 1, shape, np.bool_) if binary else gym.spaces.Box(0, 255, shape, np.uint8)
        self.observation_space: gym.Space = (
            gym.spaces.Dict({"image": image, "side": gym.spaces.Box(-1.0, 1.0, (1,), np.float32)}) if as_dict
            else image)
        self.channels_first, self.as_dict, self.binary = channels_first, as_dict, binary
        self.answer, self.steps = 0, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.steps = 0
        return self._observe(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        reward = float(int(action) == self.answer)
        self.steps += 1
        return self._observe(), reward, self.steps >= EPISODE, False, {}

    def _observe(self) -> Any:
        rng = self.np_random
        frame = rng.integers(0, 40, (SIZE, SIZE), dtype=np.uint8)
        quadrant = int(rng.integers(4))
        half = SIZE // 2
        row = (quadrant // 2) * half + int(rng.integers(half - BLOB + 1))
        col = (quadrant % 2) * half + int(rng.integers(half - BLOB + 1))
        frame[row:row + BLOB, col:col + BLOB] = 255
        frame = frame[None] if self.channels_first else frame[..., None]
        if self.binary:
            frame = frame == 255
        if not self.as_dict:
            self.answer = quadrant
            return frame
        side = 1.0 if rng.random() < 0.5 else -1.0
        self.answer = quadrant + (4 if side > 0 else 0)
        return {"image": frame, "side": np.array([side], np.float32)}


IMAGE_ID, DICT_ID, GRID_ID = "QuadrantImage-v0", "QuadrantDict-v0", "QuadrantGrid-v0"
for env_id, kwargs in ((IMAGE_ID, {}), (DICT_ID, {"as_dict": True}), (GRID_ID, {"binary": True})):
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=QuadrantEnv, kwargs=kwargs)
