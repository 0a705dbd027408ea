"""The policy as plain NumPy arrays, acting without TensorFlow: the snapshot a sampler (in any process) uses.

Nothing here imports TensorFlow, so a worker process or a Ray actor that unpickles a
:class:`PolicySnapshot` needs only NumPy: the snapshot holds the encoder and the action
distribution (plain objects whose NumPy sides act; see :mod:`trpo_tf.policies.encoders` and
:mod:`trpo_tf.policies.distributions`), the normalizer's statistics, the network's Dense layers
and the distribution's free parameters as arrays.

Shapes: B is the batch size, D the flat feature size, A the action shape, M the length of an action mask.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    from trpo_tf.policies.distributions import ActionDistribution, Arrays
    from trpo_tf.policies.encoders import ObservationEncoder
    from trpo_tf.policies.recurrent import NumpyCell

CLIP = 10.0  # normalized features are clipped to [-CLIP, CLIP]
EPSILON = 1e-8

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
    """Features ``x`` [B, D] → outputs [B, D_out] through ``layers``, Dense layers given as arrays.

    Each layer is ``(kernel [D_in, D_out], bias [D_out], activation name)``, applied in order as
    ``activation(x @ kernel + bias)``; the activation names are those of :data:`NUMPY_ACTIVATIONS`.
    """
    for kernel, bias, activation in layers:
        x = NUMPY_ACTIVATIONS[activation](x @ kernel + bias)
    return x


class NumpyNormalizer:
    """The observation normalizer's map, frozen, in NumPy: [B, D] → clip((x - mean) / sqrt(var + 1e-8), ±10).

    ``mean`` and ``var`` [D] are the running statistics at the time of the snapshot (cast to float32);
    with ``enabled`` False (``normalize_observations`` off) the features pass through unchanged.
    """

    def __init__(self, mean: np.ndarray, var: np.ndarray, enabled: bool):
        self.mean = mean.astype(np.float32)
        self.inv_std = (1.0 / np.sqrt(var.astype(np.float32) + EPSILON)).astype(np.float32)
        self.enabled = enabled

    def __call__(self, features: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return features
        # np.minimum/np.maximum: a third of np.clip's overhead on the one-row batches of a rollout.
        return np.minimum(np.maximum((features - self.mean) * self.inv_std, -CLIP), CLIP)


@dataclasses.dataclass(frozen=True)
class PolicySnapshot:
    """The policy frozen as plain arrays: acts in NumPy, without TensorFlow, in any process.

    Holds the encoder and the action distribution (plain objects), the normalizer's statistics,
    the network's layers as (kernel, bias, activation name) and the distribution's free
    parameters as arrays; it pickles, and unpickling it imports NumPy only. A recurrent policy's
    snapshot holds its ``cell`` (:class:`~trpo_tf.policies.recurrent.NumpyCell`) and acts with
    :meth:`act_recurrent`, which takes and returns the environments' states [B, S].
    """

    encoder: ObservationEncoder
    normalizer: NumpyNormalizer
    layers: tuple[DenseArrays, ...]
    distribution: ActionDistribution
    free_parameters: Arrays
    cell: NumpyCell | None = None

    @property
    def state_size(self) -> int:
        """S, the width of one environment's recurrent state (0 without a cell)."""
        return 0 if self.cell is None else self.cell.state_size

    def features(self, observations: np.ndarray) -> np.ndarray:
        """Raw observations [B, *obs_shape] → normalized features [B, D]."""
        return self.normalizer(self.encoder.numpy(observations))

    def act(self, observations: np.ndarray, rng: np.random.Generator | None,
            masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw observations [B, *obs_shape] → (actions for the environment, actions as stored in a batch).

        Actions are drawn with ``rng``; with ``rng`` None they are the most probable ones; with action
        ``masks`` [B, M] (nonzero: allowed) only allowed ones.
        """
        if self.cell is not None:
            raise ValueError("a recurrent policy acts with act_recurrent(observations, states, rng), which carries "
                             "each environment's state")
        outputs = numpy_forward(self.layers, self.features(observations))
        return self.distribution.actions(outputs, self.free_parameters, rng, masks)

    def act_recurrent(self, observations: np.ndarray, states: np.ndarray, rng: np.random.Generator | None,
                      masks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A recurrent policy's :meth:`act`: raw observations [B, *obs_shape] read from states [B, S] →
        (actions for the environment, actions as stored, new states [B, S]); ``rng`` and ``masks`` as in :meth:`act`.
        A state of zeros starts an episode."""
        assert self.cell is not None, "act_recurrent needs a recurrent policy"
        hidden, states = self.cell.step(self.features(observations), states)
        env_actions, stored = self.distribution.actions(numpy_forward(self.layers, hidden), self.free_parameters,
                                                        rng, masks)
        return env_actions, stored, states
