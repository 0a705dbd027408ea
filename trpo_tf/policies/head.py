"""The policy's action head: the Keras layer between the network's outputs and the action distribution.

The head owns what TensorFlow must own of an :class:`~trpo_tf.policies.distributions.ActionDistribution`:
its free parameters (the Gaussian's log-std) as Keras variables, one attribute each, which the
trust-region step moves with the network's weights and checkpoints and exports carry. Everything
else it delegates to the distribution, whose module holds the maths of both sides.

A head made with ``masked=True`` takes an action mask [B, M] (bool, True where allowed) beside the
outputs wherever it builds the distribution; the distribution masks the outputs first (see
:mod:`trpo_tf.policies.distributions.base`).

Shapes: B is the batch size, P the network outputs the distribution reads, A the action shape,
M the length of an action mask.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from trpo_tf.errors import UnsupportedSpaceError
from trpo_tf.policies.distributions import MASK_NAME, ActionDistribution, Arrays, make_distribution


class ActionHead(keras.layers.Layer):
    """Network outputs [B, P] (and action masks [B, M] when ``masked``) → the action distribution (TFP),
    its parameters by name, and actions [B, *A].

    ``action_distribution``: the distribution object (plain data, picklable); ``kind``: its name;
    ``masked``: whether the policy acts on action masks (UnsupportedSpaceError when the distribution
    takes none).
    """

    def __init__(self, action_distribution: ActionDistribution, masked: bool = False, **kwargs: Any):
        super().__init__(name=kwargs.pop("name", f"{action_distribution.name}_head"), **kwargs)
        if masked and action_distribution.mask_size is None:
            raise UnsupportedSpaceError(f"action masks need a Discrete or MultiDiscrete action space; the "
                                        f"{action_distribution.name} distribution takes none")
        self.action_distribution = action_distribution
        self.masked = masked
        self.free_names = tuple(action_distribution.free_parameters())
        for name, (shape, initial) in action_distribution.free_parameters().items():
            setattr(self, name, self.add_weight(shape=shape, name=name,
                                                initializer=keras.initializers.Constant(initial)))
        self.built = True

    @property
    def kind(self) -> str:
        """The distribution's registered name."""
        return self.action_distribution.name

    @property
    def param_size(self) -> int:
        """P: how many network outputs the distribution reads per batch element."""
        return self.action_distribution.param_size

    @property
    def action_shape(self) -> tuple[int, ...]:
        """A: the shape of one action, as the action space gives it."""
        return self.action_distribution.action_shape

    @property
    def action_dtype(self) -> tf.DType:
        """The dtype of actions as a batch stores them (float32 or int32)."""
        return tf.as_dtype(self.action_distribution.action_dtype)

    @property
    def sample_conversion_problem(self) -> str | None:
        """Why TFLite (LiteRT) and ONNX cannot run :meth:`sample`, or None when they can."""
        return self.action_distribution.sample_conversion_problem

    @property
    def xla_dynamic_batch(self) -> bool:
        """Whether the policy update may compile the distribution with XLA for a batch of unknown size."""
        return self.action_distribution.xla_dynamic_batch

    def mask_spec(self) -> tf.TensorSpec | None:
        """The TensorSpec of a batch of action masks, bool [None, M] named ``action_mask``; None unless ``masked``."""
        size = self.action_distribution.mask_size
        return tf.TensorSpec([None, size], tf.bool, name=MASK_NAME) if self.masked and size else None

    def distribution_parameters(self, outputs: tf.Tensor, mask: tf.Tensor | None = None) -> list[tf.Tensor]:
        """η: network outputs [B, P] (masked by ``mask`` [B, M] when given) and the free parameters, as
        the distribution builds itself from them."""
        free = {name: getattr(self, name).value for name in self.free_names}
        if mask is not None:
            outputs = self.action_distribution.mask_tensorflow(outputs, mask)
        return self.action_distribution.parameters(outputs, free)

    def distribution(self, parameters: Sequence[tf.Tensor]) -> Any:
        """The TFP distribution (batch [B], events A) with parameters η."""
        return self.action_distribution.tfp_distribution(parameters)

    def named_parameters(self, parameters: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        """η by name, batch first (the export's ``distribution`` signature), from ``parameters`` (η as
        :meth:`distribution_parameters` returns them)."""
        return self.action_distribution.named_parameters(parameters)

    def deterministic(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """The deterministic action [B, *A] in the environment's units, from ``parameters`` (η)."""
        return self.action_distribution.deterministic(parameters)

    def sample(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
        """A random action [B, *A] in the environment's units, drawn from the distribution with ``parameters`` (η)."""
        return self.action_distribution.sample(parameters)

    def free_arrays(self) -> Arrays:
        """The free parameters' current values as NumPy arrays, for the NumPy side."""
        return {name: np.asarray(getattr(self, name).numpy()) for name in self.free_names}


def action_head(space: Any, init_log_std: float = 0.0, distribution: str = "gaussian",
                masked: bool = False) -> ActionHead:
    """The head for action ``space``: the distribution :func:`~trpo_tf.policies.distributions.make_distribution`
    picks (``distribution``: ``TRPOConfig.action_distribution``), with its free parameters.

    ``init_log_std`` is the initial log-std of distributions that have one (the Gaussian's); ``masked``:
    the head takes action masks. Raises :class:`~trpo_tf.errors.ConfigError` for an unknown
    ``distribution`` and :class:`~trpo_tf.errors.UnsupportedSpaceError` when it cannot model ``space``
    (or takes no mask and ``masked`` is set).
    """
    return ActionHead(make_distribution(space, distribution, init_log_std), masked)
