"""The networks: Keras MLPs, and the NumPy forward pass of one from plain arrays.

Shapes: B is the batch size, D the flat feature size.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras

from trpo_tf.policies.acting import NUMPY_ACTIVATIONS, DenseArrays


def mlp(hidden: Sequence[int], outputs: int, activation: str, output_gain: float, seed: int,
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


def policy_network(feature_dim: int, outputs: int, hidden: Sequence[int], activation: str,
                   seed: int) -> keras.Sequential:
    """Normalized features [B, D] → the head's network outputs [B, outputs] (small last layer, gain 0.01)."""
    model = mlp(hidden, outputs, activation, output_gain=0.01, seed=seed, name="policy_mlp")
    model.build((None, feature_dim))
    return model


def value_network(feature_dim: int, hidden: Sequence[int], activation: str, seed: int) -> keras.Sequential:
    """Normalized features [B, D] → state values [B, 1]."""
    model = mlp(hidden, 1, activation, output_gain=1.0, seed=seed, name="value_mlp")
    model.build((None, feature_dim))
    return model


def dense_arrays(model: keras.Sequential) -> list[DenseArrays]:
    """The weights of an MLP of Dense layers as plain arrays and activation names."""
    layers = []
    for layer in model.layers:
        activation = keras.activations.serialize(layer.activation)
        if not isinstance(layer, keras.layers.Dense) or activation not in NUMPY_ACTIVATIONS:
            raise TypeError(f"layer {layer.name} ({type(layer).__name__}, {activation}) has no NumPy "
                            "forward pass: only Dense layers with activations "
                            f"{', '.join(NUMPY_ACTIVATIONS)} act in NumPy")
        layers.append((layer.kernel.numpy(), layer.bias.numpy(), activation))
    return layers
