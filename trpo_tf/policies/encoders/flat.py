"""Box observations that are not images → their elements, flattened: [B, *shape] → [B, prod(shape)]."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from trpo_tf.policies.encoders.base import LeafEncoder

if TYPE_CHECKING:
    import tensorflow as tf


class FlatEncoder(LeafEncoder):
    """``Box`` → its elements as float32 features, flattened (D = the number of elements)."""

    spaces = (gym.spaces.Box,)

    @classmethod
    def for_space(cls, space: gym.Space, encoder: str, name: str) -> FlatEncoder:
        """The flat encoder of the ``Box`` ``space``, its raw input called ``name``; ``encoder`` is not used
        (every Box the image encoder does not read is flattened)."""
        return cls(space, name, "float32", int(np.prod(space.shape or (), dtype=np.int64)))

    def numpy(self, observations: Any) -> np.ndarray:
        """``observations`` [B, *shape] → float32 features [B, D], flattened."""
        return np.asarray(observations, dtype=np.float32).reshape(len(observations), self.dim)

    def tensorflow(self, observations: Any) -> tf.Tensor:
        """``observations`` [B, *shape] → float32 features [B, D], flattened."""
        import tensorflow as tf
        return tf.reshape(tf.cast(observations, tf.float32), [-1, self.dim])

    def tensorflow_feature_mask(self, entry_mask: Any) -> tf.Tensor:
        """``entry_mask`` [B, *shape] flattened to [B, D]: one mask value per element, since the features
        are the elements."""
        import tensorflow as tf
        return tf.reshape(entry_mask, [-1, self.dim])
