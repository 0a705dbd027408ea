"""Distributions, NumPy forward passes and observation statistics against independent computations."""

import pickle

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from trpo_tf.normalization import ObservationNormalizer, RewardScaler
from trpo_tf.policies import (make_encoder, UnsupportedSpaceError, action_head, kl_divergence, make_policy,
                              numpy_forward)

SPACES = {
    "box": gym.spaces.Box(-1.0, 1.0, shape=(3,)),
    "discrete": gym.spaces.Discrete(4),
    "multidiscrete": gym.spaces.MultiDiscrete([3, 2, 4]),
    "multibinary": gym.spaces.MultiBinary(3),
}


def random_parameters(head, rng, batch):
    """Random distribution parameters η for ``head``: outputs [B, param_size] (and a log-std for a Gaussian)."""
    outputs = tf.constant(rng.normal(size=(batch, head.param_size)), tf.float32)
    own = [tf.constant(rng.normal(scale=0.3, size=head.param_size), tf.float32)] if head.trainable_weights else []
    return [outputs] + own


def random_distributions(space, rng, batch=4):
    """Two distributions (old, new) of ``space``'s head at random parameters."""
    head = action_head(space)
    return head, [head.distribution(random_parameters(head, rng, batch)) for _ in range(2)]


@pytest.mark.parametrize("kind", sorted(SPACES))
def test_kl_matches_monte_carlo_estimate(kind):
    """KL(old ‖ new) = E_old[log old(a) − log new(a)], estimated from 200k samples of old."""
    _, (old, new) = random_distributions(SPACES[kind], np.random.default_rng(0))
    old_tfp, new_tfp = getattr(old, "inner", old), getattr(new, "inner", new)
    samples = old_tfp.sample(200_000, seed=1)  # [S, B, ...]
    estimate = tf.reduce_mean(old_tfp.log_prob(samples) - new_tfp.log_prob(samples), axis=0)
    exact = kl_divergence(old, new)
    np.testing.assert_allclose(exact.numpy(), estimate.numpy(), rtol=0.05, atol=5e-3)
    assert np.all(exact.numpy() > 0)


@pytest.mark.parametrize("kind", sorted(SPACES))
def test_numpy_sampling_matches_tfp_probabilities(kind):
    """Frequencies (or moments) of the NumPy sampler agree with the TFP distribution."""
    rng = np.random.default_rng(1)
    head = action_head(SPACES[kind], init_log_std=-0.4)
    outputs = rng.normal(size=(1, head.param_size)).astype(np.float32)
    samples = head.action_distribution.act(np.repeat(outputs, 50_000, axis=0), head.free_arrays(), rng)
    distribution = head.distribution(head.distribution_parameters(tf.constant(outputs)))
    log_std = np.full(head.param_size, -0.4, np.float32)
    if kind == "box":
        np.testing.assert_allclose(samples.mean(0), outputs[0], atol=0.03)
        np.testing.assert_allclose(samples.std(0), np.exp(log_std), rtol=0.03)
        return
    # Every distinct sampled action's frequency against exp(log_prob).
    values, counts = np.unique(samples.reshape(len(samples), -1), axis=0, return_counts=True)
    shaped = values.reshape((len(values),) + head.action_shape).astype(np.int32)
    probabilities = np.exp(distribution.log_prob(tf.constant(shaped)).numpy() if kind != "discrete"
                           else [distribution.log_prob(int(v)).numpy()[0] for v in shaped])
    np.testing.assert_allclose(counts / len(samples), probabilities.reshape(-1), atol=0.01)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("kind", sorted(SPACES))
def test_numpy_snapshot_matches_keras_policy_and_survives_pickling(kind):
    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(5,))
    policy = make_policy(observation_space, SPACES[kind], (8, 7), "tanh", init_log_std=0.0,
                         normalize_observations=True, seed=3)
    rng = np.random.default_rng(2)
    policy.observe(rng.normal(loc=2.0, scale=3.0, size=(50, 5)))
    observations = rng.normal(size=(10, 5)).astype(np.float32)
    snapshot = pickle.loads(pickle.dumps(policy.snapshot()))
    features = policy.features(tf.constant(observations))
    # The network by hand: tanh(x W1 + b1), tanh(· W2 + b2), · W3 + b3 from the Keras weights.
    x = features.numpy()
    for layer in policy.network.layers:
        x = x @ layer.kernel.numpy() + layer.bias.numpy()
        x = np.tanh(x) if layer.name != "output" else x
    np.testing.assert_allclose(numpy_forward(snapshot.layers, snapshot.features(observations)), x,
                               rtol=1e-5, atol=1e-6)
    deterministic, _ = snapshot.act(observations, None)
    np.testing.assert_allclose(deterministic, policy.deterministic_action(tf.constant(observations)).numpy(),
                               atol=1e-6)


def test_gaussian_actions_are_clipped_for_the_environment_only():
    head = action_head(gym.spaces.Box(-1.0, 2.0, shape=(2,)))
    stored = np.array([[-5.0, 5.0], [0.5, 1.5]], np.float32)
    np.testing.assert_allclose(head.action_distribution.to_env(stored), [[-1.0, 2.0], [0.5, 1.5]])
    assert stored[0, 0] == -5.0


def test_discrete_start_offsets_reach_the_environment():
    head = action_head(gym.spaces.Discrete(3, start=-1))
    assert head.action_distribution.to_env(np.array([0, 2])).tolist() == [-1, 1]
    multi = action_head(gym.spaces.MultiDiscrete([2, 3], start=[1, 5]))
    assert multi.action_distribution.to_env(np.array([[1, 2]])).tolist() == [[2, 7]]


def test_the_gaussian_head_owns_its_log_std_and_the_policy_steps_it():
    policy = make_policy(gym.spaces.Box(-1, 1, shape=(3,)), gym.spaces.Box(-1, 1, shape=(2,)), (4,), "tanh",
                         init_log_std=-0.5, normalize_observations=True, seed=0)
    log_std = policy.head.log_std
    np.testing.assert_array_equal(log_std.numpy(), [-0.5, -0.5])
    assert any(v is log_std.value for v in policy.trainable_parameters())
    assert sum(int(np.prod(v.shape)) for v in policy.trainable_parameters()) == 3 * 4 + 4 + 4 * 2 + 2 + 2


def test_normalizer_matches_statistics_of_all_data():
    rng = np.random.default_rng(3)
    data = rng.normal(loc=[1.0, -2.0, 5.0], scale=[0.5, 3.0, 10.0], size=(1000, 3)).astype(np.float32)
    normalizer = ObservationNormalizer(3)
    for chunk in np.array_split(data, 7):
        normalizer.update(chunk)
    np.testing.assert_allclose(normalizer.mean.numpy(), data.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(normalizer.var.numpy(), data.var(0), rtol=1e-4)
    expected = np.clip((data - data.mean(0)) / np.sqrt(data.var(0) + 1e-8), -10, 10)
    np.testing.assert_allclose(normalizer(data).numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(normalizer.numpy_normalize()(data), expected, rtol=1e-4, atol=1e-4)


def test_observation_encoder_flattens_boxes_and_one_hots_discrete():
    box = make_encoder(gym.spaces.Box(0, 1, shape=(2, 3)))
    observations = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    assert box.dim == 6
    np.testing.assert_array_equal(box.numpy(observations), observations.reshape(2, 6))
    np.testing.assert_array_equal(box.tensorflow(tf.constant(observations)).numpy(), observations.reshape(2, 6))
    discrete = make_encoder(gym.spaces.Discrete(4, start=1))
    np.testing.assert_array_equal(discrete.numpy(np.array([1, 4])), [[1, 0, 0, 0], [0, 0, 0, 1]])
    with pytest.raises(ValueError, match=r"expected \[batch, 2, 3\]"):
        box.check(np.zeros((4, 5)))


def test_unsupported_spaces_are_named():
    with pytest.raises(UnsupportedSpaceError, match="Tuple.*supports Box, Discrete, MultiDiscrete and MultiBinary"):
        action_head(gym.spaces.Tuple([gym.spaces.Discrete(2)]))
    with pytest.raises(UnsupportedSpaceError, match="Tuple.*supports Box .*Discrete"):
        make_encoder(gym.spaces.Tuple([gym.spaces.Discrete(2)]))


def test_reward_scaler_divides_by_std_of_discounted_returns_across_batches():
    rng = np.random.default_rng(4)
    rewards = rng.normal(2.0, 3.0, size=(60, 3)).astype(np.float32)
    ended = rng.random((60, 3)) < 0.1
    scaler = RewardScaler(n_envs=3, gamma=0.9)
    first, second = scaler.scale(rewards[:25], ended[:25]), scaler.scale(rewards[25:], ended[25:])
    # Reference: discounted returns per environment, one step at a time, over the whole stream.
    returns = np.zeros((60, 3))
    for n in range(3):
        running = 0.0
        for t in range(60):
            running = 0.9 * running + rewards[t, n]
            returns[t, n] = running
            running = 0.0 if ended[t, n] else running
    np.testing.assert_allclose(second, rewards[25:] / np.sqrt(returns.var() + 1e-8), rtol=1e-4)
    np.testing.assert_allclose(first, rewards[:25] / np.sqrt(returns[:25].var() + 1e-8), rtol=1e-4)
