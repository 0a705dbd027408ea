"""It learns: fixed seeds, default hyperparameters, thresholds a user would call solved."""

from trpo_tf import TRPO, TRPOConfig


def test_cartpole_reaches_475_within_100k_steps():
    agent = TRPO("CartPole-v1", TRPOConfig(), seed=0).learn(48 * 2048)  # 98,304 steps
    assert agent.evaluate(episodes=10)["mean_return"] >= 475


def test_pendulum_reaches_minus_250_within_200k_steps():
    agent = TRPO("Pendulum-v1", TRPOConfig(), seed=0).learn(97 * 2048)  # 198,656 steps
    assert all(entry["kl"] <= 0.01 + 1e-7 for entry in agent.history)
    assert agent.evaluate(episodes=10)["mean_return"] >= -250
