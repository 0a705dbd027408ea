"""Action heads: one class per action distribution.

A head turns the network's outputs [B, param_size] — together with parameters it owns, such
as the diagonal Gaussian's state-independent log-std — into the distribution's parameters
η (a list of tensors), a TensorFlow Probability distribution, deterministic and sampled
actions in the environment's units; its NumPy acting for rollouts is the class of the same
``kind`` in :mod:`trpo_tf.policies.acting` (no TensorFlow there, so any process can act).
This is the only module that imports TensorFlow Probability.

Adding an action distribution is one new subclass of :class:`ActionHead` with its own
``kind``, its NumPy acting class of that ``kind`` in ``acting.py``, and one line in
:func:`action_head`. A head hands its acting the plain arrays of :meth:`ActionHead.numpy_arrays`,
so a picklable acting snapshot holds only arrays and the head's ``kind``.

Shapes: B is the batch size, A the action shape of the space.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from trpo_tf.config import ACTION_DISTRIBUTIONS
from trpo_tf.errors import ConfigError, UnsupportedSpaceError
from trpo_tf.policies.acting import ACTING, Arrays, beta_margin

tfd = tfp.distributions
tfb = tfp.bijectors

# Large negative logit for the padding of MultiDiscrete sub-spaces of unequal size.
_PAD_LOGIT = -1e9

SUPPORTED_ACTION_SPACES = "Box, Discrete, MultiDiscrete and MultiBinary"

class ActionHead(keras.layers.Layer):
    """How one action space turns network outputs [B, param_size] into a distribution.

    Subclasses set ``kind`` (registered in :data:`HEAD_KINDS`), ``param_size`` (network
    outputs needed), ``action_shape`` and ``action_dtype`` (of the actions stored in a batch).
    """

    kind: ClassVar[str]
    param_size: int
    action_shape: tuple[int, ...]
    action_dtype: tf.DType

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        HEAD_KINDS[cls.kind] = cls

    def distribution_parameters(self, outputs: tf.Tensor) -> list[tf.Tensor]:
        """η: the tensors the distribution is built from, network outputs [B, param_size] first.

        The default is the outputs alone; heads with parameters of their own append them.
        """
        return [outputs]

    def distribution(self, parameters: Sequence[tf.Tensor]) -> Any:
        """The TFP distribution (batch [B], events A) with parameters η."""
        raise NotImplementedError

    def named_parameters(self, parameters: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        """η by name, batch first (the export's ``distribution`` signature)."""
        raise NotImplementedError

    def deterministic(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """The deterministic action [B, *A] in the environment's units: the most probable one (the Beta's: its mean)."""
        raise NotImplementedError

    def sample(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """A random action [B, *A] in the environment's units, from stateful random ops (which LiteRT runs,
        unless ``sample_conversion_problem`` says why not)."""
        raise NotImplementedError

    sample_conversion_problem: ClassVar[str | None] = None
    """Why TFLite (LiteRT) and ONNX cannot run :meth:`sample` (their files then leave it out), or None."""

    xla_dynamic_batch: ClassVar[bool] = True
    """Whether the policy update may compile this head's distribution with XLA for a batch of
    unknown size; when False it compiles one graph per batch size (see :class:`~trpo_tf.update.PolicyUpdate`)."""

    def numpy_arrays(self) -> Arrays:
        """Everything :meth:`numpy_act` and :meth:`numpy_to_env` need, as plain arrays."""
        raise NotImplementedError

    @classmethod
    def numpy_act(cls, arrays: Arrays, outputs: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Actions [B, *A] as stored in a batch, from outputs [B, param_size] (NumPy: :mod:`~trpo_tf.policies.acting`)."""
        return ACTING[cls.kind].act(arrays, outputs, rng)

    @classmethod
    def numpy_to_env(cls, arrays: Arrays, actions: np.ndarray) -> np.ndarray:
        """Stored actions → the actions sent to the environment."""
        return ACTING[cls.kind].to_env(arrays, actions)


HEAD_KINDS: dict[str, type[ActionHead]] = {}


class GaussianHead(ActionHead):
    """``Box`` → diagonal Gaussian: the mean from the network, a free log-std [param_size] owned here.

    Actions are stored unclipped and clipped to the bounds when sent to the environment.
    """

    kind = "gaussian"
    action_dtype = tf.float32

    def __init__(self, space: gym.spaces.Box, init_log_std: float = 0.0, **kwargs: Any):
        super().__init__(name=kwargs.pop("name", "gaussian_head"), **kwargs)
        self.action_shape = tuple(space.shape)
        self.param_size = int(np.prod(space.shape, dtype=np.int64))
        self.low = space.low.astype(np.float32).reshape(-1)
        self.high = space.high.astype(np.float32).reshape(-1)
        self.log_std = self.add_weight(shape=(self.param_size,), name="log_std",
                                       initializer=keras.initializers.Constant(init_log_std))
        self.built = True

    def distribution_parameters(self, outputs: tf.Tensor) -> list[tf.Tensor]:
        return [outputs, tf.identity(self.log_std.value)]

    def distribution(self, parameters: Sequence[tf.Tensor]) -> Any:
        mean, log_std = parameters
        return tfd.Independent(tfd.Normal(mean, tf.exp(log_std)), reinterpreted_batch_ndims=1)

    def named_parameters(self, parameters: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        mean, log_std = parameters
        return {"mean": self._shaped(mean), "log_std": self._shaped(tf.zeros_like(mean) + log_std)}

    def deterministic(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        return self._shaped(tf.clip_by_value(parameters[0], self.low, self.high))

    def sample(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        mean, log_std = parameters
        noise = tf.random.normal(tf.shape(mean))
        return self._shaped(tf.clip_by_value(mean + tf.exp(log_std) * noise, self.low, self.high))

    def numpy_arrays(self) -> Arrays:
        return {"log_std": self.log_std.numpy(), "low": self.low, "high": self.high, "action_shape": self.action_shape}


    def _shaped(self, flat: tf.Tensor) -> tf.Tensor:
        return tf.reshape(flat, (-1,) + self.action_shape)


class CategoricalHead(ActionHead):
    """``Discrete`` (one choice) or ``MultiDiscrete`` (independent choices) → Categorical(s).

    A MultiDiscrete space with K sub-spaces of sizes n_k uses K·max(n_k) logits, the unused
    ones of smaller sub-spaces pinned to a large negative constant. Actions are stored as
    zero-based indices; the environment counts from the space's ``start``.
    """

    kind = "categorical"
    action_dtype = tf.int32

    def __init__(self, sizes: np.ndarray, starts: np.ndarray, single: bool, **kwargs: Any):
        super().__init__(name=kwargs.pop("name", "categorical_head"), **kwargs)
        self.sizes = sizes.astype(np.int64).reshape(-1)
        self.starts = starts.astype(np.int64).reshape(-1)
        self.single = single
        self.width = int(self.sizes.max())
        self.count = len(self.sizes)
        self.param_size = self.count * self.width
        self.action_shape = () if single else tuple(sizes.shape)
        mask = np.arange(self.width)[None, :] >= self.sizes[:, None]
        self.padding = np.where(mask, _PAD_LOGIT, 0.0).astype(np.float32)  # [K, width]
        self.built = True

    def logits(self, outputs: tf.Tensor) -> tf.Tensor:
        """[B, K·width] → [B, K, width] with padding applied."""
        return tf.reshape(outputs, [-1, self.count, self.width]) + self.padding

    def distribution(self, parameters: Sequence[tf.Tensor]) -> Any:
        logits = self.logits(parameters[0])
        if self.single:
            return tfd.Categorical(logits=logits[:, 0])
        return _FlatEvents(tfd.Independent(tfd.Categorical(logits=logits), reinterpreted_batch_ndims=1),
                           self.action_shape)

    def named_parameters(self, parameters: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        logits = self.logits(parameters[0])
        return {"logits": logits[:, 0] if self.single else logits}

    def deterministic(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        choice = tf.argmax(self.logits(parameters[0]), axis=-1, output_type=tf.int32) + self.starts
        return self._shaped(choice)

    def sample(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """By the Gumbel-max trick."""
        logits = self.logits(parameters[0])
        uniform = tf.random.uniform(tf.shape(logits), minval=1e-20, maxval=1.0)
        gumbel = -tf.math.log(-tf.math.log(uniform))
        choice = tf.argmax(logits + gumbel, axis=-1, output_type=tf.int32) + self.starts
        return self._shaped(choice)

    def numpy_arrays(self) -> Arrays:
        return {"padding": self.padding, "starts": self.starts, "single": self.single, "action_shape": self.action_shape}


    def _shaped(self, choice: tf.Tensor) -> tf.Tensor:
        return choice[:, 0] if self.single else tf.reshape(choice, (-1,) + self.action_shape)


class BernoulliHead(ActionHead):
    """``MultiBinary`` → independent Bernoullis, one logit per binary action."""

    kind = "bernoulli"
    action_dtype = tf.int32

    def __init__(self, space: gym.spaces.MultiBinary, **kwargs: Any):
        super().__init__(name=kwargs.pop("name", "bernoulli_head"), **kwargs)
        self.action_shape = tuple(int(n) for n in np.atleast_1d(np.asarray(space.n)))
        self.param_size = int(np.prod(self.action_shape))
        self.built = True

    def distribution(self, parameters: Sequence[tf.Tensor]) -> Any:
        return _FlatEvents(tfd.Independent(tfd.Bernoulli(logits=parameters[0], dtype=tf.int32),
                                           reinterpreted_batch_ndims=1), self.action_shape)

    def named_parameters(self, parameters: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"logits": tf.reshape(parameters[0], (-1,) + self.action_shape)}

    def deterministic(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        return tf.reshape(tf.cast(parameters[0] > 0.0, tf.int32), (-1,) + self.action_shape)

    def sample(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """Each bit is 1 with probability sigmoid(logit)."""
        logits = parameters[0]
        uniform = tf.random.uniform(tf.shape(logits))
        return tf.reshape(tf.cast(uniform < tf.sigmoid(logits), tf.int32), (-1,) + self.action_shape)

    def numpy_arrays(self) -> Arrays:
        return {"action_shape": self.action_shape}


class BetaHead(ActionHead):
    """``Box`` with finite bounds → one Beta(α, β) per action dimension, on [low, high] (Chou et al., 2017).

    Chou, Maturana & Scherer, "Improving Stochastic Policy Gradients in Continuous Control with
    Deep Reinforcement Learning using the Beta Distribution", ICML 2017. The network gives
    2K outputs for K action dimensions; α = 1 + softplus(outputs[:, :K]) and
    β = 1 + softplus(outputs[:, K:]), so α, β > 1: each density is unimodal and zero at the
    bounds, and no probability mass falls outside the space, so nothing is clipped. A unit
    sample u ∈ (0, 1) becomes the action low + (high − low)·u; the distribution is the Beta
    pushed through that affine map, so log-probabilities are densities in the environment's
    units (the Beta's minus Σ log(high − low)) and the entropy is the Beta's plus that sum.
    The constant cancels in probability ratios and in the KL (both are invariant under the map);
    it only shifts the reported entropy.

    The deterministic action (``serving_default``) is the mean, low + (high − low)·α/(α + β):
    defined for every α, β > 0 and smooth in them, where the mode (α − 1)/(α + β − 2) is 0/0 as
    α, β → 1 (and undefined for α or β ≤ 1 in general).

    Actions are stored in environment units, strictly inside the bounds (see
    :func:`~trpo_tf.policies.acting.beta_margin`), so their log-probability is finite.
    Sampling draws Gamma variates (X/(X + Y) with X ~ Gamma(α), Y ~ Gamma(β) is Beta(α, β)),
    which neither LiteRT nor tf2onnx can run: TFLite and ONNX conversions leave ``sample`` out.
    """

    kind = "beta"
    action_dtype = tf.float32
    sample_conversion_problem = ("Beta sampling draws Gamma variates (TensorFlow's RandomGamma op), which "
                                 "neither LiteRT's builtin operators nor tf2onnx support")
    # Compiled by XLA (TensorFlow 2.21, CPU) for a batch of unknown size [None, ...], the TRPO step
    # with Beta distributions took the weights as compile-time constants: every call compiled again
    # (60 s on Pendulum) and measured the KL, surrogate and entropy after its step with the weights
    # from before it (KL 0). Compiled for the batch's own size, the same step is correct and fast.
    xla_dynamic_batch = False

    def __init__(self, space: gym.spaces.Box, **kwargs: Any):
        super().__init__(name=kwargs.pop("name", "beta_head"), **kwargs)
        self.action_shape = tuple(space.shape)
        self.size = int(np.prod(space.shape, dtype=np.int64))
        self.param_size = 2 * self.size
        self.low = space.low.astype(np.float32).reshape(-1)
        self.high = space.high.astype(np.float32).reshape(-1)
        self.built = True

    def concentrations(self, outputs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Network outputs [B, 2K] → (α [B, K], β [B, K]), each 1 + softplus of its half."""
        return 1.0 + tf.math.softplus(outputs[:, :self.size]), 1.0 + tf.math.softplus(outputs[:, self.size:])

    def distribution(self, parameters: Sequence[tf.Tensor]) -> Any:
        alpha, beta = self.concentrations(parameters[0])
        to_bounds = tfb.Shift(self.low)(tfb.Scale(self.high - self.low))
        return tfd.Independent(tfd.TransformedDistribution(tfd.Beta(alpha, beta), to_bounds),
                               reinterpreted_batch_ndims=1)

    def named_parameters(self, parameters: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        alpha, beta = self.concentrations(parameters[0])
        return {"alpha": self._shaped(alpha), "beta": self._shaped(beta)}

    def deterministic(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        alpha, beta = self.concentrations(parameters[0])
        return self._to_bounds(alpha / (alpha + beta))

    def sample(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """low + (high − low)·X/(X + Y), X ~ Gamma(α), Y ~ Gamma(β) (stateful RandomGamma ops)."""
        alpha, beta = self.concentrations(parameters[0])
        x = tf.random.gamma([], alpha)
        y = tf.random.gamma([], beta)
        return self._to_bounds(x / (x + y))

    def numpy_arrays(self) -> Arrays:
        return {"low": self.low, "high": self.high, "margin": beta_margin(self.low, self.high),
                "action_shape": self.action_shape}

    def _to_bounds(self, unit: tf.Tensor) -> tf.Tensor:
        """Unit-interval values [B, K] → actions [B, *A] in the environment's units, within the bounds."""
        actions = tf.clip_by_value(self.low + (self.high - self.low) * unit, self.low, self.high)
        return tf.reshape(actions, (-1,) + self.action_shape)

    def _shaped(self, flat: tf.Tensor) -> tf.Tensor:
        return tf.reshape(flat, (-1,) + self.action_shape)


def check_bounded_box(space: gym.Space, distribution: str) -> gym.spaces.Box:
    """``space`` when it is a Box with finite bounds; :class:`UnsupportedSpaceError` naming it otherwise."""
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


class _FlatEvents:
    """Wraps a distribution over flat events [B, K] so that it accepts actions [B, *A]."""

    def __init__(self, distribution: Any, action_shape: tuple[int, ...]):
        self.inner = distribution
        self.event_size = int(np.prod(action_shape))

    def log_prob(self, actions: tf.Tensor) -> tf.Tensor:
        return self.inner.log_prob(tf.reshape(actions, [-1, self.event_size]))

    def entropy(self) -> tf.Tensor:
        return self.inner.entropy()

    def kl_to(self, other: "_FlatEvents") -> tf.Tensor:
        return tfd.kl_divergence(self.inner, other.inner)


def kl_divergence(old: Any, new: Any) -> tf.Tensor:
    """KL(old ‖ new) per batch element [B], from TFP's registered closed forms."""
    if isinstance(old, _FlatEvents):
        return old.kl_to(new)
    return tfd.kl_divergence(old, new)


def action_head(space: gym.Space, init_log_std: float = 0.0, distribution: str = "gaussian") -> ActionHead:
    """The :class:`ActionHead` for ``space``; raises :class:`UnsupportedSpaceError` otherwise.

    ``init_log_std`` is the Gaussian's initial log-std (ignored by the other heads);
    ``distribution`` ("gaussian" or "beta", see :data:`ACTION_DISTRIBUTIONS`) picks the head of
    a Box space. "beta" needs a Box with finite bounds and is refused for any other space.
    """
    if distribution not in ACTION_DISTRIBUTIONS:
        raise ConfigError(f"unknown action distribution {distribution!r}; choose one of {ACTION_DISTRIBUTIONS}")
    if distribution == "beta":
        return BetaHead(check_bounded_box(space, distribution))
    if isinstance(space, gym.spaces.Box):
        return GaussianHead(space, init_log_std)  # unbounded dimensions clip to ±inf: the identity
    if isinstance(space, gym.spaces.Discrete):
        return CategoricalHead(np.array([space.n]), np.array([space.start]), single=True)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return CategoricalHead(np.asarray(space.nvec), np.asarray(space.start), single=False)
    if isinstance(space, gym.spaces.MultiBinary):
        return BernoulliHead(space)
    raise UnsupportedSpaceError(
        f"unsupported action space {space!r}: trpo_tf supports {SUPPORTED_ACTION_SPACES}")
