"""The networks: Keras MLPs, and the NumPy forward pass of one from plain arrays.

Shapes: B is the batch size, D the flat feature size.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import keras
import numpy as np


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


# A Dense layer as (kernel [D_in, D_out], bias [D_out], activation name): plain data.
DenseArrays = tuple[np.ndarray, np.ndarray, str]

NUMPY_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0.0, x, np.expm1(np.minimum(x, 0.0))),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "linear": lambda x: x,
}


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


def numpy_forward(layers: Sequence[DenseArrays], x: np.ndarray) -> np.ndarray:
    """[B, D] → [B, outputs] through the layers of :func:`dense_arrays`."""
    for kernel, bias, activation in layers:
        x = NUMPY_ACTIVATIONS[activation](x @ kernel + bias)
    return x
