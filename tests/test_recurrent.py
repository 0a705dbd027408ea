"""Recurrent (LSTM, GRU) policies: the cells against Keras and a NumPy loop, the update's KL, H·v and
gradients through time against independent computations, sampling, resuming and exporting with state."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

import masked_envs
from trpo_tf import TRPO, trust_region
from trpo_tf.config import TRPOConfig
from trpo_tf.errors import ConfigError
from trpo_tf.export.rest import rest_predict
from trpo_tf.policies import recurrent as rnn
from trpo_tf.policies.policy import make_policy
from trpo_tf.sampling import InProcessSampler, make_vector_env
from trpo_tf.update import PolicyUpdate

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


# --------------------------------------------------------------------------- the update, against references


STEPS, ENVS, OBS = 6, 2, 2


def reference_step(xp, kind, weights, x, state):
    """One cell step written from the formulas (Hochreiter & Schmidhuber; Cho et al., reset-after form),
    in float64, with ``xp`` NumPy or tf.experimental.numpy."""
    kernel, recurrent_kernel, bias = weights["kernel"], weights["recurrent_kernel"], weights["bias"]
    units = recurrent_kernel.shape[0]
    sigmoid = lambda v: 1.0 / (1.0 + xp.exp(-v))  # noqa: E731
    if kind == "lstm":
        h, c = state[:, :units], state[:, units:]
        gates = xp.matmul(x, kernel) + xp.matmul(h, recurrent_kernel) + bias
        i, f, g, o = (gates[:, k * units:(k + 1) * units] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * xp.tanh(g)
        h = sigmoid(o) * xp.tanh(c)
        return h, xp.concatenate([h, c], axis=1)
    x_part = xp.matmul(x, kernel) + bias[0]
    h_part = xp.matmul(state, recurrent_kernel) + bias[1]
    z = sigmoid(x_part[:, :units] + h_part[:, :units])
    r = sigmoid(x_part[:, units:2 * units] + h_part[:, units:2 * units])
    h = z * state + (1.0 - z) * xp.tanh(x_part[:, 2 * units:] + r * h_part[:, 2 * units:])
    return h, h


def reference_outputs(xp, kind, weights, x, starts, initial, freeze=None, truncate=None):
    """Network outputs [T·N, P] over segments x [T, N, D] (no normalization: features as given), reset to zeros
    at ``starts`` [T, N]; with ``truncate``, the state entering every L-th step is ``freeze[t]`` instead."""
    state, outputs = initial, []
    for t in range(x.shape[0]):
        if truncate is not None and t % truncate == 0 and t > 0:
            state = freeze[t]
        state = state * (1.0 - starts[t][:, None].astype(np.float64))
        hidden, state = reference_step(xp, kind, weights, x[t], state)
        outputs.append(xp.matmul(hidden, weights["output_kernel"]) + weights["output_bias"])
    return xp.concatenate(outputs, axis=0)


def policy_weights(policy, as_array=lambda v: np.asarray(v, np.float64)):
    """The policy's weights by role (a policy with ``policy_hidden=()``: one output layer after the cell)."""
    cell, output = policy.cell, policy.network.layers[-1]
    return {"kernel": as_array(cell.kernel), "recurrent_kernel": as_array(cell.recurrent_kernel),
            "bias": as_array(cell.bias), "output_kernel": as_array(output.kernel), "output_bias": as_array(output.bias)}


@pytest.fixture(scope="module", params=KINDS)
def segments(request):
    """A tiny recurrent Discrete(3) policy (its weights moved off their initial values) and segments for it."""
    kind = request.param
    policy = make_policy(gym.spaces.Box(-5, 5, (OBS,), np.float32), gym.spaces.Discrete(3), (), "tanh", 0.0,
                         normalize_observations=False, seed=4, recurrent=kind, recurrent_units=3)
    rng = np.random.default_rng(5)
    for variable in policy.trainable_parameters():
        variable.assign(rng.normal(scale=0.6, size=variable.shape).astype(np.float32))
    x = rng.normal(size=(STEPS, ENVS, OBS)).astype(np.float32)
    starts = np.zeros((STEPS, ENVS), bool)
    starts[3, 0] = starts[1, 1] = True
    initial = rng.normal(scale=0.5, size=(ENVS, policy.state_size)).astype(np.float32)
    features = rnn.sequence_inputs(x.reshape(STEPS * ENVS, OBS), starts, initial)
    actions = rng.integers(0, 3, STEPS * ENVS).astype(np.int32)
    return kind, policy, x, starts, initial, features, actions


def log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def test_kl_after_a_step_equals_the_closed_form_over_the_sequence(segments):
    """The update's reported KL(π_old ‖ π_new) equals Σ p_old (log p_old − log p_new) of categorical
    distributions whose logits a float64 NumPy loop computes from the weights before and after the step."""
    kind, policy, x, starts, initial, features, actions = segments
    before = policy_weights(policy)
    saved = [v.numpy() for v in policy.trainable_parameters()]
    config = TRPOConfig(steps_per_iteration=STEPS * ENVS, n_envs=ENVS, recurrent=kind, recurrent_units=3,
                        max_kl=0.05, cg_iters=5)
    advantages = np.random.default_rng(6).normal(size=STEPS * ENVS).astype(np.float32)
    result = PolicyUpdate(policy, config)(features, actions, advantages)
    after = policy_weights(policy)
    for variable, value in zip(policy.trainable_parameters(), saved):
        variable.assign(value)
    assert bool(result["accepted"])
    old = log_softmax(reference_outputs(np, kind, before, x, starts, initial.astype(np.float64)))
    new = log_softmax(reference_outputs(np, kind, after, x, starts, initial.astype(np.float64)))
    closed_form = float(np.mean(np.sum(np.exp(old) * (old - new), axis=1)))
    assert closed_form > 1e-4  # the step moved the policy
    assert float(result["kl"]) == pytest.approx(closed_form, rel=2e-3)
    assert closed_form <= 0.05 * (1 + 1e-3)


def test_hessian_vector_product_equals_an_explicit_hessian(segments):
    """H·v of the mean KL at θ_old, by the update's double backward through the time loop, against the full
    Hessian of a float64 Python-unrolled reference (tf.GradientTape jacobians), times v."""
    kind, policy, x, starts, initial, features, actions = segments
    config = TRPOConfig(steps_per_iteration=STEPS * ENVS, n_envs=ENVS, recurrent=kind, recurrent_units=3)
    variables = policy.trainable_parameters()
    vector = np.random.default_rng(7).normal(size=int(trust_region.get_flat(variables).shape[0])).astype(np.float32)
    product = PolicyUpdate(policy, config).curvature_product(features)(tf.constant(vector)).numpy()

    tnp = tf.experimental.numpy
    flat = tf.Variable(tf.cast(trust_region.get_flat(variables), tf.float64))
    roles = {id(policy.cell.kernel.value): "kernel", id(policy.cell.recurrent_kernel.value): "recurrent_kernel",
             id(policy.cell.bias.value): "bias", id(policy.network.layers[-1].kernel.value): "output_kernel",
             id(policy.network.layers[-1].bias.value): "output_bias"}
    sizes = [int(np.prod(v.shape)) for v in variables]
    x64, initial64 = tf.constant(x, tf.float64), tf.constant(initial, tf.float64)
    old = tf.nn.log_softmax(reference_outputs(tnp, kind, policy_weights(policy, lambda v: tf.constant(
        np.asarray(v), tf.float64)), x64, starts, initial64))

    def mean_kl():
        pieces = tf.split(flat, sizes)
        weights = {roles[id(v)]: tf.reshape(p, v.shape) for v, p in zip(variables, pieces)}
        new = tf.nn.log_softmax(reference_outputs(tnp, kind, weights, x64, starts, initial64))
        return tf.reduce_mean(tf.reduce_sum(tf.exp(old) * (old - new), axis=1))

    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            kl = mean_kl()
        gradient = inner.gradient(kl, flat)
    hessian = outer.jacobian(gradient, flat).numpy()
    np.testing.assert_allclose(product, hessian @ vector.astype(np.float64), rtol=2e-3, atol=2e-5)


@pytest.mark.parametrize("truncate", [None, 2])
def test_gradient_through_time_equals_finite_differences(segments, truncate):
    """∇θ of the mean log-probability of the actions, through the time loop (and truncated to windows of 2
    steps), against central differences of a float64 NumPy loop (with the states entering each window held
    at their unperturbed values when truncated)."""
    kind, policy, x, starts, initial, features, actions = segments
    policy.truncate = truncate
    try:
        variables = policy.trainable_parameters()
        gradient = trust_region.flat_gradient(
            lambda: tf.reduce_mean(policy.distribution(features).log_prob(actions)), variables).numpy()
    finally:
        policy.truncate = None
    weights = policy_weights(policy)
    frozen = {}
    if truncate is not None:  # the unperturbed states entering each step
        state = initial.astype(np.float64)
        for t in range(STEPS):
            state = state * (1.0 - starts[t][:, None])
            frozen[t] = state
            _, state = reference_step(np, kind, weights, x[t], state)

    def objective(weights):
        logp = log_softmax(reference_outputs(np, kind, weights, x, starts, initial.astype(np.float64),
                                             frozen, truncate))
        return float(np.mean(logp[np.arange(len(actions)), actions]))

    roles = {id(policy.cell.kernel.value): "kernel", id(policy.cell.recurrent_kernel.value): "recurrent_kernel",
             id(policy.cell.bias.value): "bias", id(policy.network.layers[-1].kernel.value): "output_kernel",
             id(policy.network.layers[-1].bias.value): "output_bias"}
    numeric, epsilon = [], 1e-5
    for variable in variables:
        role = roles[id(variable)]
        for index in np.ndindex(*variable.shape):
            plus = {k: v.copy() for k, v in weights.items()}
            minus = {k: v.copy() for k, v in weights.items()}
            plus[role][index] += epsilon
            minus[role][index] -= epsilon
            numeric.append((objective(plus) - objective(minus)) / (2 * epsilon))
    np.testing.assert_allclose(gradient, numeric, rtol=1e-3, atol=1e-5)


# --------------------------------------------------------------------------- configuration and bad input


TINY = TRPOConfig(steps_per_iteration=32, n_envs=2, policy_hidden=(4,), value_hidden=(4,), recurrent="gru",
                  recurrent_units=4, value_batch_size=16, value_epochs=2, cg_iters=3)


@pytest.mark.parametrize("changes, message", [
    ({"hvp_method": "forward_over_backward"}, "TRPOConfig.recurrent='lstm' cannot use hvp_method='forward_over_backward'"),
    ({"hvp_method": "gauss_newton"}, "TRPOConfig.recurrent='lstm' cannot use hvp_method='gauss_newton'"),
    ({"fisher_fraction": 0.5}, "TRPOConfig.recurrent='lstm' cannot use fisher_fraction=0.5"),
    ({"recurrent_sequence_length": 3}, "TRPOConfig.recurrent_sequence_length (3) must divide"),
    ({"recurrent": "rnn"}, "TRPOConfig.recurrent must be one of"),
    ({"recurrent_units": 0}, "TRPOConfig.recurrent_units must be an integer >= 1"),
])
def test_recurrence_refuses_what_it_cannot_do(changes, message):
    with pytest.raises(ConfigError) as error:
        TRPOConfig(**dict({"recurrent": "lstm", "steps_per_iteration": 64}, **changes))
    assert message in str(error.value)


def test_default_curvature_method_follows_recurrence():
    assert TRPOConfig().curvature_method == "forward_over_backward"
    assert TRPOConfig(recurrent="gru").curvature_method == "double_backward"
    assert TRPOConfig(recurrent="lstm", recurrent_units=8).recurrent_state_size == 16
    assert TRPOConfig(recurrent="gru", recurrent_units=8).recurrent_state_size == 8


def test_action_masks_with_recurrence_are_refused_naming_both():
    with pytest.raises(ConfigError, match=r"TRPOConfig.recurrent='gru' cannot use the action masks .*action_masks='off'"):
        TRPO(masked_envs.make(), TINY.replace(n_envs=1), seed=0)


# --------------------------------------------------------------------------- sampling with states


def test_sampler_carries_states_across_batches_and_resets_them_at_episode_ends():
    """A NumPy replay of the first batch (the cell, the episodes' ends) gives the second batch's recorded
    first states; every episode start follows an end."""
    with TRPO("CartPole-v1", TINY.replace(recurrent="lstm"), seed=1) as agent:
        snapshot = agent.policy.snapshot()
        sampler = InProcessSampler(make_vector_env("CartPole-v1", 2), seed=3, rng=np.random.default_rng(0))
        first = sampler.collect(snapshot, 40)
        second = sampler.collect(snapshot, 5)
    done = first.terminated | first.truncated
    assert done.any()  # CartPole episodes end within 40 random-ish steps
    np.testing.assert_array_equal(first.episode_starts[0], [True, True])
    np.testing.assert_array_equal(first.episode_starts[1:], done[:-1])
    np.testing.assert_array_equal(second.episode_starts[0], done[-1])
    np.testing.assert_array_equal(first.recurrent_states, np.zeros((2, 8)))
    state = np.zeros((2, 8))
    for t in range(40):
        _, state = snapshot.cell.step(snapshot.features(first.observations[t]), state)
        state = np.where(done[t][:, None], 0.0, state)
    np.testing.assert_allclose(second.recurrent_states, state, rtol=1e-6, atol=1e-7)


def test_worker_processes_carry_each_environments_state():
    """Two worker processes, one environment each: the joined batch holds each environment's first state and
    episode starts, and the next batch's first states are a NumPy replay of the first batch."""
    with TRPO("CartPole-v1", TINY.replace(n_workers=2), seed=4) as agent:
        snapshot = agent.policy.snapshot()
        first = agent.sampler.collect(snapshot, 30)
        second = agent.sampler.collect(snapshot, 3)
    done = first.terminated | first.truncated
    assert first.recurrent_states.shape == (2, 4) and first.episode_starts.shape == (30, 2)
    np.testing.assert_array_equal(first.episode_starts[1:], done[:-1])
    state = first.recurrent_states.astype(np.float64)
    for t in range(30):
        state = np.where(first.episode_starts[t][:, None], 0.0, state)
        _, state = snapshot.cell.step(snapshot.features(first.observations[t]), state)
    state = np.where(done[-1][:, None], 0.0, state)
    np.testing.assert_allclose(second.recurrent_states, state, rtol=1e-6, atol=1e-7)


def test_snapshot_acts_in_a_process_without_tensorflow():
    with TRPO("CartPole-v1", TINY, seed=2) as agent:
        snapshot = agent.policy.snapshot()
        state = np.zeros((1, 4), np.float32)
        expected = snapshot.act_recurrent(np.ones((1, 4), np.float32), state, None)
    script = ("import pickle, sys, numpy as np; s = pickle.loads(sys.stdin.buffer.read()); "
              "a, _, h = s.act_recurrent(np.ones((1, 4), np.float32), np.zeros((1, 4), np.float32), None); "
              "assert 'tensorflow' not in sys.modules; print(int(a[0]), *h[0].tolist())")
    out = subprocess.run([sys.executable, "-c", script], input=pickle.dumps(snapshot), capture_output=True,
                         check=True).stdout.decode().split()
    assert int(out[0]) == int(expected[0][0])
    np.testing.assert_allclose([float(v) for v in out[1:]], expected[2][0], rtol=1e-6)


# --------------------------------------------------------------------------- training, resuming


def _history(agent):
    """The history without timings, NaN (no finished episode yet) as None so that equal entries compare equal."""
    return [{k: None if isinstance(v, float) and np.isnan(v) else v for k, v in entry.items()
             if "seconds" not in k and k != "fps"} for entry in agent.history]


def test_resumed_run_equals_the_uninterrupted_one(tmp_path):
    """Train 2 iterations, save, load, 1 more: the same history, weights and carried states as 3 in a row
    (the sampler's recurrent states and the value states are in the checkpoint)."""
    config = TINY.replace(recurrent_sequence_length=8)
    straight = TRPO("Pendulum-v1", config, seed=7).learn(2 * 32)
    assert np.abs(straight.sampler.recurrent_states).sum() > 0  # mid-episode states to carry over
    straight.save(str(tmp_path / "run"))  # saving changes nothing: the run goes on uninterrupted
    straight.learn(32)
    resumed = TRPO.load(str(tmp_path / "run"), resume=True)
    resumed.learn(32)
    try:
        assert _history(resumed) == _history(straight)
        for a, b in zip(straight.policy.weights + straight.value.weights, resumed.policy.weights + resumed.value.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(straight.sampler.recurrent_states, resumed.sampler.recurrent_states)
        np.testing.assert_array_equal(straight.value_states, resumed.value_states)
    finally:
        straight.close()
        resumed.close()


# --------------------------------------------------------------------------- acting, exporting with state


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny LSTM policy on CartPole after one iteration, exported (its metadata's evaluation: 2 episodes)."""
    agent = TRPO("CartPole-v1", TINY.replace(recurrent="lstm"), seed=3).learn(32)
    path = agent.export(str(tmp_path_factory.mktemp("export")), episodes=2)
    yield agent, path
    agent.close()


def observation_sequence(steps=4, batch=2):
    return np.random.default_rng(8).normal(size=(steps, batch, 4)).astype(np.float32)


def numpy_rollout(snapshot, observations, starts=None):
    """Deterministic actions and states of the NumPy snapshot along ``observations`` [T, B, 4]."""
    state, actions, states = np.zeros((observations.shape[1], snapshot.state_size), np.float32), [], []
    for t, batch in enumerate(observations):
        if starts is not None:
            state = np.where(starts[t][:, None], 0.0, state).astype(np.float32)
        action, _, state = snapshot.act_recurrent(batch, state, None)
        actions.append(action)
        states.append(state)
    return np.array(actions), np.array(states)


def test_savedmodel_steps_with_state_as_the_numpy_snapshot(exported):
    agent, path = exported
    model = tf.saved_model.load(path)
    observations = observation_sequence()
    expected_actions, expected_states = numpy_rollout(agent.policy.snapshot(), observations)
    state = model.signatures["initial_state"](batch_size=tf.constant(2))["state"]
    np.testing.assert_array_equal(state.numpy(), np.zeros((2, 8)))
    for t, batch in enumerate(observations):
        outputs = model.signatures["serving_default"](observation=tf.constant(batch), state=state)
        state = outputs["state"]
        np.testing.assert_array_equal(outputs["action"].numpy(), expected_actions[t])
        np.testing.assert_allclose(state.numpy(), expected_states[t], rtol=1e-5, atol=1e-6)
    value = model.signatures["value"](observation=tf.constant(observations[0]), state=tf.zeros([2, 8]))
    assert value["value"].shape == (2,) and value["state"].shape == (2, 8)
    metadata = json.load(open(os.path.join(path, "assets", "metadata.json")))
    assert metadata["recurrent"]["shape"] == [None, 8] and metadata["recurrent"]["cell"] == "lstm"
    assert metadata["evaluation"]["returns"] == agent.evaluate(episodes=2)["returns"]  # state carried and reset


def test_predict_takes_and_returns_the_state(exported):
    agent, _ = exported
    observations = observation_sequence(3)
    starts = np.array([[True, True], [False, False], [True, False]])
    expected_actions, expected_states = numpy_rollout(agent.policy.snapshot(), observations, starts)
    state = None
    for t, batch in enumerate(observations):
        actions, state = agent.predict(batch, state=state, episode_start=starts[t])
        np.testing.assert_array_equal(actions, expected_actions[t])
        np.testing.assert_allclose(state, expected_states[t], rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match=r"state must be float32 \[2, 8\]"):
        agent.predict(observations[0], state=np.zeros((2, 3)))


def test_tflite_and_onnx_carry_the_state_as_the_savedmodel(exported, tmp_path):
    agent, path = exported
    from trpo_tf.export import onnx, tflite
    observations = observation_sequence()
    expected_actions, expected_states = numpy_rollout(agent.policy.snapshot(), observations)
    run = tflite.litert_runner(tflite.to_tflite(path, str(tmp_path / "model.tflite")), "serving_default")
    state = tflite.litert_runner(str(tmp_path / "model.tflite"), "initial_state")(batch_size=2)["state"]
    for t, batch in enumerate(observations):
        outputs = run(batch, state=state)
        state = outputs["state"]
        np.testing.assert_array_equal(outputs["action"], expected_actions[t])
        np.testing.assert_allclose(state, expected_states[t], rtol=1e-5, atol=1e-5)
    pytest.importorskip("onnxruntime")
    import onnxruntime
    with pytest.warns(RuntimeWarning, match="CheckNumerics"):
        files = onnx.to_onnx(path, str(tmp_path / "onnx"), signatures=["serving_default"])
    session = onnxruntime.InferenceSession(files["serving_default"])
    state = np.zeros((2, 8), np.float32)
    for t, batch in enumerate(observations):
        action, state = session.run(["action", "next_state"], {"observation": batch, "state": state})
        np.testing.assert_array_equal(action, expected_actions[t])
        np.testing.assert_allclose(state, expected_states[t], rtol=1e-5, atol=1e-5)


def test_rest_client_carries_the_state(exported):
    agent, path = exported
    observations = observation_sequence(3, 1)
    expected_actions, expected_states = numpy_rollout(agent.policy.snapshot(), observations)
    state = json.loads(rest_predict(path, json.dumps({"signature_name": "initial_state",
                                                      "inputs": {"batch_size": 1}})))["outputs"][0]
    for t, batch in enumerate(observations):
        answer = json.loads(rest_predict(path, json.dumps(
            {"instances": [{"observation": batch[0].tolist(), "state": state}]})))["predictions"][0]
        state = answer["state"]
        assert answer["action"] == expected_actions[t][0]
        np.testing.assert_allclose(state, expected_states[t][0], rtol=1e-5, atol=1e-6)


def test_serve_recurrent_example_runs_with_tensorflow_alone(exported):
    agent, path = exported
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "serve_recurrent.py"), path,
                             "--episodes", "2"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    returns = agent.evaluate(episodes=2)["returns"]
    assert f"returns {[round(r, 2) for r in returns]}" in result.stdout


# --------------------------------------------------------------------------- every encoder and distribution

BOX = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
SPACES = {
    "vector-gaussian": (gym.spaces.Box(-5, 5, (3,), np.float32), BOX, "gaussian"),
    "vector-beta": (gym.spaces.Box(-5, 5, (3,), np.float32), BOX, "beta"),
    "discrete-multidiscrete": (gym.spaces.Discrete(5), gym.spaces.MultiDiscrete([3, 2]), "gaussian"),
    "dict-multibinary": (gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (2,), np.float32), "b": gym.spaces.Discrete(3)}),
                         gym.spaces.MultiBinary(3), "gaussian"),
    "image-categorical": (gym.spaces.Box(0, 255, (12, 12, 1), np.uint8), gym.spaces.Discrete(4), "gaussian"),
}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_encoder_and_distribution_acts_as_the_sequence_recomputes(name):
    """Acting step by step (the NumPy snapshot, or the compiled actor for a CNN) and the update's recompute
    over the whole segments (with an episode start) give the same deterministic actions."""
    observation_space, action_space, distribution = SPACES[name]
    policy = make_policy(observation_space, action_space, (4,), "tanh", 0.0, normalize_observations=True, seed=9,
                         action_distribution=distribution, recurrent="gru", recurrent_units=4)
    rng = np.random.default_rng(10)
    for variable in policy.trainable_parameters():  # outputs far from the initial near-zero ones
        variable.assign(rng.normal(scale=0.5, size=variable.shape).astype(np.float32))
    observation_space.seed(11)
    steps, envs = 4, 2
    samples = [[observation_space.sample() for _ in range(envs)] for _ in range(steps)]
    stack = (lambda rows: {k: np.array([r[k] for r in rows]) for k in rows[0]}) if isinstance(
        observation_space, gym.spaces.Dict) else np.array
    starts = np.array([[True, True], [False, False], [False, True], [False, False]])
    actor, state = policy.actor(), np.zeros((envs, 4), np.float32)
    stepped = []
    for t in range(steps):
        state = np.where(starts[t][:, None], 0.0, state).astype(np.float32)
        action, _, state = actor.act_recurrent(stack(samples[t]), state, None)
        stepped.append(action)
    flat = stack([row for rows in samples for row in rows])
    features = rnn.sequence_inputs(policy.features(flat), starts, np.zeros((envs, 4), np.float32))
    recomputed = policy.head.deterministic(policy.distribution_parameters(features)).numpy()
    np.testing.assert_allclose(np.concatenate(stepped), recomputed, rtol=1e-4, atol=1e-5)
