"""Observation encoders: raw observations [B, *obs_shape] → flat float32 features [B, D].

An encoder has a TensorFlow version (inside the compiled graphs and the export) and a NumPy
version (acting during rollouts); both compute the same map. Encoders are plain Python
objects, so an acting snapshot that holds one can be pickled to another process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from trpo_tf.errors import UnsupportedSpaceError

if TYPE_CHECKING:  # imported where used: an acting process unpickles encoders without TensorFlow
    import tensorflow as tf

SUPPORTED_OBSERVATION_SPACES = "Box (any shape, flattened) and Discrete (one-hot)"


class ObservationEncoder:
    """``Box`` observations are flattened; ``Discrete`` ones become one-hot vectors.

    Attributes: ``shape`` (one observation's shape), ``dim`` (D, the feature size).
    """

    def __init__(self, space: gym.Space):
        self.start = 0
        if isinstance(space, gym.spaces.Box):
            self.shape: tuple[int, ...] = tuple(space.shape)
            self.dim = int(np.prod(space.shape, dtype=np.int64))
            self.one_hot = False
        elif isinstance(space, gym.spaces.Discrete):
            self.shape = ()
            self.dim = int(space.n)
            self.one_hot = True
            self.start = int(space.start)
        else:
            raise UnsupportedSpaceError(
                f"unsupported observation space {space!r}: trpo_tf supports {SUPPORTED_OBSERVATION_SPACES}")
        if self.dim == 0:
            raise UnsupportedSpaceError(f"observation space {space!r} has no elements")

    def check(self, observations: np.ndarray) -> np.ndarray:
        """``observations`` as a float32 batch [B, *obs_shape]; a single observation gains B = 1.

        Raises ValueError naming the expected and received shapes when they do not fit.
        """
        array = np.asarray(observations, dtype=np.float32)
        if array.shape == self.shape:
            array = array[None]
        if array.shape[1:] != self.shape:
            raise ValueError(f"observations of shape {array.shape} do not fit the observation space: "
                             f"expected [batch, {', '.join(map(str, self.shape))}]".replace(", ]", "]"))
        if self.one_hot and not np.all((array == np.round(array)) & (array >= self.start)
                                       & (array < self.start + self.dim)):
            raise ValueError(f"Discrete observations must be whole numbers in [{self.start}, "
                             f"{self.start + self.dim}), got {array.tolist()}")
        return array

    def numpy(self, observations: np.ndarray) -> np.ndarray:
        """[B, *obs_shape] → [B, D] in NumPy."""
        if self.one_hot:
            return np.eye(self.dim, dtype=np.float32)[np.asarray(observations, np.int64) - self.start]
        return np.asarray(observations, dtype=np.float32).reshape(len(observations), self.dim)

    def tensorflow_feature_mask(self, entry_mask: tf.Tensor) -> tf.Tensor:
        """float32 [B, *obs_shape] (1 where an observation's entry is usable, else 0) → a mask that
        multiplies features [B, D]: per feature [B, D] for Box, per observation [B, 1] for Discrete."""
        import tensorflow as tf
        if self.one_hot:
            return entry_mask[:, None]
        return tf.reshape(entry_mask, [-1, self.dim])

    def tensorflow(self, observations: tf.Tensor) -> tf.Tensor:
        """[B, *obs_shape] → [B, D] in the TensorFlow graph."""
        import tensorflow as tf
        if self.one_hot:
            return tf.one_hot(tf.cast(observations, tf.int32) - self.start, self.dim, dtype=tf.float32)
        return tf.reshape(tf.cast(observations, tf.float32), [-1, self.dim])
