"""Networks of the user's own: training inside the trust region, acting, checkpoints, exports, refusals.

One Pendulum agent with a custom policy network (two Dense layers of different widths and a
LayerNormalization, so it acts through TensorFlow) and a custom Dense value network trains four
iterations for the module; its steps are checked against a KL computed here from the Gaussian
formula, its resumed twin against it, and its export in a process without trpo_tf.
"""

from __future__ import annotations

import json
import pickle

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

from test_checkpoint import _assert_same_history, _weights
from test_export import LOAD_SCRIPT, isolated_python
from trpo_tf import TRPO, TRPOConfig
from trpo_tf.errors import InputError, NetworkError, RunDirError
from trpo_tf.export import litert_runner, to_tflite
from trpo_tf.policies import make_policy

CONFIG = TRPOConfig(steps_per_iteration=64, n_envs=2, value_epochs=2, value_batch_size=32, max_kl=0.01)
ITERATIONS = 4
SEED = 5


def layer_norm_trunk(feature_dim: int) -> keras.Model:
    """[B, D] → [B, 12]: Dense 24 tanh, LayerNormalization, Dense 12 relu (no NumPy copy)."""
    return keras.Sequential([keras.Input((feature_dim,)), keras.layers.Dense(24, activation="tanh"),
                             keras.layers.LayerNormalization(), keras.layers.Dense(12, activation="relu")])


def dense_trunk(feature_dim: int) -> keras.Model:
    """[B, D] → [B, 6]: Dense 10 elu, Dense 6 sigmoid without bias (a functional model; acts in NumPy)."""
    features = keras.Input((feature_dim,))
    hidden = keras.layers.Dense(10, activation="elu")(features)
    return keras.Model(features, keras.layers.Dense(6, activation="sigmoid", use_bias=False)(hidden))


def gaussian_kl(mean_old, log_std_old, mean_new, log_std_new) -> float:
    """Mean over the batch of KL(N_old ‖ N_new) for diagonal Gaussians [B, A], summed over A."""
    var_old, var_new = np.exp(2 * log_std_old), np.exp(2 * log_std_new)
    per_dim = log_std_new - log_std_old + (var_old + (mean_old - mean_new) ** 2) / (2 * var_new) - 0.5
    return float(np.mean(np.sum(per_dim, axis=-1)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The module's agent after ITERATIONS iterations; per iteration the KL(old ‖ new) on its batch
    computed here (Gaussian parameters at the old and the new weights, from the features the step
    saw); and the run directory where it saved a checkpoint after iteration 2."""
    run = str(tmp_path_factory.mktemp("networks") / "run")
    agent = TRPO("Pendulum-v1", CONFIG, seed=SEED, policy_network=layer_norm_trunk, value_network=dense_trunk)
    batches = []
    collect = agent.sampler.collect

    def recording_collect(actor, steps):
        batches.append(collect(actor, steps))
        return batches[-1]

    agent.sampler.collect = recording_collect
    variables = agent.policy.trainable_parameters()
    kls = []
    for iteration in range(ITERATIONS):
        if iteration == 2:
            agent.save(run)
        old = [v.numpy() for v in variables]
        agent.iterate()
        new = [v.numpy() for v in variables]
        features = agent.policy.features(tf.constant(batches[-1].observations.reshape(-1, 3)))
        parameters = []
        for weights in (old, new):
            for variable, value in zip(variables, weights):
                variable.assign(value)
            parameters.append([p.numpy() for p in agent.policy.distribution_parameters(features)])
        kls.append(gaussian_kl(*parameters[0], *parameters[1]))
    agent.sampler.collect = collect
    yield agent, kls, run
    agent.close()


def test_a_custom_network_trains_inside_the_trust_region(trained):
    agent, kls, _ = trained
    assert isinstance(agent.policy.network.trunk.layers[1], keras.layers.LayerNormalization)
    assert not agent.policy.acts_in_numpy and agent.value.trunk.layers[-1].units == 6
    assert sum(entry["step_accepted"] for entry in agent.history) >= 2
    for entry, kl in zip(agent.history, kls):
        assert kl <= CONFIG.max_kl + 1e-7
        assert entry["kl"] == pytest.approx(kl, rel=1e-3, abs=1e-7)
        assert entry["surrogate_gain"] > 0 if entry["step_accepted"] else kl == 0.0


def test_checkpoint_load_continue_equals_an_uninterrupted_run(trained):
    """The checkpoint after two iterations, TRPO.load (the networks rebuilt from the Keras configs in
    run.json), two more iterations: the history and every weight equal the module agent's."""
    straight, _, run = trained
    with open(f"{run}/run.json", encoding="utf-8") as handle:
        recorded = json.load(handle)["networks"]
    assert [layer["class_name"] for layer in recorded["policy_network"]["keras"]["config"]["layers"]] == [
        "InputLayer", "Dense", "LayerNormalization", "Dense"]
    with TRPO.load(run, resume=True) as resumed:
        assert isinstance(resumed.policy.network.trunk.layers[1], keras.layers.LayerNormalization)
        resumed.learn(2 * CONFIG.steps_per_iteration)
        _assert_same_history(straight.history, resumed.history)
        for a, b in zip(_weights(straight), _weights(resumed)):
            np.testing.assert_array_equal(a, b)


def test_export_loads_with_tensorflow_alone_and_converts_to_tflite(trained, tmp_path):
    agent, _, _ = trained
    path = agent.export(str(tmp_path / "model"), episodes=1)
    observations = np.random.default_rng(0).uniform(-1.0, 1.0, size=(9, 3)).astype(np.float32)
    # Independently of the exported graph: NumPy normalization, the Keras network, the action bounds.
    normalizer = agent.policy.normalizer
    features = np.clip((observations - normalizer.mean.numpy()) / np.sqrt(normalizer.var.numpy() + 1e-8), -10, 10)
    expected = np.clip(agent.policy.network(features).numpy(), -2.0, 2.0)

    np.save(tmp_path / "obs.npy", observations)
    job = {"model": path, "observations": str(tmp_path / "obs.npy"), "actions": str(tmp_path / "actions.npy")}
    (tmp_path / "load.py").write_text(LOAD_SCRIPT)
    assert isolated_python(str(tmp_path / "load.py"), json.dumps([job]), cwd=str(tmp_path)).splitlines()[-1] == "[]"
    np.testing.assert_allclose(np.load(tmp_path / "actions.npy"), expected, atol=1e-5)

    lite = to_tflite(path, str(tmp_path / "model.tflite"), signatures=["serving_default"])
    np.testing.assert_allclose(litert_runner(lite)(observations)["action"], expected, atol=1e-4)


# --------------------------------------------------------------------------- acting

OBSERVATIONS = gym.spaces.Box(-np.inf, np.inf, shape=(5,))


def policy_with(trunk, action_space: gym.Space = gym.spaces.Box(-1.0, 1.0, shape=(2,))):
    """A policy with network ``trunk`` whose normalizer has seen data far from (0, 1); observations [7, 5]."""
    policy = make_policy(OBSERVATIONS, action_space, (8,), "tanh", init_log_std=-0.3, normalize_observations=True,
                         seed=1, network=trunk)
    rng = np.random.default_rng(3)
    policy.observe(rng.normal(loc=1.5, scale=2.0, size=(40, 5)))
    return policy, rng.normal(size=(7, 5)).astype(np.float32)


def test_a_dense_custom_network_acts_in_numpy_as_tensorflow_computes():
    policy, observations = policy_with(dense_trunk)
    assert policy.acts_in_numpy
    snapshot = pickle.loads(pickle.dumps(policy.snapshot()))
    # By hand: elu(x W1 + b1), sigmoid(· W2), then the library's linear output layer.
    x = policy.features(tf.constant(observations)).numpy()
    first, second = policy.network.trunk.layers[1:]
    h = x @ first.kernel.numpy() + first.bias.numpy()
    h = np.where(h > 0, h, np.exp(h) - 1)
    h = 1 / (1 + np.exp(-(h @ second.kernel.numpy())))
    by_hand = h @ policy.network.output_layer.kernel.numpy() + policy.network.output_layer.bias.numpy()
    deterministic, _ = snapshot.act(observations, None)
    np.testing.assert_allclose(deterministic, np.clip(by_hand, -1, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(deterministic, policy.deterministic_action(tf.constant(observations)).numpy(),
                               atol=1e-6)


def test_the_seed_fixes_the_initial_weights_of_a_builders_unseeded_layers():
    same, again, other = (make_policy(OBSERVATIONS, gym.spaces.Discrete(2), (8,), "tanh", 0.0, True, seed=seed,
                                      network=layer_norm_trunk).network.trunk.get_weights() for seed in (4, 4, 5))
    for a, b, c in zip(same, again, other):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(same[0], other[0])


def twice_applied(feature_dim: int) -> keras.Model:
    """One Dense layer called twice: only Dense layers, but not a chain the NumPy copy could run."""
    features = keras.Input((feature_dim,))
    layer = keras.layers.Dense(feature_dim, activation="tanh")
    return keras.Model(features, layer(layer(features)))


@pytest.mark.parametrize("trunk", [layer_norm_trunk, twice_applied])
def test_other_networks_act_through_one_compiled_call(trunk):
    policy, observations = policy_with(trunk, gym.spaces.Discrete(3))
    assert not policy.acts_in_numpy
    with pytest.raises(NetworkError, match="has no NumPy copy"):
        policy.snapshot()
    actor = policy.actor()
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(actor)
    deterministic, _ = actor.act(observations, None)
    np.testing.assert_array_equal(deterministic, policy.deterministic_action(tf.constant(observations)).numpy())
    # Sampled: the head's NumPy acting on the Keras outputs, with the same generator state.
    logits = policy.network(policy.features(tf.constant(observations))).numpy()
    expected = policy.head.action_distribution.act(logits, {}, np.random.default_rng(8))
    np.testing.assert_array_equal(actor.act(observations, np.random.default_rng(8))[1], expected)


# --------------------------------------------------------------------------- refusals

class Scale(keras.layers.Layer):
    """Multiplies by 2; not registered with Keras, so a saved config cannot be rebuilt."""

    def call(self, x):
        return 2.0 * x


def with_unregistered_layer(feature_dim: int) -> keras.Model:
    return keras.Sequential([keras.Input((feature_dim,)), keras.layers.Dense(8, activation="tanh"), Scale()])


def test_load_rebuilds_or_names_the_network_to_pass(tmp_path):
    with TRPO("CartPole-v1", CONFIG, seed=1, policy_network=with_unregistered_layer) as agent:
        agent.save(str(tmp_path / "custom"))
        weights = [v.numpy() for v in agent.policy.weights]
    with pytest.raises(NetworkError, match=r"policy_network that Keras cannot rebuild .*Scale.*: pass "
                                           r"TRPO.load\('.*custom', policy_network=\.\.\.\)"):
        TRPO.load(str(tmp_path / "custom"))
    with TRPO.load(str(tmp_path / "custom"), policy_network=with_unregistered_layer) as loaded:
        for a, b in zip(weights, [v.numpy() for v in loaded.policy.weights]):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(RunDirError, match="cannot be restored .*or other networks of your own"):
        TRPO.load(str(tmp_path / "custom"), policy_network=dense_trunk)
    with TRPO("CartPole-v1", CONFIG, seed=1) as builtin:
        builtin.save(str(tmp_path / "builtin"))
    with pytest.raises(NetworkError, match="trained with the built-in value MLP: do not pass value_network"):
        TRPO.load(str(tmp_path / "builtin"), value_network=dense_trunk)


def raising(feature_dim: int) -> keras.Model:
    raise RuntimeError("no GPU here")


def one_trunk_for_both() -> dict[str, keras.Model]:
    trunk = layer_norm_trunk(4)
    return {"policy_network": trunk, "value_network": trunk}


REFUSALS = {  # name: (TRPO arguments, or a function making them; the error message)
    "builder raises": ({"policy_network": raising},
                       "the policy_network builder raised RuntimeError: no GPU here .*feature size D=4"),
    "builder returns a layer": ({"value_network": lambda d: keras.layers.Dense(8)},
                                "the value_network builder returned Dense, not a keras.Model"),
    "neither model nor builder": ({"policy_network": "mlp"},
                                  "policy_network must be a keras.Model or a builder .*got str"),
    "input of another size": ({"policy_network": lambda d: layer_norm_trunk(d + 3)},
                              r"policy_network \(sequential.*\) does not accept the policy's features, float32 \[B, 4\]"),
    "output of rank 3": ({"value_network": lambda d: keras.Sequential([keras.Input((d,)), keras.layers.Dense(6),
                                                                       keras.layers.Reshape((2, 3))])},
                         r"value_network .* maps features \[2, 4\] to float32\[2, 2, 3\]; it must output floats \[B, H\]"),
    "shared trunk": (one_trunk_for_both,
                     r"policy_network and value_network share 6 variable\(s\) .*outside the trust region"),
    "workers": ({"policy_network": layer_norm_trunk, "config": CONFIG.replace(n_workers=2)},
                "acts through TensorFlow, which sampling workers do not run: use n_workers=1"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_bad_networks_are_refused_before_training(name):
    arguments, message = REFUSALS[name]
    arguments = dict(arguments() if callable(arguments) else arguments)
    config = arguments.pop("config", CONFIG)
    with pytest.raises(NetworkError, match=message) as caught:
        TRPO("CartPole-v1", config, seed=0, **arguments)
    assert isinstance(caught.value, InputError) and "\n" not in str(caught.value)


def test_one_model_trains_in_one_open_agent_at_a_time():
    """Two agents given the same keras.Model would both move its weights; the second is refused
    until the first is closed, and a builder gives each agent a model of its own."""
    trunk = layer_norm_trunk(4)
    first = TRPO("CartPole-v1", CONFIG, seed=0, policy_network=trunk)
    with pytest.raises(NetworkError, match=r"already in another TRPO agent, which is not closed \(they would "
                                           r"share 6 variable\(s\) \(.*\)\): give each agent .*clone_model\(model\), or close\(\) the other"):
        TRPO("CartPole-v1", CONFIG, seed=1, value_network=trunk)
    with TRPO("CartPole-v1", CONFIG, seed=1, policy_network=layer_norm_trunk, value_network=layer_norm_trunk):
        pass  # builders: models of its own, beside the open first agent
    before = [w.numpy().copy() for w in trunk.weights]
    first.close()
    with TRPO("CartPole-v1", CONFIG, seed=1, policy_network=trunk) as second:
        second.learn(CONFIG.steps_per_iteration)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, trunk.weights))  # the second trained it
