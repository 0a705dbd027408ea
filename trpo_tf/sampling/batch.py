"""One iteration's experience, as the sampler returns it and the learner consumes it."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Batch:
    """One iteration's experience from N environments over T steps.

    observations [T, N, *obs_shape]: what the policy saw before acting (float32; uint8 frames stay uint8);
    actions [T, N, *act_shape]: what it sampled (before clipping to a Box's bounds);
    rewards, terminated, truncated [T, N];
    final_observations [M, *obs_shape] with final_index [M, 2] (t, n): the last observation
    of each episode that ended at step t in environment n;
    last_observations [N, *obs_shape]: the observations after step T - 1;
    episode_returns, episode_lengths: of the episodes that finished during this batch;
    action_masks [T, N, M] (bool, True where allowed): the masks the policy acted on, when the
    environments give them (see :mod:`trpo_tf.sampling.masks`), else None;
    recurrent_states [N, S] (float32): with a recurrent policy, each environment's recurrent state before
    step 0 (zeros for an episode that starts there), else None;
    episode_starts [T, N] (bool): with a recurrent policy, True where step t is the first of an episode
    (the state was reset to zeros before it), else None.
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
    action_masks: np.ndarray | None = None
    recurrent_states: np.ndarray | None = None
    episode_starts: np.ndarray | None = None

    @property
    def size(self) -> int:
        """T · N, the environment steps in the batch."""
        return int(self.rewards.size)
