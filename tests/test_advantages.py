"""GAE against a plain-Python reference loop."""

import numpy as np

from trpo_tf.advantages import compute_gae, normalize


def reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """One environment, one step at a time, written from the definition (Schulman et al., 2016)."""
    steps, n_envs = rewards.shape
    advantages = np.zeros((steps, n_envs))
    for n in range(n_envs):
        for t in range(steps):
            total, discount = 0.0, 1.0
            for k in range(t, steps):
                bootstrap = 0.0 if terminated[k, n] else next_values[k, n]
                delta = rewards[k, n] + gamma * bootstrap - values[k, n]
                total += discount * delta
                if terminated[k, n] or truncated[k, n]:
                    break
                discount *= gamma * lam
            advantages[t, n] = total
    return advantages, advantages + values


def test_gae_matches_reference_loop_with_mixed_episode_ends():
    rng = np.random.default_rng(0)
    steps, n_envs = 40, 4
    rewards = rng.normal(size=(steps, n_envs)).astype(np.float32)
    values = rng.normal(size=(steps, n_envs)).astype(np.float32)
    next_values = rng.normal(size=(steps, n_envs)).astype(np.float32)
    terminated = rng.random((steps, n_envs)) < 0.1
    truncated = (rng.random((steps, n_envs)) < 0.1) & ~terminated
    truncated[-1, 0] = True  # an episode truncated on the batch's last step
    terminated[-1, 1] = True
    assert terminated.any() and truncated.any()
    got_adv, got_ret = compute_gae(rewards, values, next_values, terminated, truncated, 0.97, 0.9)
    want_adv, want_ret = reference_gae(rewards, values, next_values, terminated, truncated, 0.97, 0.9)
    np.testing.assert_allclose(got_adv, want_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_ret, want_ret, rtol=1e-5, atol=1e-5)


def test_truncation_bootstraps_and_termination_does_not():
    rewards = np.ones((1, 2), np.float32)
    values = np.zeros((1, 2), np.float32)
    next_values = np.full((1, 2), 10.0, np.float32)
    terminated = np.array([[True, False]])
    truncated = np.array([[False, True]])
    advantages, _ = compute_gae(rewards, values, next_values, terminated, truncated, 0.5, 1.0)
    np.testing.assert_allclose(advantages, [[1.0, 1.0 + 0.5 * 10.0]])


def test_lambda_one_gives_discounted_return_minus_value():
    rewards = np.array([[1.0], [2.0], [3.0]], np.float32)
    values = np.array([[0.5], [0.25], [0.0]], np.float32)
    next_values = np.array([[0.25], [0.0], [4.0]], np.float32)
    no = np.zeros((3, 1), bool)
    advantages, returns = compute_gae(rewards, values, next_values, no, no, 0.9, 1.0)
    monte_carlo = 1.0 + 0.9 * 2.0 + 0.81 * 3.0 + 0.729 * 4.0
    np.testing.assert_allclose(returns[0, 0], monte_carlo, rtol=1e-6)
    np.testing.assert_allclose(advantages[0, 0], monte_carlo - 0.5, rtol=1e-6)


def test_normalize_gives_zero_mean_unit_std():
    advantages = np.random.default_rng(1).normal(3.0, 5.0, size=1000)
    normalized = normalize(advantages)
    assert abs(normalized.mean()) < 1e-6 and abs(normalized.std() - 1.0) < 1e-6
