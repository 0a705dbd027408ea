"""Keras policy and value models, and the action space → TFP distribution mapping.

This is the only module that imports TensorFlow Probability. Each action space gets an
:class:`ActionHead` that knows how many network outputs its distribution needs, how to
build the TFP distribution from them, and how to act from them in NumPy during rollouts
(where one TensorFlow call per environment step would cost more than the step itself).

Shapes: B is the batch size, D the flat feature size, A the action shape of the space.
"""

from __future__ import annotations

import math

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

# Large negative logit for the padding of MultiDiscrete sub-spaces of unequal size.
_PAD_LOGIT = -1e9

SUPPORTED_OBSERVATION_SPACES = "Box (any shape, flattened) and Discrete (one-hot)"
SUPPORTED_ACTION_SPACES = "Box, Discrete, MultiDiscrete and MultiBinary"


class UnsupportedSpaceError(ValueError):
    """An observation or action space this library cannot model."""


# --------------------------------------------------------------------------- observations

class ObservationEncoder:
    """Raw observations [B, *obs_shape] → flat float32 features [B, D].

    ``Box`` observations are flattened; ``Discrete`` ones become one-hot vectors.
    """

    def __init__(self, space: gym.Space):
        if isinstance(space, gym.spaces.Box):
            self.shape = tuple(space.shape)
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

    def tensorflow(self, observations: tf.Tensor) -> tf.Tensor:
        """[B, *obs_shape] → [B, D] in the TensorFlow graph."""
        if self.one_hot:
            return tf.one_hot(tf.cast(observations, tf.int32) - self.start, self.dim, dtype=tf.float32)
        return tf.reshape(tf.cast(observations, tf.float32), [-1, self.dim])


# --------------------------------------------------------------------------- actions

class ActionHead:
    """How one action space turns network outputs [B, param_size] into a distribution."""

    param_size: int
    action_shape: tuple[int, ...]
    action_dtype: tf.DType
    has_log_std = False

    def distribution(self, outputs: tf.Tensor, log_std: tf.Tensor | None) -> tfd.Distribution:
        raise NotImplementedError

    def parameters(self, outputs: tf.Tensor, log_std: tf.Tensor | None) -> dict[str, tf.Tensor]:
        """The distribution's parameters by name, batch first (for export)."""
        raise NotImplementedError

    def deterministic(self, outputs: tf.Tensor) -> tf.Tensor:
        """Most probable action [B, *A], in the environment's units."""
        raise NotImplementedError

    def numpy_act(self, outputs: np.ndarray, log_std: np.ndarray | None, rng: np.random.Generator | None
                  ) -> np.ndarray:
        """Sampled actions [B, *A] (most probable when ``rng`` is None), as stored in a batch."""
        raise NotImplementedError

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Actions as sent to the environment (Box: clipped to the bounds)."""
        return actions


class GaussianHead(ActionHead):
    """``Box`` → diagonal Gaussian; the mean comes from the network, log-std is a free variable."""

    has_log_std = True
    action_dtype = tf.float32

    def __init__(self, space: gym.spaces.Box):
        self.action_shape = tuple(space.shape)
        self.param_size = int(np.prod(space.shape, dtype=np.int64))
        self.low = space.low.astype(np.float32).reshape(-1)
        self.high = space.high.astype(np.float32).reshape(-1)

    def distribution(self, outputs, log_std):
        return tfd.Independent(tfd.Normal(outputs, tf.exp(log_std)), reinterpreted_batch_ndims=1)

    def parameters(self, outputs, log_std):
        return {"mean": self._shaped(outputs), "log_std": self._shaped(tf.zeros_like(outputs) + log_std)}

    def deterministic(self, outputs):
        return self._shaped(tf.clip_by_value(outputs, self.low, self.high))

    def sample(self, outputs, log_std):
        """A stochastic action [B, *A] from stateful random ops (these convert to TFLite)."""
        noise = tf.random.normal(tf.shape(outputs))
        return self._shaped(tf.clip_by_value(outputs + tf.exp(log_std) * noise, self.low, self.high))

    def numpy_act(self, outputs, log_std, rng):
        if rng is None:
            return outputs
        return outputs + np.exp(log_std) * rng.standard_normal(outputs.shape, dtype=np.float32)

    def to_env(self, actions):
        return np.minimum(np.maximum(actions, self.low), self.high).reshape((len(actions),) + self.action_shape)

    def _shaped(self, flat):
        return tf.reshape(flat, (-1,) + self.action_shape)


class CategoricalHead(ActionHead):
    """``Discrete`` (one choice) or ``MultiDiscrete`` (independent choices) → Categorical(s).

    A MultiDiscrete space with K sub-spaces of sizes n_k uses K·max(n_k) logits, the unused
    ones of smaller sub-spaces pinned to a large negative constant.
    """

    action_dtype = tf.int32

    def __init__(self, sizes: np.ndarray, starts: np.ndarray, single: bool):
        self.sizes = sizes.astype(np.int64).reshape(-1)
        self.starts = starts.astype(np.int64).reshape(-1)
        self.single = single
        self.width = int(self.sizes.max())
        self.count = len(self.sizes)
        self.param_size = self.count * self.width
        self.action_shape = () if single else tuple(sizes.shape)
        mask = np.arange(self.width)[None, :] >= self.sizes[:, None]
        self.padding = np.where(mask, _PAD_LOGIT, 0.0).astype(np.float32)  # [K, width]

    def logits(self, outputs):
        """[B, K·width] → [B, K, width] with padding applied."""
        return tf.reshape(outputs, [-1, self.count, self.width]) + self.padding

    def distribution(self, outputs, log_std):
        logits = self.logits(outputs)
        if self.single:
            return tfd.Categorical(logits=logits[:, 0])
        return _FlatEvents(tfd.Independent(tfd.Categorical(logits=logits), reinterpreted_batch_ndims=1),
                          self.action_shape)

    def parameters(self, outputs, log_std):
        logits = self.logits(outputs)
        return {"logits": logits[:, 0] if self.single else logits}

    def deterministic(self, outputs):
        choice = tf.argmax(self.logits(outputs), axis=-1, output_type=tf.int32) + self.starts
        return self._shaped(choice)

    def sample(self, outputs, log_std):
        """A stochastic action [B, *A] by the Gumbel-max trick (stateful random ops)."""
        uniform = tf.random.uniform(tf.shape(self.logits(outputs)), minval=1e-20, maxval=1.0)
        gumbel = -tf.math.log(-tf.math.log(uniform))
        choice = tf.argmax(self.logits(outputs) + gumbel, axis=-1, output_type=tf.int32) + self.starts
        return self._shaped(choice)

    def numpy_act(self, outputs, log_std, rng):
        logits = outputs.reshape(len(outputs), self.count, self.width) + self.padding
        if rng is not None:
            logits = logits + rng.gumbel(size=logits.shape).astype(np.float32)
        choice = logits.argmax(axis=-1)  # [B, K], zero-based
        return choice[:, 0] if self.single else choice.reshape((len(outputs),) + self.action_shape)

    def to_env(self, actions):
        # Stored actions are zero-based indices; the environment counts from its ``start``.
        return actions + (self.starts[0] if self.single else self.starts.reshape(self.action_shape))

    def _shaped(self, choice):
        return choice[:, 0] if self.single else tf.reshape(choice, (-1,) + self.action_shape)


class BernoulliHead(ActionHead):
    """``MultiBinary`` → independent Bernoullis, one logit per binary action."""

    action_dtype = tf.int32

    def __init__(self, space: gym.spaces.MultiBinary):
        self.action_shape = tuple(np.atleast_1d(space.n).tolist()) if np.ndim(space.n) else (int(space.n),)
        self.param_size = int(np.prod(self.action_shape))

    def distribution(self, outputs, log_std):
        return _FlatEvents(tfd.Independent(tfd.Bernoulli(logits=outputs, dtype=tf.int32),
                                          reinterpreted_batch_ndims=1), self.action_shape)

    def parameters(self, outputs, log_std):
        return {"logits": tf.reshape(outputs, (-1,) + self.action_shape)}

    def deterministic(self, outputs):
        return tf.reshape(tf.cast(outputs > 0.0, tf.int32), (-1,) + self.action_shape)

    def sample(self, outputs, log_std):
        """A stochastic action [B, *A]: each bit is 1 with probability sigmoid(logit)."""
        uniform = tf.random.uniform(tf.shape(outputs))
        return tf.reshape(tf.cast(uniform < tf.sigmoid(outputs), tf.int32), (-1,) + self.action_shape)

    def numpy_act(self, outputs, log_std, rng):
        if rng is None:
            chosen = outputs > 0.0
        else:
            chosen = rng.random(outputs.shape, dtype=np.float32) < 1.0 / (1.0 + np.exp(-outputs))
        return chosen.astype(np.int32).reshape((len(outputs),) + self.action_shape)


class _FlatEvents:
    """Wraps a distribution over flat events [B, K] so that it accepts actions [B, *A]."""

    def __init__(self, distribution: tfd.Distribution, action_shape: tuple[int, ...]):
        self.inner = distribution
        self.event_size = int(np.prod(action_shape))

    def log_prob(self, actions):
        return self.inner.log_prob(tf.reshape(actions, [-1, self.event_size]))

    def entropy(self):
        return self.inner.entropy()

    def kl_to(self, other: "_FlatEvents"):
        return tfd.kl_divergence(self.inner, other.inner)


def kl_divergence(old, new) -> tf.Tensor:
    """KL(old ‖ new) per batch element [B], from TFP's registered closed forms."""
    if isinstance(old, _FlatEvents):
        return old.kl_to(new)
    return tfd.kl_divergence(old, new)


def action_head(space: gym.Space) -> ActionHead:
    """The :class:`ActionHead` for ``space``; raises :class:`UnsupportedSpaceError` otherwise."""
    if isinstance(space, gym.spaces.Box):
        return GaussianHead(space)  # unbounded dimensions clip to ±inf: the identity
    if isinstance(space, gym.spaces.Discrete):
        return CategoricalHead(np.array([space.n]), np.array([space.start]), single=True)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return CategoricalHead(np.asarray(space.nvec), np.asarray(space.start), single=False)
    if isinstance(space, gym.spaces.MultiBinary):
        return BernoulliHead(space)
    raise UnsupportedSpaceError(
        f"unsupported action space {space!r}: trpo_tf supports {SUPPORTED_ACTION_SPACES}")


# --------------------------------------------------------------------------- models

def mlp(hidden: tuple[int, ...], outputs: int, activation: str, output_gain: float, seed: int,
        name: str) -> keras.Sequential:
    """Dense layers ``hidden`` with ``activation``, then a linear layer of ``outputs`` units.

    Orthogonal initialization (gain √2 for hidden layers, ``output_gain`` for the last one)
    and zero biases, as is usual for policy-gradient methods.
    """
    layers = [keras.layers.Dense(width, activation=activation, name=f"hidden_{i}",
                                 kernel_initializer=keras.initializers.Orthogonal(math.sqrt(2), seed=seed + i))
              for i, width in enumerate(hidden)]
    layers.append(keras.layers.Dense(outputs, name="output",
                                     kernel_initializer=keras.initializers.Orthogonal(output_gain,
                                                                                      seed=seed + len(hidden))))
    return keras.Sequential(layers, name=name)


class Policy(keras.Model):
    """Normalized features [B, D] → distribution outputs [B, head.param_size], plus ``log_std``.

    ``log_std`` [param_size] is a trainable, state-independent variable for Gaussian heads and
    None otherwise.
    """

    def __init__(self, head: ActionHead, feature_dim: int, hidden: tuple[int, ...], activation: str,
                 init_log_std: float, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.head = head
        self.net = mlp(hidden, head.param_size, activation, output_gain=0.01, seed=seed, name="policy_mlp")
        self.net.build((None, feature_dim))
        self.log_std = (self.add_weight(shape=(head.param_size,), name="log_std",
                                        initializer=keras.initializers.Constant(init_log_std))
                        if head.has_log_std else None)

    def call(self, features):
        return self.net(features)

    def distribution(self, features: tf.Tensor):
        """The policy's TFP distribution at ``features`` [B, D]."""
        return self.head.distribution(self.net(features), self.log_std)


def value_model(feature_dim: int, hidden: tuple[int, ...], activation: str, seed: int) -> keras.Sequential:
    """Normalized features [B, D] → state values [B, 1]."""
    model = mlp(hidden, 1, activation, output_gain=1.0, seed=seed, name="value_mlp")
    model.build((None, feature_dim))
    return model


# --------------------------------------------------------------------------- NumPy forward pass

_NUMPY_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0.0, x, np.expm1(np.minimum(x, 0.0))),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "linear": lambda x: x,
}


class NumpyMLP:
    """A frozen NumPy copy of a :func:`mlp` model: [B, D] → [B, outputs]."""

    def __init__(self, model: keras.Sequential):
        self.layers = [(layer.kernel.numpy(), layer.bias.numpy(),
                        _NUMPY_ACTIVATIONS[keras.activations.serialize(layer.activation)])
                       for layer in model.layers]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for kernel, bias, activation in self.layers:
            x = activation(x @ kernel + bias)
        return x
