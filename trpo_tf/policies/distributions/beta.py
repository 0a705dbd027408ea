"""Box actions with finite bounds → one Beta(α, β) per action element, on [low, high] (Chou et al., 2017).

Chou, Maturana & Scherer, "Improving Stochastic Policy Gradients in Continuous Control with
Deep Reinforcement Learning using the Beta Distribution", ICML 2017. The network gives 2K
outputs for K action elements; α = 1 + softplus(outputs[:, :K]) and β = 1 + softplus(outputs[:, K:]),
so α, β > 1: each density is unimodal and zero at the bounds, and no probability mass falls
outside the space, so nothing is clipped. A unit sample u ∈ (0, 1) becomes the action
low + (high − low)·u; the distribution is the Beta pushed through that affine map, so
log-probabilities are densities in the environment's units (the Beta's minus Σ log(high − low))
and the entropy is the Beta's plus that sum. The constant cancels in probability ratios and in
the KL (both are invariant under the map); it only shifts the reported entropy.

The deterministic action (``serving_default``) is the mean, low + (high − low)·α/(α + β):
defined for every α, β > 0 and smooth in them, where the mode (α − 1)/(α + β − 2) is 0/0 as
α, β → 1.

Actions are stored in environment units, strictly inside the bounds (see :func:`beta_margin`),
so their log-probability is finite. Sampling draws Gamma variates (X/(X + Y) with X ~ Gamma(α),
Y ~ Gamma(β) is Beta(α, β)), which neither LiteRT nor tf2onnx can run: TFLite and ONNX
conversions leave ``sample`` out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import gymnasium as gym
import numpy as np

from trpo_tf.errors import UnsupportedSpaceError
from trpo_tf.policies.distributions.base import ActionDistribution, Arrays

if TYPE_CHECKING:
    import tensorflow as tf


class Beta(ActionDistribution):
    """``Box`` with finite bounds → a Beta per element on [low, high], α, β = 1 + softplus(network outputs).

    ``space`` is the action space, already checked by :func:`check_bounded_box`; P = 2K for its K elements.
    """

    name = "beta"
    spaces = (gym.spaces.Box,)
    configurable = True
    sample_conversion_problem = ("Beta sampling draws Gamma variates (TensorFlow's RandomGamma op), which "
                                 "neither LiteRT's builtin operators nor tf2onnx support")
    # XLA (TensorFlow 2.21, CPU) compiling the TRPO step with Beta distributions for a batch of unknown
    # size [None, ...] took the weights as compile-time constants: every call compiled again and the
    # KL, surrogate and entropy after the step were measured with the weights from before it (KL 0).
    # Compiled for the batch's own size, the same step is correct.
    xla_dynamic_batch = False

    def __init__(self, space: gym.spaces.Box):
        self.action_shape = tuple(space.shape)
        self.size = int(np.prod(space.shape, dtype=np.int64))
        self.param_size = 2 * self.size
        self.action_dtype = "float32"
        self.low = space.low.astype(np.float32).reshape(-1)
        self.high = space.high.astype(np.float32).reshape(-1)
        self.margin = beta_margin(self.low, self.high)

    @classmethod
    def for_space(cls, space: gym.Space, init_log_std: float = 0.0) -> Beta:
        """The Beta distribution over ``space``; :class:`UnsupportedSpaceError` (from
        :func:`check_bounded_box`) unless it is a Box with finite bounds and high > low. ``init_log_std`` is ignored."""
        return cls(check_bounded_box(space, cls.name))

    # ------------------------------------------------------------------ TensorFlow side

    def concentrations(self, outputs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Network outputs [B, 2K] → (α [B, K], β [B, K]), each 1 + softplus of its half."""
        import tensorflow as tf
        return 1.0 + tf.math.softplus(outputs[:, :self.size]), 1.0 + tf.math.softplus(outputs[:, self.size:])

    def tfp_distribution(self, parameters: Sequence[tf.Tensor]) -> Any:
        """Independent Betas (α, β from ``parameters[0]`` [B, 2K]) pushed onto [low, high]: densities in
        the environment's units."""
        import tensorflow_probability as tfp
        tfd, tfb = tfp.distributions, tfp.bijectors
        alpha, beta = self.concentrations(parameters[0])
        to_bounds = tfb.Shift(self.low)(tfb.Scale(self.high - self.low))
        return tfd.Independent(tfd.TransformedDistribution(tfd.Beta(alpha, beta), to_bounds),
                               reinterpreted_batch_ndims=1)

    def named_parameters(self, parameters: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        """``{"alpha": [B, *A], "beta": [B, *A]}``, the concentrations from ``parameters[0]`` [B, 2K]."""
        alpha, beta = self.concentrations(parameters[0])
        return {"alpha": self._shaped(alpha), "beta": self._shaped(beta)}

    def deterministic(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """The mean low + (high − low)·α/(α + β) [B, *A], from ``parameters[0]`` [B, 2K]."""
        alpha, beta = self.concentrations(parameters[0])
        return self._to_bounds(alpha / (alpha + beta))

    def sample(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """low + (high − low)·X/(X + Y), X ~ Gamma(α), Y ~ Gamma(β) (stateful RandomGamma ops), shaped [B, *A];
        α, β from ``parameters[0]`` [B, 2K]."""
        import tensorflow as tf
        alpha, beta = self.concentrations(parameters[0])
        x = tf.random.gamma([], alpha)
        y = tf.random.gamma([], beta)
        return self._to_bounds(x / (x + y))

    def _to_bounds(self, unit: tf.Tensor) -> tf.Tensor:
        """Unit-interval values [B, K] → actions [B, *A] in the environment's units, within the bounds."""
        import tensorflow as tf
        actions = tf.clip_by_value(self.low + (self.high - self.low) * unit, self.low, self.high)
        return tf.reshape(actions, (-1,) + self.action_shape)

    def _shaped(self, flat: tf.Tensor) -> tf.Tensor:
        import tensorflow as tf
        return tf.reshape(flat, (-1,) + self.action_shape)

    # ------------------------------------------------------------------ NumPy side

    def act(self, outputs: np.ndarray, free: Arrays, rng: np.random.Generator | None) -> np.ndarray:
        """Actions [B, K] in environment units from ``outputs`` [B, 2K]: sampled with ``rng.beta`` and kept
        ``margin`` inside the bounds, or the mean when ``rng`` is None. ``free`` is unused (no free parameters)."""
        alpha = 1.0 + np.logaddexp(0.0, outputs[:, :self.size].astype(np.float64))
        beta = 1.0 + np.logaddexp(0.0, outputs[:, self.size:].astype(np.float64))
        if rng is None:
            unit = alpha / (alpha + beta)
        else:
            unit = np.minimum(np.maximum(rng.beta(alpha, beta), self.margin), 1.0 - self.margin)
        low, high = self.low.astype(np.float64), self.high.astype(np.float64)
        return (low + (high - low) * unit).astype(np.float32)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Stored ``actions`` [B, K] (already in environment units, within the bounds) reshaped to [B, *A]."""
        return actions.reshape((len(actions),) + self.action_shape)


def beta_margin(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The smallest distance [K] from 0 and 1 at which a unit value u survives float32 rounding.

    An action low + (high − low)·u rounded to float32 and mapped back, (x − low) / (high − low),
    lands within about 1.5·ε·max(|low|, |high|) / (high − low) of u (ε = float32's machine
    epsilon); keeping u at least eight times that away from 0 and 1 keeps it strictly inside
    (0, 1), where the log-density of a Beta with α, β > 1 is finite.
    """
    width = high.astype(np.float64) - low.astype(np.float64)
    reach = np.maximum(np.abs(low), np.abs(high)).astype(np.float64)
    return 8.0 * float(np.finfo(np.float32).eps) * reach / width


def check_bounded_box(space: gym.Space, distribution: str) -> gym.spaces.Box:
    """``space`` when it is a Box with finite bounds and high > low in every dimension.

    Raises :class:`UnsupportedSpaceError` otherwise, naming ``distribution`` (the configured
    ``action_distribution``) and the unbounded or empty dimensions.
    """
    if not isinstance(space, gym.spaces.Box):
        raise UnsupportedSpaceError(f"action_distribution={distribution!r} needs a Box action space with finite "
                                    f"bounds, got {space!r}")
    unbounded = np.flatnonzero(~(np.isfinite(space.low) & np.isfinite(space.high)).reshape(-1))
    if len(unbounded):
        raise UnsupportedSpaceError(
            f"action_distribution={distribution!r} needs finite bounds, but the action space {space!r} is unbounded "
            f"in dimension(s) {unbounded.tolist()} (flat indices); use action_distribution='gaussian'")
    if np.any(space.high.reshape(-1) <= space.low.reshape(-1)):
        raise UnsupportedSpaceError(f"action_distribution={distribution!r} needs high > low in every dimension; "
                                    f"the action space {space!r} has an empty or single-point dimension")
    return space
