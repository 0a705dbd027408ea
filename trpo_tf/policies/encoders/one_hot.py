"""Discrete and MultiDiscrete observations → one-hot vectors.

A ``Discrete(n, start)`` value v becomes n features, 1 at v − start; a ``MultiDiscrete``
observation [K] becomes the one-hot vectors of its K values, concatenated (D = Σ nvec).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from trpo_tf.policies.encoders.base import INPUT_NAME, LeafEncoder

OUT_OF_SPACE_MESSAGE = "observation outside its {kind} space"
"""The start of the error an exported graph raises for a value outside a Discrete/MultiDiscrete space."""

if TYPE_CHECKING:
    import tensorflow as tf


class OneHotEncoder(LeafEncoder):
    """``Discrete`` or ``MultiDiscrete`` → concatenated one-hot vectors [B, Σ n_k], float32.

    ``space`` is the observation space, ``name`` its raw input's name; ``sizes`` [K] and ``starts`` [K]:
    each value's number of choices and first value (K = 1 for a ``Discrete`` space).
    """

    spaces = (gym.spaces.Discrete, gym.spaces.MultiDiscrete)

    def __init__(self, space: gym.Space, name: str, sizes: np.ndarray, starts: np.ndarray):
        self.sizes = sizes.astype(np.int64).reshape(-1)
        self.starts = starts.astype(np.int64).reshape(-1)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)  # [K]
        super().__init__(space, name, "float32", int(self.sizes.sum()))

    @classmethod
    def for_space(cls, space: gym.Space, encoder: str, name: str) -> OneHotEncoder:
        """The one-hot encoder of ``space`` (``Discrete``: n and start; ``MultiDiscrete``: nvec and start),
        its raw input called ``name``; ``encoder`` is not used."""
        if isinstance(space, gym.spaces.Discrete):
            return cls(space, name, np.array([space.n]), np.array([space.start]))
        assert isinstance(space, gym.spaces.MultiDiscrete)
        return cls(space, name, np.asarray(space.nvec), np.asarray(space.start))

    def check_values(self, array: np.ndarray) -> np.ndarray:
        """``array`` [B, *shape] as float32, its values whole numbers within each value's range; ValueError
        naming the ranges otherwise."""
        values = array.astype(np.float32, copy=False)
        flat = values.reshape(len(values), -1)
        if not np.all((flat == np.round(flat)) & (flat >= self.starts) & (flat < self.starts + self.sizes)):
            ranges = ", ".join(f"[{start}, {start + size})" for start, size in zip(self.starts, self.sizes))
            raise ValueError(f"{'Discrete' if not self.shape else 'MultiDiscrete'} observations must be whole numbers "
                             f"in {ranges}, got {array.tolist()}")
        return values

    def numpy(self, observations: Any) -> np.ndarray:
        """``observations`` [B, *shape] (values from their start) → one-hot features [B, D], D = Σ n_k."""
        indices = np.asarray(observations, np.int64).reshape(len(observations), -1) - self.starts  # [B, K]
        if len(self.sizes) == 1:
            return np.eye(self.dim, dtype=np.float32)[indices[:, 0]]
        features = np.zeros((len(indices), self.dim), np.float32)
        features[np.arange(len(indices))[:, None], self.offsets + indices] = 1.0
        return features

    def tensorflow(self, observations: Any) -> tf.Tensor:
        """``observations`` [B, *shape] → one-hot features [B, D] in the graph, D = Σ n_k."""
        import tensorflow as tf
        indices = tf.reshape(tf.cast(observations, tf.int32), [-1, len(self.sizes)]) - self.starts.astype(np.int32)
        return tf.concat([tf.one_hot(indices[:, k], int(size), dtype=tf.float32)
                          for k, size in enumerate(self.sizes)], axis=1)

    def tensorflow_checked(self, observations: Any) -> tuple[Any, Any]:
        """``observations`` [B, *shape] → (usable values, mask [B, *shape]): the finite checks, then one that
        every value is a whole number in its range: outside, the graph raises ``observation outside its Discrete
        space (whole numbers FIRST to LAST)``. Converters drop the raising check; there the mask's 0 reads such a
        value as a NaN is read (the mean one-hot vector)."""
        import tensorflow as tf
        usable, finite = super().tensorflow_checked(observations)
        values = tf.reshape(usable, [-1, len(self.sizes)])  # [B, K]
        first, last = self.starts.astype(np.float32), (self.starts + self.sizes - 1).astype(np.float32)
        inside = tf.cast((values == tf.math.floor(values)) & (values >= first) & (values <= last), tf.float32)
        # Outside, 1/0 = inf and CheckNumerics raises; without it min(1/inside, 1) = 1 · 0, arithmetic alone
        # (tf2onnx turns a select into arithmetic).
        ranges = ", ".join(f"{a} to {b}" for a, b in zip(first.astype(np.int64), last.astype(np.int64)))
        kind = "Discrete" if not self.shape else "MultiDiscrete"
        message = OUT_OF_SPACE_MESSAGE.format(kind=kind) + f" (whole numbers {ranges})" + (
            "" if self.name == INPUT_NAME else f" (input {self.name})")
        guard = tf.debugging.check_numerics(1.0 / inside, message, name=f"check_observation_in_space{self.op_suffix}")
        return usable, finite * tf.reshape(inside * tf.minimum(guard, 1.0), tf.shape(finite))

    def tensorflow_feature_mask(self, entry_mask: Any) -> tf.Tensor:
        """``entry_mask`` [B, *shape] → [B, D]: each value's mask repeated over its one-hot features."""
        import tensorflow as tf
        per_value = tf.reshape(entry_mask, [-1, len(self.sizes)])
        return tf.repeat(per_value, self.sizes, axis=1)
