"""NPG mode and the quadratic model's accuracy reported by every policy step (issue 14, items 1–2).

The reference numbers are computed here from a Gaussian policy written out by hand from its flat
parameters θ = [log_std, kernel₁, bias₁, kernel₂, bias₂] (the order of
``Policy.trainable_parameters``): the surrogate, its gradient g, the mean KL(π_old ‖ π_θ) and its
explicit Hessian H (``tf.GradientTape.jacobian`` of the gradient), in float64.
"""

from __future__ import annotations

import csv
import math
import os

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from trpo_tf import TRPO, TRPOConfig, cli
from trpo_tf.errors import ConfigError
from trpo_tf.policies import make_policy
from trpo_tf.trpo import QUADRATIC_MODEL_KEYS
from trpo_tf.update import PolicyUpdate

OBSERVATIONS = gym.spaces.Box(-np.inf, np.inf, shape=(3,))
ACTIONS = gym.spaces.Box(-1.0, 1.0, shape=(2,))
BATCH = 128


def tiny_policy(seed: int = 0):
    """A tanh MLP with 4 hidden units and a Gaussian head; its last layer moved off its near-zero start."""
    policy = make_policy(OBSERVATIONS, ACTIONS, (4,), "tanh", 0.0, normalize_observations=True, seed=seed)
    kernel = policy.network.layers[-1].kernel
    kernel.assign(np.random.default_rng(seed).normal(scale=0.5, size=kernel.shape).astype(np.float32))
    return policy


def flat_parameters(policy) -> np.ndarray:
    """θ [P] in float64, in the order of ``policy.trainable_parameters()``."""
    return np.concatenate([v.numpy().astype(np.float64).ravel() for v in policy.trainable_parameters()])


def batch(policy, seed: int):
    """Features [B, 3], actions sampled by the policy [B, 2] and advantages [B] that favour larger first actions."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(BATCH, 3)).astype(np.float32)
    actions = policy.snapshot().act(features, rng)[1].astype(np.float32)
    advantages = (rng.normal(size=BATCH) + 2.0 * features[:, 0] * actions[:, 0]).astype(np.float32)
    return features, actions, advantages


class HandWrittenPolicy:
    """The policy's distribution, surrogate and mean KL as functions of a flat float64 θ."""

    def __init__(self, policy, features: np.ndarray, actions: np.ndarray, advantages: np.ndarray):
        self.shapes = [tuple(v.shape) for v in policy.trainable_parameters()]
        self.features = tf.constant(features, tf.float64)
        self.actions = tf.constant(actions, tf.float64)
        self.advantages = tf.constant(advantages, tf.float64)
        self.theta_old = tf.constant(flat_parameters(policy))
        self.mean_old, self.log_std_old = self.gaussian(self.theta_old)

    def gaussian(self, theta: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Mean [B, 2] and log-std [2] at θ."""
        pieces = tf.split(theta, [int(np.prod(s)) for s in self.shapes])
        log_std, kernel_1, bias_1, kernel_2, bias_2 = [tf.reshape(p, s) for p, s in zip(pieces, self.shapes)]
        return tf.tanh(self.features @ kernel_1 + bias_1) @ kernel_2 + bias_2, log_std

    def log_prob(self, mean: tf.Tensor, log_std: tf.Tensor) -> tf.Tensor:
        z = (self.actions - mean) / tf.exp(log_std)
        return tf.reduce_sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)

    def surrogate(self, theta: tf.Tensor) -> tf.Tensor:
        """mean(π_θ(a|s) / π_old(a|s) · A)."""
        ratio = tf.exp(self.log_prob(*self.gaussian(theta)) - self.log_prob(self.mean_old, self.log_std_old))
        return tf.reduce_mean(ratio * self.advantages)

    def mean_kl(self, theta: tf.Tensor) -> tf.Tensor:
        """Mean over the batch of KL(N(μ_old, σ_old²) ‖ N(μ_θ, σ_θ²)), summed over action dimensions."""
        mean, log_std = self.gaussian(theta)
        var_old, var = tf.exp(2 * self.log_std_old), tf.exp(2 * log_std)
        kl = log_std - self.log_std_old + (var_old + (self.mean_old - mean) ** 2) / (2 * var) - 0.5
        return tf.reduce_mean(tf.reduce_sum(kl, axis=-1))

    def gradient_and_hessian(self) -> tuple[np.ndarray, np.ndarray]:
        """g = ∇ surrogate [P] and H = ∇² mean KL [P, P] at θ_old."""
        theta = tf.Variable(self.theta_old)
        with tf.GradientTape() as tape:
            surrogate = self.surrogate(theta)
        gradient = tape.gradient(surrogate, theta).numpy()
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                kl = self.mean_kl(theta)
            kl_gradient = inner.gradient(kl, theta)
        return gradient, outer.jacobian(kl_gradient, theta).numpy()


@pytest.mark.parametrize("delta_at_call", [False, True])
def test_npg_takes_the_full_step_of_the_formula_and_reports_what_the_models_predicted(delta_at_call):
    """δ from the config, or passed at the call (as a schedule does) over a config's other δ."""
    max_kl, damping = 0.02, 0.1
    policy = tiny_policy()
    features, actions, advantages = batch(policy, seed=1)
    model = HandWrittenPolicy(policy, features, actions, advantages)
    g, h = model.gradient_and_hessian()
    size = g.size
    x = np.linalg.solve(h + damping * np.eye(size), g)
    expected_step = math.sqrt(2 * max_kl / (x @ (h + damping * np.eye(size)) @ x)) * x  # √(2δ / xᵀAx)·x

    config = TRPOConfig(algorithm="npg", max_kl=0.5 if delta_at_call else max_kl, cg_damping=damping, cg_iters=size)
    update = PolicyUpdate(policy, config)
    result = update(features, actions, advantages, max_kl) if delta_at_call else update(features, actions, advantages)
    result = {k: v.numpy() for k, v in result.items()}
    step = flat_parameters(policy) - model.theta_old.numpy()
    np.testing.assert_allclose(step, expected_step, rtol=2e-3, atol=2e-3 * np.abs(expected_step).max())

    theta_new = tf.constant(model.theta_old.numpy() + step)
    measured_kl = float(model.mean_kl(theta_new))
    measured_gain = float(model.surrogate(theta_new) - model.surrogate(model.theta_old))
    assert bool(result["accepted"]) and int(result["line_search_steps"]) == 0
    assert float(result["kl"]) == pytest.approx(measured_kl, rel=1e-3)
    assert float(result["kl_full_step"]) == pytest.approx(measured_kl, rel=1e-3)
    assert float(result["kl_predicted"]) == pytest.approx(0.5 * step @ h @ step, rel=1e-3)
    assert float(result["kl_predicted"]) < max_kl  # δ less the damping's share ½λ‖s‖²
    assert float(result["kl_predicted"]) == pytest.approx(max_kl - 0.5 * damping * step @ step, rel=1e-3)
    assert float(result["kl_ratio"]) == pytest.approx(measured_kl / (0.5 * step @ h @ step), rel=2e-3)
    assert float(result["surrogate_predicted"]) == pytest.approx(g @ step, rel=1e-3)
    assert float(result["surrogate_full_step"]) == pytest.approx(measured_gain, rel=1e-3)
    assert float(result["surrogate_gain"]) == pytest.approx(measured_gain, rel=1e-3)
    assert float(result["cg_residual"]) < 1e-3  # CG ran P iterations: (nearly) solved


def test_trpo_reports_the_kl_and_surrogate_measured_at_the_full_step_before_backtracking():
    max_kl, coef = 2.0, 0.5  # a large trust region: the full step overshoots and the search backtracks
    policy = tiny_policy(seed=3)
    features, actions, advantages = batch(policy, seed=4)
    model = HandWrittenPolicy(policy, features, actions, advantages)
    g, h = model.gradient_and_hessian()
    config = TRPOConfig(max_kl=max_kl, line_search_coef=coef, cg_iters=3)
    result = {k: v.numpy() for k, v in PolicyUpdate(policy, config)(features, actions, advantages).items()}
    steps = int(result["line_search_steps"])
    assert bool(result["accepted"]) and steps > 1
    full_step = (flat_parameters(policy) - model.theta_old.numpy()) / coef ** (steps - 1)  # θ_new = θ_old + c^j s
    at_full_step = tf.constant(model.theta_old.numpy() + full_step)
    assert float(result["kl_full_step"]) == pytest.approx(float(model.mean_kl(at_full_step)), rel=2e-3)
    assert float(result["kl_full_step"]) > max_kl  # why it backtracked
    gain = float(model.surrogate(at_full_step) - model.surrogate(model.theta_old))
    assert float(result["surrogate_full_step"]) == pytest.approx(gain, rel=2e-3, abs=1e-5)
    assert float(result["surrogate_predicted"]) == pytest.approx(g @ full_step, rel=2e-3)
    assert float(result["kl_predicted"]) == pytest.approx(0.5 * full_step @ h @ full_step, rel=2e-3)
    assert float(result["kl_ratio"]) == pytest.approx(result["kl_full_step"] / result["kl_predicted"], rel=1e-5)
    assert float(result["kl"]) == pytest.approx(float(model.mean_kl(tf.constant(flat_parameters(policy)))), rel=2e-3)
    # Three CG iterations on P = 30 parameters leave a residual: NumPy's CG on the explicit (H + λI) gives it.
    x = numpy_conjugate_gradient(h + config.cg_damping * np.eye(g.size), g, iterations=3)
    residual = np.linalg.norm((h + config.cg_damping * np.eye(g.size)) @ x - g) / np.linalg.norm(g)
    assert residual > 1e-2 and float(result["cg_residual"]) == pytest.approx(residual, rel=1e-2)
    cosine = x @ full_step / (np.linalg.norm(x) * np.linalg.norm(full_step))
    assert cosine == pytest.approx(1.0, abs=1e-4)


def numpy_conjugate_gradient(a: np.ndarray, b: np.ndarray, iterations: int) -> np.ndarray:
    """x after ``iterations`` of conjugate gradient on A x = b from x = 0 (Nocedal & Wright, Algorithm 5.2)."""
    x, r = np.zeros_like(b), b.copy()
    p = r.copy()
    for _ in range(iterations):
        alpha = (r @ r) / (p @ a @ p)
        x, r_next = x + alpha * p, r - alpha * (a @ p)
        p = r_next + (r_next @ r_next) / (r @ r) * p
        r = r_next
    return x


@pytest.mark.parametrize("algorithm", ["trpo", "npg"])
def test_npg_never_restores_where_trpo_does(algorithm):
    # One candidate point and a full step that overshoots the trust region (its KL is 2.12 > δ = 2, see the
    # test above): TRPO's only candidate fails, so it restores θ_old; NPG takes the step anyway.
    config = TRPOConfig(algorithm=algorithm, max_kl=2.0, line_search_max_steps=1, cg_iters=3)
    policy = tiny_policy(seed=3)
    before = flat_parameters(policy)
    result = PolicyUpdate(policy, config)(*batch(policy, seed=4))
    moved = np.abs(flat_parameters(policy) - before).max()
    assert float(result["kl_full_step"]) > config.max_kl
    if algorithm == "npg":
        assert bool(result["accepted"]) and int(result["line_search_steps"]) == 0 and moved > 1e-2
        assert float(result["kl"]) == float(result["kl_full_step"])
    else:
        assert not bool(result["accepted"]) and int(result["line_search_steps"]) == 1
        assert moved == 0.0 and float(result["kl"]) == 0.0


def hand_written_trpo_step(model: HandWrittenPolicy, config: TRPOConfig) -> tuple[np.ndarray, int, bool]:
    """(θ after the step [P], line-search steps, accepted) of one TRPO step written out in float64 NumPy:
    x from ``cg_iters`` iterations of CG on (H + λI) x = g, the step √(2δ / xᵀ(H + λI)x)·x, then the first
    coefᴶ of it whose surrogate gain is positive with KL ≤ δ (θ_old when none is). Each decision is made
    with a margin, so that float32 arithmetic cannot take the other branch."""
    g, h = model.gradient_and_hessian()
    damped = h + config.cg_damping * np.eye(g.size)
    x = numpy_conjugate_gradient(damped, g, config.cg_iters)
    step = math.sqrt(2 * config.max_kl / (x @ damped @ x)) * x
    theta_old = model.theta_old.numpy()
    old_surrogate = float(model.surrogate(model.theta_old))
    for j in range(config.line_search_max_steps):
        theta = tf.constant(theta_old + config.line_search_coef ** j * step)
        gain, kl = float(model.surrogate(theta)) - old_surrogate, float(model.mean_kl(theta))
        assert abs(kl - config.max_kl) > 1e-3 * config.max_kl and abs(gain) > 1e-6, (j, kl, gain)  # not borderline
        if gain > 0 and kl <= config.max_kl:
            return theta.numpy(), j + 1, True
    return theta_old, config.line_search_max_steps, False


def test_trpo_steps_take_the_hand_written_step():
    """Four TRPO steps in a row, each checked against the step computed from the explicit Hessian."""
    config = TRPOConfig(max_kl=0.05, line_search_coef=0.5, cg_iters=10)
    policy = tiny_policy(seed=7)
    update = PolicyUpdate(policy, config)
    searched = []
    for seed in range(20, 24):
        features, actions, advantages = batch(policy, seed=seed)
        model = HandWrittenPolicy(policy, features, actions, advantages)
        theta, steps, accepted = hand_written_trpo_step(model, config)
        result = update(features, actions, advantages)
        searched.append(steps)
        assert int(result["line_search_steps"]) == steps and bool(result["accepted"]) == accepted
        moved = theta - model.theta_old.numpy()
        np.testing.assert_allclose(flat_parameters(policy) - model.theta_old.numpy(), moved, rtol=2e-3,
                                   atol=2e-3 * np.abs(moved).max())
        new = tf.constant(flat_parameters(policy))
        assert float(result["kl"]) == pytest.approx(float(model.mean_kl(new)), rel=1e-3)
        assert float(result["surrogate_gain"]) == pytest.approx(
            float(model.surrogate(new) - model.surrogate(model.theta_old)), rel=1e-3)
        log_std = new.numpy()[:ACTIONS.shape[0]]  # a diagonal Gaussian's entropy: Σ log σ + ½ log(2πe)
        assert float(result["entropy"]) == pytest.approx(np.sum(log_std + 0.5 * math.log(2 * math.pi * math.e)),
                                                         rel=1e-5)
    assert max(searched) > 1  # the line search backtracked at least once


def test_algorithm_is_validated_and_set_from_the_command_line():
    with pytest.raises(ConfigError, match=r"TRPOConfig.algorithm must be one of \('trpo', 'npg'\), got 'sgd'"):
        TRPOConfig(algorithm="sgd")
    args = cli.build_parser().parse_args(["train", "Pendulum-v1", "--set", "algorithm=npg"])
    config, _, sources = cli._resolve_config(args)
    assert config.algorithm == "npg" and "--set algorithm=npg" in sources
    assert TRPOConfig.from_dict(config.to_dict()) == config


def test_history_and_progress_csv_hold_the_model_accuracy_keys(tmp_path):
    agent = TRPO("Pendulum-v1", TRPOConfig(algorithm="npg", steps_per_iteration=64), seed=0)
    agent.learn(128, log_dir=str(tmp_path / "run"))
    with open(os.path.join(tmp_path, "run", "progress.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(agent.history) == 2
    for entry, row in zip(agent.history, rows):
        for key in QUADRATIC_MODEL_KEYS:
            assert math.isfinite(entry[key]) and float(row[key]) == pytest.approx(entry[key])
        assert entry["kl_ratio"] == pytest.approx(entry["kl_full_step"] / entry["kl_predicted"], rel=1e-5)
        assert 0 < entry["kl_predicted"] <= agent.config.max_kl
        assert entry["line_search_steps"] == 0 and entry["step_accepted"] is True
        assert entry["kl"] == entry["kl_full_step"]
