"""The sampling package against gymnasium's own vector environment, and its state round trip."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from trpo_tf.policies import make_policy
from trpo_tf.sampling import InProcessSampler, SerialVectorEnv, make_env


@pytest.mark.parametrize("env_id, steps", [("CartPole-v1", 400), ("Pendulum-v1", 450)])
def test_serial_vector_env_steps_like_gymnasiums_sync_vector_env(env_id, steps):
    """Same seeds, same actions: observations, rewards, terminations, truncations and final observations agree."""
    ours = SerialVectorEnv([lambda: make_env(env_id)] * 3)
    reference = gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * 3, autoreset_mode=AutoresetMode.SAME_STEP)
    observation, _ = ours.reset(seed=7)
    expected, _ = reference.reset(seed=7)
    np.testing.assert_array_equal(observation, expected)
    actions = reference.action_space
    actions.seed(3)
    ended = 0
    for _ in range(steps):
        action = actions.sample()
        got, want = ours.step(action), reference.step(action)
        for mine, theirs in zip(got[:4], want[:4]):
            np.testing.assert_array_equal(mine, theirs)
        done = want[2] | want[3]
        ended += int(done.sum())
        for i in np.flatnonzero(done):
            np.testing.assert_array_equal(got[4]["final_obs"][i], want[4]["final_obs"][i])
    assert ended > 0  # episodes ended and reset along the way


def test_sampler_state_round_trip_continues_the_same_batches():
    """Two samplers: one runs on; the other gets the first's state and environments and must produce the same."""
    policy = make_policy(gym.spaces.Box(-np.inf, np.inf, shape=(4,)), gym.spaces.Discrete(2), (8,), "tanh", 0.0,
                         True, seed=0)
    snapshot = pickle.loads(pickle.dumps(policy.snapshot()))  # what a worker process would receive
    first = InProcessSampler(SerialVectorEnv([lambda: make_env("CartPole-v1")] * 2), seed=1, rng=np.random.default_rng(1))
    first.collect(snapshot, 30)
    second = InProcessSampler(SerialVectorEnv([lambda: make_env("CartPole-v1")] * 2), seed=99, rng=np.random.default_rng(99))
    state = pickle.loads(pickle.dumps(first.state()))
    second.load_state(state)
    second.load_environment_state(first.environment_state(), fresh_seed=0)
    a, b = first.collect(snapshot, 50), second.collect(snapshot, 50)
    for field in ("observations", "actions", "rewards", "terminated", "truncated", "final_observations"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.episode_returns == b.episode_returns and a.episode_lengths == b.episode_lengths
    with pytest.raises(ValueError, match="sampler state is for 2 environments, this sampler has 3"):
        InProcessSampler(SerialVectorEnv([lambda: make_env("CartPole-v1")] * 3), seed=0,
                rng=np.random.default_rng(0)).load_state(state)
