"""The agent end to end on small problems: errors, bookkeeping, determinism, the trust region."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from trpo_tf import TRPO, TRPOConfig, cli
from trpo_tf.errors import EnvironmentValueError, UnsupportedSpaceError
from trpo_tf.sampling import InProcessSampler
from trpo_tf.update import PolicyUpdate

SMALL = TRPOConfig(steps_per_iteration=256, policy_hidden=(16,), value_hidden=(16,), value_epochs=2)
TIMING = ("fps", "sampling_seconds", "advantage_seconds", "policy_step_seconds", "value_fit_seconds")


class CountingEnv(gym.Env):
    """Observation = [steps taken]; reward 1 per step; terminates at ``terminate_at`` steps,
    truncates (time limit) at ``truncate_at``; optionally emits NaN at step ``nan_at``."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self, terminate_at=7, truncate_at=5, nan_at=None):
        self.terminate_at, self.truncate_at, self.nan_at = terminate_at, truncate_at, nan_at
        self.t = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        observation = np.array([np.nan if self.t == self.nan_at else self.t], np.float32)
        return observation, 1.0, self.t >= self.terminate_at, self.t >= self.truncate_at, {}


class ZeroActor:
    """Always action 0 in each of ``n`` environments (what the sampler acts with: ``act(obs, rng)``)."""

    def __init__(self, n):
        self.n = n

    def act(self, observations, rng):
        return np.zeros(self.n, np.int64), np.zeros(self.n, np.int64)


def without_timing(history):
    return [{k: v for k, v in entry.items() if k not in TIMING} for entry in history]


def test_same_seed_gives_same_history_and_different_seed_does_not():
    runs = [TRPO("CartPole-v1", SMALL, seed=seed).learn(768).history for seed in (3, 3, 4)]
    assert without_timing(runs[0]) == without_timing(runs[1])
    assert without_timing(runs[0]) != without_timing(runs[2])


def test_evaluating_and_predicting_mid_training_do_not_change_the_training_trajectory():
    plain = TRPO("Pendulum-v1", SMALL, seed=2).learn(3 * 256)
    interrupted = TRPO("Pendulum-v1", SMALL, seed=2).learn(256)
    interrupted.evaluate(episodes=1, deterministic=False)
    interrupted.predict(np.zeros((4, 3), np.float32), deterministic=False)
    interrupted.evaluate(episodes=1)
    interrupted.learn(2 * 256)
    assert without_timing(plain.history) == without_timing(interrupted.history)


def test_kl_stays_within_max_kl_and_timesteps_count_every_step():
    config = SMALL.replace(n_envs=2, steps_per_iteration=512, max_kl=0.005)
    agent = TRPO("Pendulum-v1", config, seed=0).learn(5 * 512)
    assert [entry["timesteps"] for entry in agent.history] == [512 * i for i in range(1, 6)]
    for entry in agent.history:
        assert entry["kl"] <= 0.005 + 1e-7
        assert entry["surrogate_gain"] > 0 if entry["step_accepted"] else entry["kl"] == 0.0
    assert any(entry["step_accepted"] for entry in agent.history)


def test_value_fit_moves_only_the_value_function():
    agent = TRPO("Pendulum-v1", SMALL, seed=0)
    agent.learn(256)
    batch = np.random.default_rng(0).normal(size=(256, 3)).astype(np.float32)
    policy_before = [v.numpy().copy() for v in agent.policy.weights]
    value_before = agent.value(batch).numpy()
    order = agent.value_fit.minibatch_order(len(batch), np.random.default_rng(0))
    agent.value_fit(batch, np.ones(256, np.float32), order)
    for before, variable in zip(policy_before, agent.policy.weights):
        np.testing.assert_array_equal(before, variable.numpy())
    assert not np.allclose(value_before, agent.value(batch).numpy())


def test_sampler_keeps_final_observations_and_tells_termination_from_truncation():
    env = gym.vector.SyncVectorEnv([lambda: CountingEnv(terminate_at=3, truncate_at=10),
                                    lambda: CountingEnv(terminate_at=10, truncate_at=4)],
                                   autoreset_mode=AutoresetMode.SAME_STEP)
    sampler = InProcessSampler(env, seed=0, rng=np.random.default_rng(0))
    batch = sampler.collect(ZeroActor(2), steps=8)
    assert batch.terminated[:, 0].tolist() == [False, False, True, False, False, True, False, False]
    assert batch.truncated[:, 1].tolist() == [False, False, False, True, False, False, False, True]
    assert not batch.truncated[:, 0].any() and not batch.terminated[:, 1].any()
    assert sorted(map(tuple, batch.final_index.tolist())) == [(2, 0), (3, 1), (5, 0), (7, 1)]
    finals = {tuple(i): o[0] for i, o in zip(batch.final_index.tolist(), batch.final_observations)}
    assert finals == {(2, 0): 3.0, (5, 0): 3.0, (3, 1): 4.0, (7, 1): 4.0}
    # The observation the policy sees right after an episode ends is the reset one.
    assert batch.observations[3, 0, 0] == 0.0 and batch.observations[4, 1, 0] == 0.0
    assert sorted(batch.episode_returns) == [3.0, 3.0, 4.0, 4.0]
    np.testing.assert_array_equal(batch.last_observations[:, 0], [2.0, 0.0])


def test_episode_returns_and_lengths_carry_across_batches():
    env = gym.vector.SyncVectorEnv([lambda: CountingEnv(terminate_at=3, truncate_at=10),
                                    lambda: CountingEnv(terminate_at=10, truncate_at=7)],
                                   autoreset_mode=AutoresetMode.SAME_STEP)
    sampler = InProcessSampler(env, seed=0, rng=np.random.default_rng(0))
    ended = [sampler.collect(ZeroActor(2), steps) for steps in (2, 5, 1, 9)]
    # Environment 0 ends episodes of 3 steps at steps 3, 6, 9, 12, 15; environment 1 of 7 at 7, 14.
    assert [b.episode_lengths for b in ended] == [[], [3, 3, 7], [], [3, 3, 7, 3]]
    assert [b.episode_returns for b in ended] == [[], [3.0, 3.0, 7.0], [], [3.0, 3.0, 7.0, 3.0]]
    assert sampler.running_lengths.tolist() == [2, 3] and sampler.running_returns.tolist() == [2.0, 3.0]


def test_a_vector_env_that_drops_final_observations_is_named():
    class Forgetful(gym.vector.SyncVectorEnv):
        def step(self, actions):
            return super().step(actions)[:4] + ({},)

    env = Forgetful([lambda: CountingEnv(terminate_at=3)], autoreset_mode=AutoresetMode.SAME_STEP)
    with pytest.raises(ValueError, match=r"environment 0 ended an episode at step 2 without a 'final_obs'"):
        InProcessSampler(env, seed=0, rng=np.random.default_rng(0)).collect(ZeroActor(1), steps=4)


def test_truncated_steps_bootstrap_from_the_final_observation():
    agent = TRPO(CountingEnv(terminate_at=100, truncate_at=4), SMALL.replace(steps_per_iteration=8), seed=0)
    snapshot = agent.policy.snapshot()
    batch = agent.sampler.collect(snapshot, 8)
    features = snapshot.features(batch.observations.reshape(-1, 1))
    values, next_values = agent.values_and_next_values(batch, features)
    value_of = lambda x: float(agent.value(snapshot.features(np.array([[x]], np.float32))).numpy()[0, 0])  # noqa: E731
    assert next_values[3, 0] == pytest.approx(value_of(4.0), abs=1e-6)   # truncated: V(final obs = 4)
    assert next_values[2, 0] == pytest.approx(values[3, 0], abs=1e-6)     # inside the episode
    assert next_values[7, 0] == pytest.approx(value_of(4.0), abs=1e-6)
    assert values[4, 0] == pytest.approx(value_of(0.0), abs=1e-6)         # after the reset


def test_non_finite_observation_is_reported_with_where_and_when():
    agent = TRPO(CountingEnv(terminate_at=100, truncate_at=100, nan_at=6), SMALL, seed=0)
    with pytest.raises(EnvironmentValueError, match=r"environment 0 \(CountingEnv\) returned a non-finite observation \[nan\] "
                                                     r"from step\(\) after 6 environment steps"):
        agent.learn(256)


def test_unsupported_spaces_and_bad_env_arguments_are_named():
    class TupleEnv(CountingEnv):
        action_space = gym.spaces.Tuple([gym.spaces.Discrete(2)])

    with pytest.raises(UnsupportedSpaceError, match="unsupported action space Tuple"):
        TRPO(TupleEnv(), SMALL)
    with pytest.raises(ValueError, match="unknown environment id 'CartPole-v9'; did you mean CartPole-v"):
        TRPO("CartPole-v9", SMALL)
    next_step = gym.make_vec("CartPole-v1", num_envs=1, vectorization_mode="sync")
    with pytest.raises(ValueError, match="SAME_STEP"):
        TRPO(next_step, SMALL)


def test_predict_checks_observation_shape():
    agent = TRPO("CartPole-v1", SMALL, seed=0)
    assert agent.predict(np.zeros((3, 4))).shape == (3,)
    assert agent.predict(np.zeros(4)).shape == (1,)
    with pytest.raises(ValueError, match=r"shape \(2, 5\).*expected \[batch, 4\]"):
        agent.predict(np.zeros((2, 5)))


@pytest.mark.parametrize("changes, message", [
    ({"max_kl": 0.0}, r"max_kl must be a number in \(0.0, inf\)"),
    ({"gamma": 1.5}, r"gamma must be a number in \[0.0, 1.0\]"),
    ({"cg_iters": 0}, r"cg_iters must be an integer >= 1"),
    ({"policy_hidden": (64, -1)}, "policy_hidden must be a sequence of positive layer widths"),
    ({"activation": "softmax"}, "activation must be one of"),
    ({"n_envs": 3}, r"steps_per_iteration \(2048\) must be a multiple of n_envs \(3\)"),
    ({"line_search_coef": 1.0}, r"line_search_coef must be a number in \(0.0, 1.0\)"),
])
def test_invalid_config_names_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        TRPOConfig(**changes)


def test_env_kwargs_build_the_training_and_evaluation_environments(tmp_path):
    """CartPole with Sutton & Barto's reward pays 0 per step and -1 on failure: an evaluation
    that returns <= 0 ran the env built with the kwargs (the default env pays +1 per step)."""
    config = SMALL.replace(env_kwargs={"sutton_barto_reward": True})
    agent = TRPO("CartPole-v1", config, seed=0).learn(256)
    assert all(env.unwrapped._sutton_barto_reward for env in agent.vector_env.envs)
    assert -1.0 <= agent.evaluate(episodes=2)["mean_return"] <= 0.0
    assert agent.evaluate(episodes=2, env="CartPole-v1")["mean_return"] <= 0.0  # its id: its kwargs
    assert agent.evaluate(episodes=2, env=gym.make("CartPole-v1"))["mean_return"] >= 8.0
    agent.save(str(tmp_path))
    restored = TRPO.load(str(tmp_path))
    assert restored.config.env_kwargs == {"sutton_barto_reward": True}
    assert restored.vector_env.envs[0].unwrapped._sutton_barto_reward


def test_evaluate_refuses_an_environment_with_other_observations():
    agent = TRPO("HalfCheetah-v5", SMALL, seed=0)
    other = gym.make("HalfCheetah-v5", exclude_current_positions_from_observation=False)
    with pytest.raises(ValueError, match=r"observations have shape \(18,\) but the policy takes \(17,\)"):
        agent.evaluate(episodes=1, env=other)


def test_env_kwargs_errors_name_the_problem():
    with pytest.raises(ValueError, match="env_kwargs must be a mapping"):
        TRPOConfig(env_kwargs=["sutton_barto_reward"])
    with pytest.raises(ValueError, match="env_kwargs must hold plain values"):
        TRPOConfig(env_kwargs={"render_mode": object()})
    with pytest.raises(ValueError, match="CartPole-v1 does not accept env_kwargs.*'no_such_option'"):
        TRPO("CartPole-v1", SMALL.replace(env_kwargs={"no_such_option": 1}))
    with pytest.raises(ValueError, match="apply to environment ids only"):
        TRPO(gym.make("CartPole-v1"), SMALL.replace(env_kwargs={"sutton_barto_reward": True}))


def test_unknown_config_key_suggests_the_closest_and_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown TRPOConfig field max_kll \(did you mean max_kl\?\); "
                                         "valid fields: steps_per_iteration"):
        TRPOConfig().replace(max_kll=0.1)
    with pytest.raises(ValueError, match=r"unknown TRPOConfig fields gama \(did you mean gamma\?\), zzz; valid"):
        TRPOConfig.from_dict({"gama": 0.9, "zzz": 1})
    config_file = tmp_path / "my.yaml"
    config_file.write_text("value_epocs: 3\n")
    args = cli.build_parser().parse_args(["train", "Pendulum-v1", "--config", str(config_file)])
    with pytest.raises(ValueError, match=r"my.yaml: unknown TRPOConfig field value_epocs \(did you mean "
                                         r"value_epochs\?\)"):
        cli._resolve_config(args)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_curvature_methods_match_forward_over_backward(env_id):
    """Gauss–Newton and double-backward H·v equal the default at θ_old, on one policy after some training."""
    agent = TRPO(env_id, SMALL, seed=5).learn(512)
    features = np.random.default_rng(0).normal(size=(64, agent.policy.encoder.dim)).astype(np.float32)
    size = sum(int(np.prod(v.shape)) for v in agent.policy.trainable_parameters())
    vector = np.random.default_rng(1).normal(size=size).astype(np.float32)
    products = {method: PolicyUpdate(agent.policy, SMALL.replace(hvp_method=method)).curvature_product(
        features)(vector).numpy() for method in ("forward_over_backward", "double_backward", "gauss_newton")}
    reference = products["forward_over_backward"]
    assert np.linalg.norm(reference) > 1e-3
    for method in ("double_backward", "gauss_newton"):
        np.testing.assert_allclose(products[method], reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


def test_subsampled_fisher_keeps_steps_inside_the_trust_region():
    config = SMALL.replace(steps_per_iteration=1024, fisher_fraction=0.2, hvp_method="gauss_newton", max_kl=0.02)
    agent = TRPO("Pendulum-v1", config, seed=1).learn(6 * 1024)
    assert agent.policy_update.fisher_stride == 5
    assert all(entry["kl"] <= 0.02 + 1e-7 for entry in agent.history)
    assert sum(entry["step_accepted"] for entry in agent.history) >= 4
