"""Recurrent (LSTM, GRU) policies: the cells against Keras and a NumPy loop, the update's KL, H·v and
gradients through time against independent computations, sampling, resuming and exporting with state."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from trpo_tf.policies import recurrent as rnn

KINDS = ("lstm", "gru")
UNITS, FEATURES = 5, 3


@pytest.fixture(scope="module", params=KINDS)
def cell(request):
    kind = request.param
    keras_cell = rnn.keras_cell(kind, UNITS, FEATURES, seed=1, name=f"test_{kind}")
    rng = np.random.default_rng(0)
    for weight in keras_cell.weights:  # biases away from their initial zeros and ones
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype(np.float32))
    return kind, keras_cell


def keras_states(kind, state):
    """Our flat state [B, S] as the Keras cell's list of states."""
    return [state[:, :UNITS], state[:, UNITS:]] if kind == "lstm" else [state]


def test_numpy_cell_equals_keras_cell(cell):
    kind, keras_cell = cell
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, FEATURES)).astype(np.float32)
    state = rng.normal(size=(6, rnn.state_size(kind, UNITS))).astype(np.float32)
    expected, expected_states = keras_cell(x, keras_states(kind, state))
    hidden, new_state = rnn.numpy_cell(kind, keras_cell).step(x, state)
    np.testing.assert_allclose(hidden, expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state, np.concatenate([s.numpy() for s in expected_states], 1), rtol=1e-5, atol=1e-6)
    tf_hidden, tf_state = rnn.single_step(kind, keras_cell, tf.constant(x), tf.constant(state))
    np.testing.assert_allclose(tf_hidden, expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tf_state, new_state, rtol=1e-5, atol=1e-6)


def test_sequence_equals_a_numpy_loop_with_resets(cell):
    kind, keras_cell = cell
    steps, envs, size = 7, 3, rnn.state_size(kind, UNITS)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(steps, envs, FEATURES)).astype(np.float32)
    starts = rng.random((steps, envs)) < 0.3
    initial = rng.normal(size=(envs, size)).astype(np.float32)
    numpy_cell = rnn.numpy_cell(kind, keras_cell)
    state, outputs, states = initial.copy(), [], []
    for t in range(steps):
        state = np.where(starts[t][:, None], 0.0, state).astype(np.float32)
        hidden, state = numpy_cell.step(x[t], state)
        outputs.append(hidden)
        states.append(state)
    got, got_states = tf.function(lambda *a: rnn.run_sequence(kind, keras_cell, *a), jit_compile=True)(
        tf.constant(x), tf.constant(starts), tf.constant(initial))
    np.testing.assert_allclose(got, np.stack(outputs), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_states, np.stack(states), rtol=1e-5, atol=1e-5)
