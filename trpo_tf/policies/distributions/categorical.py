"""Discrete actions → a Categorical over the space's n choices.

The network gives one logit per choice. Actions are stored as zero-based indices; the
environment counts from the space's ``start``. The deterministic action is the most probable
choice; sampling uses the Gumbel-max trick (argmax of the logits plus Gumbel noise), which
LiteRT and ONNX run.

The logits are handled as K rows of equal width [B, K, W], one row per independent choice, so
that :class:`~trpo_tf.policies.distributions.multi_categorical.MultiCategorical` (K choices of
unequal sizes, padded to the widest) shares this code; a Discrete space is the case K = 1.

Action masks: a mask [B, M] holds one entry per choice (M = n, or Σ n_k for K choices, the
components' masks concatenated), nonzero where the choice is allowed. Masking sets the logit of
every forbidden choice to :data:`PAD_LOGIT`, as padding does: its probability is exactly 0 in
float32, so it is never sampled nor the argmax while an allowed choice exists, and it adds exactly
0 to the entropy and the KL, while log-probabilities stay finite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import gymnasium as gym
import numpy as np

from trpo_tf.errors import UnsupportedSpaceError
from trpo_tf.policies.distributions.base import ActionDistribution, Arrays

if TYPE_CHECKING:
    import tensorflow as tf

PAD_LOGIT = -1e9
"""The logit of the unused entries of a row narrower than the widest (MultiDiscrete sub-spaces of unequal size)
and of masked choices."""


class Categorical(ActionDistribution):
    """``Discrete`` → a Categorical over its n choices, one logit each.

    ``sizes`` [K] are the number of choices of each of the K independent choices (K = 1 for Discrete),
    ``starts`` [K] the value the environment gives each one's first choice, and ``action_shape`` is A
    (``()`` for Discrete). P = K·W, W the largest size; narrower rows are padded with :data:`PAD_LOGIT`.
    """

    name = "categorical"
    spaces: ClassVar[tuple[type[gym.Space], ...]] = (gym.spaces.Discrete,)

    def __init__(self, sizes: np.ndarray, starts: np.ndarray, action_shape: tuple[int, ...]):
        self.sizes = sizes.astype(np.int64).reshape(-1)
        self.starts = starts.astype(np.int64).reshape(-1)
        self.width = int(self.sizes.max())
        self.count = len(self.sizes)
        self.param_size = self.count * self.width
        self.action_shape = action_shape
        self.action_dtype = "int32"
        unused = np.arange(self.width)[None, :] >= self.sizes[:, None]
        self.padding = np.where(unused, PAD_LOGIT, 0.0).astype(np.float32)  # [K, W]
        self.mask_components = self.sizes
        # Where each logit [K·W] reads its mask entry: choice w of row k is entry offset_k + w of the
        # concatenated mask; padding reads entry M, a column of zeros appended to the mask.
        offsets = np.cumsum(self.sizes) - self.sizes
        self.mask_index = np.where(unused, self.sizes.sum(), offsets[:, None] + np.arange(self.width)).reshape(-1)

    @classmethod
    def for_space(cls, space: gym.Space, init_log_std: float = 0.0) -> Categorical:
        """The Categorical over ``space``; :class:`UnsupportedSpaceError` unless it is ``Discrete``.
        ``init_log_std`` is ignored."""
        if not isinstance(space, gym.spaces.Discrete):
            raise UnsupportedSpaceError(f"the categorical distribution needs a Discrete action space, got {space!r}")
        return cls(np.array([space.n]), np.array([space.start]), ())

    # ------------------------------------------------------------------ TensorFlow side

    def logits(self, outputs: tf.Tensor) -> tf.Tensor:
        """Network outputs [B, K·W] → logits [B, K, W] with the padding applied."""
        import tensorflow as tf
        return tf.reshape(outputs, [-1, self.count, self.width]) + self.padding

    def tfp_distribution(self, parameters: Sequence[tf.Tensor]) -> Any:
        """A TFP Categorical with the logits [B, n] read from ``parameters[0]``."""
        import tensorflow_probability as tfp
        return tfp.distributions.Categorical(logits=self.logits(parameters[0])[:, 0])

    def named_parameters(self, parameters: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        """``{"logits": [B, n]}`` from ``parameters[0]``."""
        return {"logits": self.logits(parameters[0])[:, 0]}

    def deterministic(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """The most probable choice [B, *A] (int32), counted from the space's start, from ``parameters[0]``."""
        import tensorflow as tf
        return self._shaped(tf.argmax(self.logits(parameters[0]), axis=-1, output_type=tf.int32) + self.starts)

    def sample(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """A choice [B, *A] (int32) counted from the space's start, drawn by the Gumbel-max trick from the
        logits in ``parameters[0]``."""
        import tensorflow as tf
        logits = self.logits(parameters[0])
        uniform = tf.random.uniform(tf.shape(logits), minval=1e-20, maxval=1.0)
        gumbel = -tf.math.log(-tf.math.log(uniform))
        return self._shaped(tf.argmax(logits + gumbel, axis=-1, output_type=tf.int32) + self.starts)

    def mask_tensorflow(self, outputs: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """``outputs`` [B, K·W] with the logit of every choice ``mask`` [B, M] (bool) forbids set to PAD_LOGIT.

        Float ops only (cast, concat, gather, select), which TFLite and ONNX run."""
        import tensorflow as tf
        entries = tf.cast(mask, tf.float32)
        entries = tf.concat([entries, tf.zeros_like(entries[:, :1])], axis=1)  # [B, M + 1]: padding reads M
        allowed = tf.gather(entries, self.mask_index, axis=1) > 0.5  # [B, K·W]
        return tf.where(allowed, outputs, tf.constant(PAD_LOGIT, outputs.dtype))

    def _shaped(self, choices: tf.Tensor) -> tf.Tensor:
        """Choices [B, K] → actions [B, *A]: [B] for one choice."""
        return choices[:, 0]

    # ------------------------------------------------------------------ NumPy side

    def act(self, outputs: np.ndarray, free: Arrays, rng: np.random.Generator | None) -> np.ndarray:
        """Zero-based choices [B, *A] from the logits ``outputs`` [B, K·W]: the argmax of the logits, plus
        Gumbel noise drawn with ``rng`` when it is not None. ``free`` is unused (no free parameters)."""
        logits = outputs.reshape(len(outputs), self.count, self.width) + self.padding
        if rng is not None:
            logits = logits + rng.gumbel(size=logits.shape).astype(np.float32)
        return self._stored(logits.argmax(axis=-1))

    def mask_numpy(self, outputs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``outputs`` [B, K·W] with the logit of every choice ``mask`` [B, M] forbids (entry 0) set to PAD_LOGIT."""
        entries = np.concatenate([np.asarray(mask) != 0, np.zeros((len(mask), 1), bool)], axis=1)
        return np.where(entries[:, self.mask_index], outputs, np.float32(PAD_LOGIT))

    def _stored(self, choices: np.ndarray) -> np.ndarray:
        """Choices [B, K] → stored actions [B, *A]."""
        return choices[:, 0]

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Stored zero-based ``actions`` [B] with the space's start added."""
        return actions + self.starts[0]
