"""The policy update and the value fit as units: built from models and a config, called without an environment.

Each check recomputes what matters with formulas written here: KL(π_before ‖ π_after) of
Gaussians and Categoricals from the parameters before and after a step, and the Hessian of
the mean KL of MultiDiscrete and MultiBinary policies as an explicit matrix.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from trpo_tf import TRPOConfig
from trpo_tf.config import HVP_METHODS
from trpo_tf.policies import make_policy, value_network
from curvature import assert_curvature_product_matches, explicit_hessian
from trpo_tf.update import PolicyUpdate, ValueFit

OBSERVATIONS = gym.spaces.Box(-np.inf, np.inf, shape=(3,))


def small_policy(action_space, hidden=(5,), seed=0, init_log_std=0.0):
    policy = make_policy(OBSERVATIONS, action_space, hidden, "tanh", init_log_std, normalize_observations=True,
                         seed=seed)
    # Move the last layer off its near-zero initialization so the distributions differ across states.
    kernel = policy.network.layers[-1].kernel
    kernel.assign(np.random.default_rng(seed).normal(scale=0.5, size=kernel.shape).astype(np.float32))
    return policy


def network_outputs(layers, features):
    """The MLP by hand: tanh hidden layers, linear output, from (kernel, bias) pairs."""
    x = features
    for i, (kernel, bias) in enumerate(layers):
        x = x @ kernel + bias
        if i < len(layers) - 1:
            x = np.tanh(x)
    return x


def weights(policy):
    return [(layer.kernel.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64))
            for layer in policy.network.layers]


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q):
    """KL(N(μp, σp²) ‖ N(μq, σq²)) summed over independent dimensions, per row."""
    var_p, var_q = np.exp(2 * log_std_p), np.exp(2 * log_std_q)
    return np.sum(log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5, axis=-1)


def log_softmax(logits):
    """log softmax along the last axis, shifted by the maximum for stability."""
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), -1, keepdims=True))


def categorical_kl(logits_p, logits_q):
    """KL(softmax(p) ‖ softmax(q)) per row."""
    log_p, log_q = log_softmax(logits_p), log_softmax(logits_q)
    return np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)


@pytest.mark.parametrize("space", [gym.spaces.Box(-1.0, 1.0, shape=(2,)), gym.spaces.Discrete(4)],
                         ids=["gaussian", "categorical"])
def test_the_step_keeps_the_kl_recomputed_from_parameter_snapshots_within_max_kl(space):
    config = TRPOConfig(max_kl=0.01, cg_iters=10)
    policy = small_policy(space)
    update = PolicyUpdate(policy, config)
    rng = np.random.default_rng(1)
    features = rng.normal(size=(256, 3)).astype(np.float32)
    for _ in range(4):
        # Advantages that favour some actions: the surrogate can improve, so steps are taken.
        snapshot = policy.snapshot()
        actions = snapshot.act(features, rng)[1].astype(policy.head.action_dtype.as_numpy_dtype)
        advantages = rng.normal(size=256).astype(np.float32)
        before = weights(policy)
        log_std_before = policy.head.log_std.numpy().astype(np.float64) if isinstance(space, gym.spaces.Box) else None
        result = update(features, actions, advantages)
        after = weights(policy)
        outputs_before = network_outputs(before, features.astype(np.float64))
        outputs_after = network_outputs(after, features.astype(np.float64))
        if isinstance(space, gym.spaces.Box):
            kl = gaussian_kl(outputs_before, log_std_before, outputs_after, policy.head.log_std.numpy())
        else:
            kl = categorical_kl(outputs_before, outputs_after)
        assert kl.mean() <= config.max_kl * (1 + 1e-4)
        assert kl.mean() == pytest.approx(float(result["kl"]), rel=1e-3, abs=1e-7)
        if bool(result["accepted"]):
            assert kl.mean() > 1e-5  # a real step was taken
        else:
            assert kl.mean() == 0.0  # θ_old restored


def mean_kl_by_formula(space, logits_old, logits_new):
    """Mean over the batch of KL(old ‖ new) for MultiDiscrete (sum over sub-spaces) or MultiBinary."""
    if isinstance(space, gym.spaces.MultiBinary):
        p, q = tf.sigmoid(logits_old), tf.sigmoid(logits_new)
        kl = p * (tf.math.log(p) - tf.math.log(q)) + (1 - p) * (tf.math.log(1 - p) - tf.math.log(1 - q))
        return tf.reduce_mean(tf.reduce_sum(kl, axis=-1))
    total, start = 0.0, 0
    for n in space.nvec:  # padded logits of width max(nvec) per sub-space
        width = int(max(space.nvec))
        old = tf.nn.log_softmax(logits_old[:, start:start + n])
        new = tf.nn.log_softmax(logits_new[:, start:start + n])
        total += tf.reduce_sum(tf.exp(old) * (old - new), axis=-1)
        start += width
    return tf.reduce_mean(total)


@pytest.mark.parametrize("space", [gym.spaces.MultiDiscrete([3, 2, 4]), gym.spaces.MultiBinary(3)],
                         ids=["multidiscrete", "multibinary"])
@pytest.mark.parametrize("method", HVP_METHODS)
def test_curvature_product_equals_the_explicit_hessian_of_the_mean_kl(space, method):
    policy = small_policy(space, hidden=(4,), seed=2)
    features = tf.constant(np.random.default_rng(3).normal(size=(32, 3)).astype(np.float32))
    variables = policy.trainable_parameters()
    layers = policy.network.layers
    logits_old = tf.constant(policy.network(features))
    theta = tf.concat([tf.reshape(v, [-1]) for v in variables], axis=0)

    def mean_kl(flat):
        """The network written out here from a flat θ (hidden tanh, linear output) → mean KL by formula."""
        shapes = [v.shape for v in variables]
        pieces = tf.split(flat, [int(np.prod(s)) for s in shapes])
        kernel_1, bias_1, kernel_2, bias_2 = [tf.reshape(p, s) for p, s in zip(pieces, shapes)]
        logits = tf.tanh(features @ kernel_1 + bias_1) @ kernel_2 + bias_2
        return mean_kl_by_formula(space, logits_old, logits)

    assert [v.shape for v in variables] == [layers[0].kernel.shape, layers[0].bias.shape,
                                            layers[1].kernel.shape, layers[1].bias.shape]
    assert_curvature_product_matches(policy, method, features, explicit_hessian(mean_kl, theta))


def test_value_fit_fits_a_linear_target_with_fresh_permutations_per_epoch():
    network = value_network(3, (16,), "tanh", seed=0)
    fit = ValueFit(network, 3, TRPOConfig(value_lr=1e-2, value_epochs=50, value_batch_size=64))
    rng = np.random.default_rng(5)
    features = rng.normal(size=(512, 3)).astype(np.float32)
    returns = (features @ np.array([1.0, -2.0, 0.5]) + 3.0).astype(np.float32)  # a linear target
    before = float(np.mean((fit.predict(features) - returns) ** 2))
    loss = float(fit(features, returns, fit.minibatch_order(512, rng)))
    after = float(np.mean((fit.predict(features) - returns) ** 2))
    assert after < 0.05 * before and np.isfinite(loss)
    order = fit.minibatch_order(300, np.random.default_rng(0))
    assert order.shape == (50 * 4, 64)  # 50 epochs × ⌊300 / 64⌋ minibatches
    for epoch in order.reshape(50, 4 * 64):
        assert len(set(epoch.tolist())) == 256  # a permutation's prefix: no index twice in an epoch
