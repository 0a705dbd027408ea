"""Recurrent cells (LSTM, GRU) that wrap any encoder: its NumPy side and its TensorFlow side together.

A recurrent policy reads features [B, F] (normalized features, or a CNN trunk's output) through a
cell of U units that carries a state [B, S] from step to step, then its MLP and head. The cell's
weights live in a Keras ``LSTMCell`` or ``GRUCell`` (:func:`keras_cell`: Keras owns, initializes,
checkpoints and exports them); the arithmetic is written out here twice, once in NumPy
(:class:`NumpyCell`, for acting without TensorFlow in any process) and once in TensorFlow
(:func:`tf_step`, :func:`run_sequence`, which reads the weights once, outside the time loop, so
reverse-over-reverse autodiff goes through it). Both follow Keras' own cells, gate for gate.

The whole state of one environment is one float32 vector of S entries:

- LSTM (Hochreiter & Schmidhuber, 1997, with forget gates, Gers et al., 2000): S = 2·U, ``[h, c]``
  concatenated. Gates i, f, g, o = split(x W + h R + b); c' = σ(f)·c + σ(i)·tanh(g); h' = σ(o)·tanh(c').
- GRU (Cho et al., 2014; Keras' ``reset_after=True`` form): S = U, ``h``. z, r = σ(x W_zr + b_zr + h R_zr
  + b'_zr); ĥ = tanh(x W_h + b_h + r·(h R_h + b'_h)); h' = z·h + (1 − z)·ĥ.

The cell's output is h' [B, U]. A new episode starts from the zero state. Nothing here imports
TensorFlow at import time: the TensorFlow functions import it when called.

Shapes: B is the batch size (environments when acting), F the feature size, U the units, S the
state size, T the steps of a segment, N the environments.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

KINDS = ("lstm", "gru")


def state_size(kind: str, units: int) -> int:
    """S for a cell of ``kind`` ("lstm" or "gru") with ``units`` U: 2·U for an LSTM ([h, c]), U for a GRU."""
    if kind not in KINDS:
        raise ValueError(f"recurrent cell must be one of {KINDS}, got {kind!r}")
    return 2 * units if kind == "lstm" else units


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclasses.dataclass(frozen=True)
class NumpyCell:
    """The cell frozen as plain float32 arrays: one step in NumPy, without TensorFlow (picklable).

    ``kernel`` [F, G·U], ``recurrent_kernel`` [U, G·U] (G = 4 gates for an LSTM, 3 for a GRU),
    ``bias`` [G·U] (the input bias), ``recurrent_bias`` [G·U] (a GRU's second bias; zeros for an LSTM).
    """

    kind: str
    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: np.ndarray
    recurrent_bias: np.ndarray

    @property
    def units(self) -> int:
        """U, the cell's width."""
        return int(self.recurrent_kernel.shape[0])

    @property
    def state_size(self) -> int:
        """S, the width of the state this cell carries."""
        return state_size(self.kind, self.units)

    def initial_state(self, batch: int) -> np.ndarray:
        """The state of ``batch`` environments starting an episode: zeros [batch, S], float32."""
        return np.zeros((batch, self.state_size), np.float32)

    def step(self, features: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step: ``features`` [B, F] and ``state`` [B, S] → (outputs h' [B, U], new states [B, S]), float32."""
        features = np.asarray(features, np.float32)
        state = np.asarray(state, np.float32)
        units = self.units
        projected = features @ self.kernel + self.bias
        if self.kind == "lstm":
            h, c = state[:, :units], state[:, units:]
            gates = projected + h @ self.recurrent_kernel
            i, f, g, o = (gates[:, k * units:(k + 1) * units] for k in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
            return h, np.concatenate([h, c], axis=1)
        h = state
        recurrent = h @ self.recurrent_kernel + self.recurrent_bias
        z = _sigmoid(projected[:, :units] + recurrent[:, :units])
        r = _sigmoid(projected[:, units:2 * units] + recurrent[:, units:2 * units])
        candidate = np.tanh(projected[:, 2 * units:] + r * recurrent[:, 2 * units:])
        h = z * h + (1.0 - z) * candidate
        return h, h


# --------------------------------------------------------------------------- TensorFlow


def keras_cell(kind: str, units: int, feature_dim: int, seed: int, name: str) -> "keras.layers.Layer":
    """A built Keras ``LSTMCell`` or ``GRUCell`` (``kind``) of ``units`` U on ``feature_dim`` F inputs, named
    ``name``: the owner of the cell's weights (orthogonal recurrent kernel, Glorot kernel, both seeded
    from ``seed``; the LSTM's forget-gate bias starts at 1, as Keras does)."""
    import keras

    initializers = {"kernel_initializer": keras.initializers.GlorotUniform(seed=seed),
                    "recurrent_initializer": keras.initializers.Orthogonal(seed=seed + 1)}
    cell = (keras.layers.LSTMCell(units, name=name, **initializers) if kind == "lstm"
            else keras.layers.GRUCell(units, name=name, reset_after=True, **initializers))
    cell.build((None, feature_dim))
    return cell


def cell_weights(cell: "keras.layers.Layer") -> list["tf.Tensor"]:
    """The cell's weights as tensors, read once: [kernel [F, G·U], recurrent kernel [U, G·U], input bias [G·U],
    recurrent bias [G·U] (zeros for an LSTM)]."""
    import tensorflow as tf

    kernel, recurrent_kernel = tf.convert_to_tensor(cell.kernel), tf.convert_to_tensor(cell.recurrent_kernel)
    bias = tf.convert_to_tensor(cell.bias)
    if bias.shape.rank == 2:  # a GRU's [2, 3U]: input bias, recurrent bias
        return [kernel, recurrent_kernel, bias[0], bias[1]]
    return [kernel, recurrent_kernel, bias, tf.zeros_like(bias)]


def numpy_cell(kind: str, cell: "keras.layers.Layer") -> NumpyCell:
    """The Keras ``cell`` (of ``kind``) frozen as a :class:`NumpyCell`."""
    kernel, recurrent_kernel, bias, recurrent_bias = (np.asarray(w, np.float32) for w in cell_weights(cell))
    return NumpyCell(kind, kernel, recurrent_kernel, bias, recurrent_bias)


def tf_step(kind: str, weights: Sequence["tf.Tensor"], projected: "tf.Tensor",
            state: "tf.Tensor") -> tuple["tf.Tensor", "tf.Tensor"]:
    """One step in TensorFlow of a cell of ``kind`` ("lstm" or "gru"), as :meth:`NumpyCell.step` computes it.

    ``weights``: :func:`cell_weights`; ``projected``: the input's projection x W + b [B, G·U] (computed
    for a whole sequence at once by :func:`run_sequence`); ``state`` [B, S]. Returns (h' [B, U], new state [B, S]).
    """
    import tensorflow as tf

    _, recurrent_kernel, _, recurrent_bias = weights
    units = recurrent_kernel.shape[0]
    if kind == "lstm":
        h, c = state[:, :units], state[:, units:]
        i, f, g, o = tf.split(projected + tf.matmul(h, recurrent_kernel), 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, tf.concat([h, c], axis=1)
    recurrent = tf.matmul(state, recurrent_kernel) + recurrent_bias
    x_z, x_r, x_h = tf.split(projected, 3, axis=1)
    r_z, r_r, r_h = tf.split(recurrent, 3, axis=1)
    z, r = tf.sigmoid(x_z + r_z), tf.sigmoid(x_r + r_r)
    h = z * state + (1.0 - z) * tf.tanh(x_h + r * r_h)
    return h, h


def single_step(kind: str, cell: "keras.layers.Layer", features: "tf.Tensor",
                state: "tf.Tensor") -> tuple["tf.Tensor", "tf.Tensor"]:
    """One step of the Keras ``cell`` (of ``kind``): ``features`` [B, F], ``state`` [B, S] → (h' [B, U], states [B, S])."""
    import tensorflow as tf

    weights = cell_weights(cell)
    return tf_step(kind, weights, tf.matmul(features, weights[0]) + weights[2], state)


def run_sequence(kind: str, cell: "keras.layers.Layer", features: "tf.Tensor", episode_starts: "tf.Tensor",
                 initial_state: "tf.Tensor", truncate: int | None = None) -> tuple["tf.Tensor", "tf.Tensor"]:
    """The cell over N environments' segments of T steps, time first, in one ``tf.while_loop``.

    Args:
        kind: "lstm" or "gru".
        cell: the Keras cell holding the weights.
        features: [T, N, F], what each environment's cell reads at each step.
        episode_starts: [T, N] bool: True where step t begins a new episode of environment n; the state
            is reset to zeros before that step.
        initial_state: [N, S], each environment's state before step 0.
        truncate: L, or None: gradients stop at the state entering every L-th step (truncated
            backpropagation through time, windows of L steps); the values are unchanged.

    Returns:
        (outputs h'_t [T, N, U], states after each step [T, N, S]).
    """
    import tensorflow as tf

    weights = cell_weights(cell)
    units = int(weights[1].shape[0])
    size = state_size(kind, units)
    steps = tf.shape(features)[0]
    projected = tf.einsum("tnf,fg->tng", features, weights[0]) + weights[2]  # x W + b for every step at once
    keep = 1.0 - tf.cast(episode_starts, tf.float32)[:, :, None]  # [T, N, 1]
    initial_state = tf.reshape(tf.convert_to_tensor(initial_state, tf.float32), [-1, size])
    outputs = tf.TensorArray(tf.float32, size=steps, element_shape=tf.TensorShape([None, units]))
    states = tf.TensorArray(tf.float32, size=steps, element_shape=tf.TensorShape([None, size]))

    def body(t: tf.Tensor, state: tf.Tensor, outputs: tf.TensorArray,
             states: tf.TensorArray) -> tuple[Any, ...]:
        if truncate is not None:
            state = tf.where(tf.equal(t % truncate, 0), tf.stop_gradient(state), state)
        hidden, state = tf_step(kind, weights, projected[t], state * keep[t])
        return t + 1, state, outputs.write(t, hidden), states.write(t, state)

    _, _, outputs, states = tf.while_loop(lambda t, *_: t < steps, body,
                                          (tf.constant(0), initial_state, outputs, states),
                                          maximum_iterations=steps)
    outputs, states = outputs.stack(), states.stack()
    return outputs, states


def next_states(states: np.ndarray, done: np.ndarray) -> np.ndarray:
    """The states each environment continues from: ``states`` [N, S] zeroed where ``done`` [N] (an episode ended)."""
    return np.where(np.asarray(done, bool)[:, None], np.float32(0.0), states).astype(np.float32)


def sequence_inputs(inputs: Any, episode_starts: Any, state: Any) -> dict[str, Any]:
    """What a recurrent model reads for a batch of segments: model ``inputs`` [T·N, ...] (time-major, as
    a batch flattens [T, N]), ``episode_starts`` [T, N] bool and ``state``, the segments' first states [N, S]."""
    return {"inputs": inputs, "episode_starts": episode_starts, "state": state}


def sequence_outputs(kind: str, cell: "keras.layers.Layer", network: Any, encode: Any, features: dict[str, Any],
                     truncate: int | None = None) -> tuple["tf.Tensor", "tf.Tensor"]:
    """A recurrent model over segments: ``encode`` (model inputs → [T·N, F]: identity, or a CNN trunk), the
    ``cell`` (of ``kind``) over time, then ``network`` ([T·N, U] → [T·N, O]).

    ``features``: :func:`sequence_inputs` (model inputs [T·N, ...] time-major, ``episode_starts`` [T, N],
    ``state`` [N, S]); ``truncate``: as :func:`run_sequence`. Returns (outputs [T·N, O], states after each
    step [T, N, S]).
    """
    import tensorflow as tf

    encoded = encode(features["inputs"])
    starts = tf.convert_to_tensor(features["episode_starts"], tf.bool)
    shape = tf.shape(starts)
    sequence = tf.reshape(encoded, tf.stack([shape[0], shape[1], encoded.shape[-1]]))
    hidden, states = run_sequence(kind, cell, sequence, starts, features["state"], truncate)
    return network(tf.reshape(hidden, [-1, hidden.shape[-1]])), states


def step_outputs(kind: str, cell: "keras.layers.Layer", network: Any, encode: Any, inputs: Any,
                 state: "tf.Tensor") -> tuple["tf.Tensor", "tf.Tensor"]:
    """One step of a recurrent model: model ``inputs`` [B, ...] and ``state`` [B, S] → (``network`` outputs [B, O],
    new states [B, S]); ``kind``, ``encode`` and ``cell`` as in :func:`sequence_outputs`."""
    import tensorflow as tf

    hidden, state = single_step(kind, cell, encode(inputs), tf.convert_to_tensor(state, tf.float32))
    return network(hidden), state
