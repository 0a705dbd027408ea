"""The networks: Keras MLPs or networks of the user's own, and the NumPy forward pass of a Dense chain.

A network of the user's own (``TRPO(policy_network=..., value_network=...)``) is a
:data:`NetworkSpec`: a ``keras.Model`` that maps normalized features [B, D] to hidden features
[B, H], or a builder ``D -> keras.Model`` that makes one. The library puts its own linear output
layer on top (:class:`HeadedNetwork`): the head's outputs for the policy, one value for the value
function. The policy and the value function are always separate networks (:func:`check_separate`).

Shapes: B is the batch size, D the flat feature size, H the user's hidden size.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from typing import Any, Callable, Iterator, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from trpo_tf.errors import NetworkError
from trpo_tf.policies.acting import NUMPY_ACTIVATIONS, DenseArrays, numpy_forward

NetworkSpec = Union[keras.Model, Callable[[int], keras.Model]]
"""A network of the user's own: a Keras model of features [B, D] → [B, H], or a builder D → such a model."""


def mlp(hidden: Sequence[int], outputs: int, activation: str, output_gain: float, seed: int,
        name: str) -> keras.Sequential:
    """Dense layers ``hidden`` with ``activation``, then a linear layer of ``outputs`` units: [B, D] → [B, outputs].

    Orthogonal initialization (gain √2 for hidden layers, ``output_gain`` for the last one)
    and zero biases, as is usual for policy-gradient methods. Hidden layer i is initialized from
    ``seed + i``, the output layer from ``seed + len(hidden)``; ``name`` names the unbuilt
    ``keras.Sequential`` returned.
    """
    layers = [keras.layers.Dense(width, activation=activation, name=f"hidden_{i}",
                                 kernel_initializer=keras.initializers.Orthogonal(math.sqrt(2), seed=seed + i))
              for i, width in enumerate(hidden)]
    layers.append(keras.layers.Dense(outputs, name="output",
                                     kernel_initializer=keras.initializers.Orthogonal(output_gain,
                                                                                      seed=seed + len(hidden))))
    return keras.Sequential(layers, name=name)


def policy_network(feature_dim: int, outputs: int, hidden: Sequence[int], activation: str,
                   seed: int, custom: NetworkSpec | None = None) -> keras.Model:
    """Normalized features [B, D] → the head's network outputs [B, outputs] (small last layer, gain 0.01).

    The MLP of ``hidden`` units with ``activation``, built for ``feature_dim`` (D) inputs, or the
    user's ``custom`` network with that last layer on top (see :func:`headed_network`, which raises
    :class:`~trpo_tf.errors.NetworkError` for an unusable one). ``seed`` seeds the initializers.
    """
    if custom is not None:
        return headed_network(custom, "policy_network", feature_dim, outputs, output_gain=0.01, seed=seed)
    model = mlp(hidden, outputs, activation, output_gain=0.01, seed=seed, name="policy_mlp")
    model.build((None, feature_dim))
    return model


def value_network(feature_dim: int, hidden: Sequence[int], activation: str, seed: int,
                  custom: NetworkSpec | None = None) -> keras.Model:
    """Normalized features [B, D] → state values [B, 1]: the MLP of ``hidden`` units with ``activation``
    or the user's ``custom`` network, for ``feature_dim`` (D) inputs, initialized from ``seed``
    (a ``custom`` network that does not fit raises :class:`~trpo_tf.errors.NetworkError`)."""
    if custom is not None:
        return headed_network(custom, "value_network", feature_dim, 1, output_gain=1.0, seed=seed)
    model = mlp(hidden, 1, activation, output_gain=1.0, seed=seed, name="value_mlp")
    model.build((None, feature_dim))
    return model


# --------------------------------------------------------------------------- networks of the user's own

class HeadedNetwork(keras.Model):
    """The user's ``trunk`` (features [B, D] → hidden [B, H]) followed by the library's linear layer
    of ``outputs`` units (orthogonal initialization with ``output_gain`` from ``seed``, zero bias):
    [B, D] → [B, outputs]."""

    def __init__(self, trunk: keras.Model, outputs: int, output_gain: float, seed: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.trunk = trunk
        self.output_layer = keras.layers.Dense(outputs, name="output",
                                               kernel_initializer=keras.initializers.Orthogonal(output_gain, seed=seed))

    def call(self, features: tf.Tensor) -> tf.Tensor:
        return self.output_layer(self.trunk(features))


def headed_network(spec: NetworkSpec, role: str, feature_dim: int, outputs: int, output_gain: float,
                   seed: int) -> HeadedNetwork:
    """The trunk ``spec`` gives (checked by :func:`build_trunk`) with an output layer of ``outputs`` units, built.

    ``role`` ("policy_network" or "value_network") names the model and appears in errors;
    ``feature_dim`` is D; ``output_gain`` the output layer's orthogonal gain; ``seed`` initializes the
    output layer, and ``seed + 1`` the trunk. Raises :class:`~trpo_tf.errors.NetworkError` as
    :func:`build_trunk` does.
    """
    network = HeadedNetwork(build_trunk(spec, role, feature_dim, seed + 1), outputs, output_gain, seed, name=role)
    network(tf.zeros([1, feature_dim]))
    return network


def build_trunk(spec: NetworkSpec, role: str, feature_dim: int, seed: int) -> keras.Model:
    """The Keras model ``spec`` is or builds, checked to map features [B, D] (D = ``feature_dim``) to [B, H].

    A builder runs, and an unbuilt model is built, under ``seed`` (see :func:`seeded_initializers`).
    ``role`` ("policy_network" or "value_network") names it in errors. Raises
    :class:`~trpo_tf.errors.NetworkError` when ``spec`` is neither a model nor a callable, the
    builder raises or returns something else than a ``keras.Model``, the model does not accept
    float32 features [B, D], or its output is not one floating tensor [B, H].
    """
    with seeded_initializers(seed):
        trunk = _make_trunk(spec, role, feature_dim)
        probe = tf.zeros([2, feature_dim])
        try:
            hidden = trunk(probe)
        except Exception as error:  # noqa: BLE001 - Keras raises ValueError, TypeError, InvalidArgumentError, ...
            raise NetworkError(f"{role} ({trunk.name}) does not accept the policy's features, float32 "
                               f"[B, {feature_dim}]: {type(error).__name__}: {_first_line(error)}") from error
    if not tf.is_tensor(hidden):
        raise NetworkError(f"{role} ({trunk.name}) must output one tensor [B, H], got {type(hidden).__name__}")
    if hidden.shape.rank != 2 or hidden.shape[0] != 2 or not hidden.dtype.is_floating:
        raise NetworkError(f"{role} ({trunk.name}) maps features {list(probe.shape)} to {hidden.dtype.name}"
                           f"{hidden.shape.as_list()}; it must output floats [B, H] (rank 2, the batch first)")
    return trunk


@contextlib.contextmanager
def seeded_initializers(seed: int) -> Iterator[None]:
    """Within the block, Keras initializers made without a seed get seeds that follow from ``seed``.

    Keras draws such an initializer's seed from Python's ``random`` module when the layer is
    made (``keras.random.make_default_seed``); seeding that module around a builder makes the same
    agent seed give the same initial weights. The module's state is restored afterwards.
    """
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _make_trunk(spec: NetworkSpec, role: str, feature_dim: int) -> keras.Model:
    """``spec`` itself when it is a Keras model, else what the builder ``spec`` returns for D (checked)."""
    if isinstance(spec, keras.Model):
        return spec
    if callable(spec):
        try:
            trunk = spec(feature_dim)
        except Exception as error:  # noqa: BLE001 - any failure of the user's builder is named as such
            raise NetworkError(f"the {role} builder raised {type(error).__name__}: {_first_line(error)} (a builder "
                               f"takes the feature size D={feature_dim}, an int, and returns a keras.Model "
                               "mapping [B, D] to [B, H])") from error
        if not isinstance(trunk, keras.Model):
            raise NetworkError(f"the {role} builder returned {type(trunk).__name__}, not a keras.Model")
        return trunk
    raise NetworkError(f"{role} must be a keras.Model or a builder (feature size D -> keras.Model), "
                       f"got {type(spec).__name__}")


def check_separate(policy: keras.Model, value: keras.Model) -> None:
    """NetworkError when the policy and value networks share variables (layers or a trunk).

    A shared trunk would let the value fit move the policy after the trust-region step, outside
    the trust region; TRPO keeps them apart.
    """
    shared = shared_variables([policy], [value])
    if shared:
        raise NetworkError(f"policy_network and value_network share {shared}: give each its own "
                           "layers, since a shared trunk lets the value fit move the policy outside the trust region")


def shared_variables(ours: Sequence[keras.Model], theirs: Sequence[keras.Model]) -> str:
    """The variables of ``ours`` that are also in ``theirs``, as "N variable(s) (path, ...)"; "" when none."""
    their_ids = {id(variable) for model in theirs for variable in model.weights}
    shared = [variable.path for model in ours for variable in model.weights if id(variable) in their_ids]
    if not shared:
        return ""
    return f"{len(shared)} variable(s) ({', '.join(shared[:4])}{', ...' if len(shared) > 4 else ''})"


def network_record(network: keras.Model) -> dict[str, Any] | None:
    """How a run directory records a policy or value network, as plain JSON data.

    None for the built-in MLP; for a :class:`HeadedNetwork`, ``{"keras": config}`` with the
    trunk's Keras serialization (``keras.saving.serialize_keras_object``), or
    ``{"unsaved": reason}`` when Keras cannot serialize it.
    """
    if not isinstance(network, HeadedNetwork):
        return None
    try:
        return {"keras": json.loads(json.dumps(keras.saving.serialize_keras_object(network.trunk)))}
    except Exception as error:  # noqa: BLE001 - whatever stops serialization, the run records why
        return {"unsaved": f"{type(error).__name__}: {_first_line(error)}"}


def network_for_load(record: Any, given: NetworkSpec | None, role: str, run_dir: str) -> NetworkSpec | None:
    """The network spec :meth:`TRPO.load` builds ``role`` from: ``given``, else the run's ``record``
    (see :func:`network_record`) rebuilt by Keras, else None (the built-in MLP).

    ``role`` is "policy_network" or "value_network"; ``run_dir`` the run directory being loaded, named
    in the messages. NetworkError when the run used the built-in MLP but ``given`` is a network, or
    when the run's network cannot be rebuilt (then the message names the argument to pass).
    """
    if record is None:
        if given is not None:
            raise NetworkError(f"{run_dir} was trained with the built-in {role.split('_')[0]} MLP: "
                               f"do not pass {role}")
        return None
    if given is not None:
        return given
    remedy = (f"pass TRPO.load({run_dir!r}, {role}=...) the network it was trained with (the same builder)")
    if not isinstance(record, dict) or "keras" not in record:
        reason = record.get("unsaved") if isinstance(record, dict) else None
        raise NetworkError(f"{run_dir} was trained with a {role} that was not saved as a Keras config "
                           f"({reason or 'no config recorded'}): {remedy}")
    try:
        rebuilt = keras.saving.deserialize_keras_object(record["keras"])
    except Exception as error:  # noqa: BLE001 - unknown custom layers, unsafe lambdas, damaged configs
        cause = _root_cause(error)
        raise NetworkError(f"{run_dir} was trained with a {role} that Keras cannot rebuild from its saved config "
                           f"({type(cause).__name__}: {_first_line(cause).split('. ')[0]}): {remedy}, or register "
                           "its custom layers with @keras.saving.register_keras_serializable()") from None
    if not isinstance(rebuilt, keras.Model):
        raise NetworkError(f"{run_dir}: the saved {role} config rebuilds a {type(rebuilt).__name__}, not a "
                           f"keras.Model: {remedy}")
    return rebuilt


# --------------------------------------------------------------------------- the NumPy copy

def dense_arrays(model: keras.Model) -> list[DenseArrays] | None:
    """The weights of ``model``, a chain of Dense layers, as plain arrays and activation names, in call order.

    Each entry is ``(kernel [D_in, D_out], bias [D_out], activation name)`` (a zero bias for a layer
    without one). Nested models are read layer by layer and input layers skipped; None when a layer
    is not a Dense layer or has an activation without a NumPy version (see :func:`acts_in_numpy`,
    which also checks the layers are called one after the other).
    """
    layers: list[DenseArrays] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            nested = dense_arrays(layer)
            if nested is None:
                return None
            layers.extend(nested)
        elif isinstance(layer, keras.layers.InputLayer):
            continue
        elif isinstance(layer, keras.layers.Dense) and (activation := _activation_name(layer)) is not None:
            kernel = layer.kernel.numpy()
            bias = layer.bias.numpy() if layer.use_bias else np.zeros(kernel.shape[1], kernel.dtype)
            layers.append((kernel, bias, activation))
        else:
            return None
    return layers


def acts_in_numpy(model: keras.Model, feature_dim: int) -> bool:
    """Whether :func:`dense_arrays` of ``model`` computes what ``model`` does: its layers are Dense
    layers with NumPy activations, and the NumPy pass matches the Keras one on random features
    [3, D], D = ``feature_dim`` (which a model that calls a layer twice, skips one or adds its own
    arithmetic fails)."""
    layers = dense_arrays(model)
    if layers is None:
        return False
    features = np.random.default_rng(0).normal(size=(3, feature_dim)).astype(np.float32)
    try:
        numpy_outputs = numpy_forward(layers, features)
    except ValueError:  # kernels that do not chain
        return False
    keras_outputs = np.asarray(model(features))
    return numpy_outputs.shape == keras_outputs.shape and bool(
        np.allclose(numpy_outputs, keras_outputs, rtol=1e-4, atol=1e-5))


def _activation_name(layer: keras.layers.Dense) -> str | None:
    """The name of the layer's activation when :data:`NUMPY_ACTIVATIONS` has it, else None."""
    try:
        name = keras.activations.serialize(layer.activation)
    except Exception:  # noqa: BLE001 - an activation Keras cannot name has no NumPy version either
        return None
    return name if isinstance(name, str) and name in NUMPY_ACTIVATIONS else None


def _root_cause(error: BaseException) -> BaseException:
    """The first exception in the chain that led to ``error`` (Keras wraps the one that names the layer)."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return error


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.splitlines()[0].split())
