"""The policy as plain NumPy arrays, acting without TensorFlow: the snapshot a sampler (in any process) uses.

Nothing here imports TensorFlow, so a worker process or a Ray actor that unpickles a
:class:`PolicySnapshot` needs only NumPy. Each action distribution's NumPy acting is a class
here, registered by the ``kind`` of its :class:`~trpo_tf.policies.heads.ActionHead`, which
hands over the arrays it needs (:meth:`~trpo_tf.policies.heads.ActionHead.numpy_arrays`).

Shapes: B is the batch size, D the flat feature size, A the action shape.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import numpy as np

if TYPE_CHECKING:
    from trpo_tf.policies.encoders import ObservationEncoder

CLIP = 10.0  # normalized features are clipped to [-CLIP, CLIP]
EPSILON = 1e-8

Arrays = dict[str, Any]  # plain data: NumPy arrays, and tuples of ints for shapes

# A Dense layer as (kernel [D_in, D_out], bias [D_out], activation name): plain data.
DenseArrays = tuple[np.ndarray, np.ndarray, str]

NUMPY_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0.0, x, np.expm1(np.minimum(x, 0.0))),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "linear": lambda x: x,
}


def numpy_forward(layers: Sequence[DenseArrays], x: np.ndarray) -> np.ndarray:
    """[B, D] → [B, outputs] through Dense layers given as arrays."""
    for kernel, bias, activation in layers:
        x = NUMPY_ACTIVATIONS[activation](x @ kernel + bias)
    return x


class NumpyNormalizer:
    """The observation normalizer's map, frozen, in NumPy: [B, D] → clip((x - mean) / sqrt(var + 1e-8), ±10)."""

    def __init__(self, mean: np.ndarray, var: np.ndarray, enabled: bool):
        self.mean = mean.astype(np.float32)
        self.inv_std = (1.0 / np.sqrt(var.astype(np.float32) + EPSILON)).astype(np.float32)
        self.enabled = enabled

    def __call__(self, features: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return features
        # np.minimum/np.maximum: a third of np.clip's overhead on the one-row batches of a rollout.
        return np.minimum(np.maximum((features - self.mean) * self.inv_std, -CLIP), CLIP)


class NumpyActing:
    """One action distribution's acting in NumPy, on the arrays its head hands over."""

    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ACTING[cls.kind] = cls

    @staticmethod
    def act(arrays: Arrays, outputs: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Actions [B, *A] as stored in a batch, from outputs [B, param_size]; most probable when ``rng`` is None."""
        raise NotImplementedError

    @staticmethod
    def to_env(arrays: Arrays, actions: np.ndarray) -> np.ndarray:
        """Stored actions → the actions sent to the environment."""
        return actions


ACTING: dict[str, type[NumpyActing]] = {}


class GaussianActing(NumpyActing):
    """Mean plus exp(log_std)·noise; clipped to the bounds only when sent to the environment."""

    kind = "gaussian"

    @staticmethod
    def act(arrays: Arrays, outputs: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        if rng is None:
            return outputs
        return outputs + np.exp(arrays["log_std"]) * rng.standard_normal(outputs.shape, dtype=np.float32)

    @staticmethod
    def to_env(arrays: Arrays, actions: np.ndarray) -> np.ndarray:
        clipped = np.minimum(np.maximum(actions, arrays["low"]), arrays["high"])
        return clipped.reshape((len(actions),) + arrays["action_shape"])


class CategoricalActing(NumpyActing):
    """Argmax of the (padded) logits, plus Gumbel noise when sampling; the space's start added for the env."""

    kind = "categorical"

    @staticmethod
    def act(arrays: Arrays, outputs: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        count, width = arrays["padding"].shape
        logits = outputs.reshape(len(outputs), count, width) + arrays["padding"]
        if rng is not None:
            logits = logits + rng.gumbel(size=logits.shape).astype(np.float32)
        choice = logits.argmax(axis=-1)  # [B, K], zero-based
        if arrays["single"]:
            return choice[:, 0]
        return choice.reshape((len(outputs),) + arrays["action_shape"])

    @staticmethod
    def to_env(arrays: Arrays, actions: np.ndarray) -> np.ndarray:
        starts = arrays["starts"]
        return actions + (starts[0] if arrays["single"] else starts.reshape(arrays["action_shape"]))


class BernoulliActing(NumpyActing):
    """Each bit 1 with probability sigmoid(logit) (deterministic: logit > 0)."""

    kind = "bernoulli"

    @staticmethod
    def act(arrays: Arrays, outputs: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        if rng is None:
            chosen = outputs > 0.0
        else:
            chosen = rng.random(outputs.shape, dtype=np.float32) < 1.0 / (1.0 + np.exp(-outputs))
        return chosen.astype(np.int32).reshape((len(outputs),) + arrays["action_shape"])


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


class BetaActing(NumpyActing):
    """A Beta(α, β) per dimension on [low, high], α = 1 + softplus(outputs[:, :K]), β = 1 + softplus(outputs[:, K:]).

    Sampled with ``Generator.beta``, then kept ``margin`` away from the bounds (see
    :func:`beta_margin`); deterministic: the mean low + (high − low)·α/(α + β). Stored in
    environment units, sent to the environment as they are.
    """

    kind = "beta"

    @staticmethod
    def act(arrays: Arrays, outputs: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        size = outputs.shape[1] // 2
        alpha = 1.0 + np.logaddexp(0.0, outputs[:, :size].astype(np.float64))
        beta = 1.0 + np.logaddexp(0.0, outputs[:, size:].astype(np.float64))
        if rng is None:
            unit = alpha / (alpha + beta)
        else:
            unit = np.minimum(np.maximum(rng.beta(alpha, beta), arrays["margin"]), 1.0 - arrays["margin"])
        low, high = arrays["low"].astype(np.float64), arrays["high"].astype(np.float64)
        return (low + (high - low) * unit).astype(np.float32)

    @staticmethod
    def to_env(arrays: Arrays, actions: np.ndarray) -> np.ndarray:
        return actions.reshape((len(actions),) + arrays["action_shape"])


@dataclasses.dataclass(frozen=True)
class PolicySnapshot:
    """The policy frozen as plain arrays: acts in NumPy, without TensorFlow, in any process.

    Holds the encoder (a plain object), the normalizer's statistics, the network's layers as
    (kernel, bias, activation name) and the head's ``kind`` with its arrays; it pickles, and
    unpickling it imports NumPy only.
    """

    encoder: ObservationEncoder
    normalizer: NumpyNormalizer
    layers: tuple[DenseArrays, ...]
    head_kind: str
    head_arrays: dict[str, Any]

    def features(self, observations: np.ndarray) -> np.ndarray:
        """Raw observations [B, *obs_shape] → normalized features [B, D]."""
        return self.normalizer(self.encoder.numpy(observations))

    def act(self, observations: np.ndarray, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """Raw observations [B, *obs_shape] → (actions for the environment, actions as stored in a batch).

        Actions are drawn with ``rng``; with ``rng`` None they are the most probable ones.
        """
        acting = ACTING[self.head_kind]
        actions = acting.act(self.head_arrays, numpy_forward(self.layers, self.features(observations)), rng)
        return acting.to_env(self.head_arrays, actions), actions
