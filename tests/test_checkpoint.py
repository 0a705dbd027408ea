"""Checkpoints: resume equivalence, environment state, crash safety and clear errors."""

from __future__ import annotations

import math
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading
import warnings

import gymnasium as gym
import numpy as np
import pytest

from trpo_tf import TRPO, TRPOConfig, checkpoint

from killing import kill_9_after_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING_KEYS = {"fps"}


def _comparable(history):
    """History without the wall-clock keys (fps, *_seconds)."""
    return [{k: v for k, v in entry.items() if k not in TIMING_KEYS and not k.endswith("_seconds")}
            for entry in history]


def _assert_same_history(expected, actual):
    assert len(expected) == len(actual)
    for want, got in zip(_comparable(expected), _comparable(actual)):
        assert want.keys() == got.keys()
        for key in want:
            same = want[key] == got[key] or (isinstance(want[key], float) and math.isnan(want[key])
                                             and math.isnan(got[key]))
            assert same, f"iteration {want['iteration']}: {key} {want[key]!r} != {got[key]!r}"


def _weights(agent):
    return [v.numpy() for v in agent.policy.weights + agent.value.weights
            + agent.reward_scaler.weights + agent.value_fit.optimizer.variables]


@pytest.mark.parametrize("env_id, normalize_rewards", [("CartPole-v1", False), ("Pendulum-v1", True)])
def test_resume_equivalence(tmp_path, env_id, normalize_rewards):
    """N + M iterations in one go == N iterations, save, load, M iterations (timing keys aside)."""
    config = TRPOConfig(steps_per_iteration=256, n_envs=2, value_batch_size=64, value_epochs=3,
                        normalize_rewards=normalize_rewards)
    n, m = 3, 3
    straight = TRPO(env_id, config, seed=11).learn((n + m) * 256)

    first = TRPO(env_id, config, seed=11).learn(n * 256)
    first.save(str(tmp_path / "run"))
    del first
    resumed = TRPO.load(str(tmp_path / "run"), resume=True)
    assert resumed.timesteps == n * 256 and len(resumed.history) == n
    resumed.learn(m * 256)

    _assert_same_history(straight.history, resumed.history)
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_array_equal(a, b)
    for stream in ("minibatch_rng", "evaluation_rng"):
        assert getattr(straight, stream).bit_generator.state == getattr(resumed, stream).bit_generator.state
    assert straight.sampler.rng.bit_generator.state == resumed.sampler.rng.bit_generator.state


def test_an_interrupted_run_resumes_on_its_schedule(tmp_path):
    """A run stopped early (as a killed ``trpo-tf train`` is) and resumed to the same total continues
    its linear δ and value step-size schedules: it equals the run that never stopped."""
    config = TRPOConfig(steps_per_iteration=256, n_envs=2, value_batch_size=64, value_epochs=3,
                        max_kl_schedule="linear", value_lr_schedule="linear")
    total = 6 * 256
    straight = TRPO("Pendulum-v1", config, seed=11).learn(total)
    first = TRPO("Pendulum-v1", config, seed=11).learn(total, callback=lambda entry: entry["iteration"] < 3)
    assert first.timesteps == 3 * 256
    first.save(str(tmp_path / "run"))
    resumed = TRPO.load(str(tmp_path / "run"), resume=True)
    resumed.learn(total - resumed.timesteps)  # what trpo-tf train --resume asks for
    _assert_same_history(straight.history, resumed.history)
    assert [entry["max_kl"] for entry in resumed.history] == pytest.approx([0.01 * (6 - k) / 6 for k in range(6)])
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "HalfCheetah-v5"])
def test_environment_state_survives_a_checkpoint(tmp_path, monkeypatch, env_id):
    """Simulator state, time-limit counters and np_random come back: both copies step alike."""
    monkeypatch.chdir(tmp_path)  # MuJoCo writes its MUJOCO_LOG.TXT into the working directory
    agent = TRPO(env_id, TRPOConfig(steps_per_iteration=64, n_envs=2), seed=5)
    agent.sampler.collect(agent.policy.snapshot(), 37)
    agent.save(str(tmp_path / "run"))
    restored = TRPO.load(str(tmp_path / "run"), resume=True)

    np.testing.assert_array_equal(agent.sampler.observations, restored.sampler.observations)
    np.testing.assert_array_equal(agent.sampler.running_returns, restored.sampler.running_returns)
    original_env, restored_env = agent.sampler.env, restored.sampler.env
    assert restored.vector_env is restored_env
    action_space = original_env.action_space
    action_space.seed(0)
    for _ in range(120):  # CartPole episodes end and reset (from np_random) within this
        action = action_space.sample()
        expected, got = original_env.step(action), restored_env.step(action)
        for want, have in zip(expected[:4], got[:4]):
            np.testing.assert_array_equal(want, have)
    for a, b in zip(original_env.envs, restored_env.envs):
        assert a.unwrapped.np_random.random() == b.unwrapped.np_random.random()


class _UnpicklableCartPole(gym.Wrapper):
    """A wrapper holding a lock, which cannot be pickled."""

    def __init__(self, env):
        super().__init__(env)
        self.lock = threading.Lock()


def test_unpicklable_environment_warns_and_resumes_with_fresh_episodes(tmp_path):
    def make():
        return _UnpicklableCartPole(gym.make("CartPole-v1"))

    agent = TRPO(make(), TRPOConfig(steps_per_iteration=128), seed=2).learn(256)
    with pytest.warns(checkpoint.CheckpointWarning, match="cannot be pickled"):
        agent.save(str(tmp_path / "run"))
    with pytest.warns(checkpoint.CheckpointWarning, match="freshly reset"):
        restored = TRPO.load(str(tmp_path / "run"), env=make(), resume=True)
    assert restored.sampler.observations is None
    assert restored.timesteps == 256
    restored.learn(256)
    assert [e["iteration"] for e in restored.history] == [1, 2, 3, 4]


def test_interrupted_save_leaves_previous_checkpoint_current(tmp_path):
    """Half-written files of the next checkpoint (a kill during save) do not affect loading."""
    run = str(tmp_path / "run")
    config = TRPOConfig(steps_per_iteration=128)
    agent = TRPO("CartPole-v1", config, seed=1).learn(128)
    agent.save(run)
    agent.learn(128)
    elsewhere = str(tmp_path / "elsewhere")
    shutil.copytree(run, elsewhere)
    agent.save(elsewhere)  # a complete ckpt-2, copied over truncated as if the writer was killed
    directory = os.path.join(run, checkpoint.CHECKPOINT_DIR)
    for name in os.listdir(os.path.join(elsewhere, checkpoint.CHECKPOINT_DIR)):
        if name.startswith("ckpt-2"):
            with open(os.path.join(elsewhere, checkpoint.CHECKPOINT_DIR, name), "rb") as source:
                data = source.read()
            with open(os.path.join(directory, name), "wb") as target:
                target.write(data[: len(data) // 2])

    assert checkpoint.latest(run).endswith("ckpt-1")
    restored = TRPO.load(run)
    assert restored.timesteps == 128 and len(restored.history) == 1


def test_kill_9_while_checkpointing_every_iteration(tmp_path):
    """SIGKILL at arbitrary moments of a train-and-save loop: the current checkpoint always loads."""
    run = str(tmp_path / "run")
    script = textwrap.dedent(f"""
        from trpo_tf import TRPO, TRPOConfig
        agent = TRPO("CartPole-v1", TRPOConfig(steps_per_iteration=64, value_epochs=1), seed=3)
        while True:
            agent.iterate()
            agent.save({run!r})
    """)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    kill_9_after_checkpoint(process, run, iteration=3, delay=0.137)

    last = checkpoint.latest(run)
    iteration = checkpoint.iteration_of(last)
    restored = TRPO.load(run)
    assert len(restored.history) == iteration
    assert restored.timesteps == 64 * iteration
    assert [e["iteration"] for e in restored.history] == list(range(1, iteration + 1))


def test_restore_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(checkpoint.RunDirError, match="no run directory"):
        TRPO.load(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoint.RunDirError, match="not a trpo_tf run directory"):
        TRPO.load(str(tmp_path / "empty"))

    run = str(tmp_path / "run")
    agent = TRPO("CartPole-v1", TRPOConfig(steps_per_iteration=128), seed=1)
    checkpoint.write_run(run, agent)
    with pytest.raises(checkpoint.RunDirError, match="no checkpoint yet"):
        TRPO.load(run)

    agent.learn(128)
    agent.save(run)
    data = [name for name in os.listdir(os.path.join(run, "checkpoints")) if ".data-" in name][0]
    with open(os.path.join(run, "checkpoints", data), "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(checkpoint.RunDirError, match="ckpt-1 cannot be restored"):
        TRPO.load(run)

    with open(os.path.join(run, "run.json"), "w") as handle:
        handle.write("{not json")
    with pytest.raises(checkpoint.RunDirError, match="run.json is unreadable or corrupted"):
        TRPO.load(run)


def test_save_refuses_a_directory_of_another_run(tmp_path):
    run = str(tmp_path / "run")
    TRPO("CartPole-v1", TRPOConfig(steps_per_iteration=128), seed=1).save(run)
    with pytest.raises(checkpoint.RunDirError, match="seed 1 .agent: 2.*max_kl"):
        TRPO("CartPole-v1", TRPOConfig(steps_per_iteration=128, max_kl=0.02), seed=2).save(run)


def test_read_run_and_checkpoint_state(tmp_path):
    run = str(tmp_path / "run")
    config = TRPOConfig(steps_per_iteration=128, policy_hidden=(16,))
    agent = TRPO("CartPole-v1", config, seed=4).learn(256)
    path = agent.save(run)
    assert path.endswith("ckpt-2")
    assert agent.save(run) == path  # same iteration: nothing new written
    assert checkpoint.read_run(run) == ("CartPole-v1", config, 4)
    state = checkpoint.checkpoint_state(path)
    assert state["timesteps"] == 256 and state["iteration"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # CartPole pickles: no warning
        agent.learn(128)
        agent.save(run)


def test_loading_a_run_of_an_unregistered_environment_asks_for_it(tmp_path):
    import gymnasium as gym

    class Unregistered(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,))
        action_space = gym.spaces.Discrete(2)

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(2, np.float32), {}

        def step(self, action):
            return np.zeros(2, np.float32), 1.0, False, True, {}

    agent = TRPO(Unregistered(), TRPOConfig(steps_per_iteration=64, value_epochs=1), seed=0).learn(64)
    with pytest.warns(checkpoint.CheckpointWarning, match="cannot be pickled"):  # a class local to this test
        agent.save(str(tmp_path / "run"))
    with pytest.raises(ValueError, match="pass TRPO.load\\(run_dir, env=...\\)"):
        TRPO.load(str(tmp_path / "run"))
    with pytest.warns(checkpoint.CheckpointWarning, match="freshly reset"):
        assert TRPO.load(str(tmp_path / "run"), env=Unregistered(), resume=True).timesteps == 64


def test_loading_without_resume_never_unpickles_the_environment_state(tmp_path, monkeypatch):
    """A crafted environment pickle runs code when unpickled; TRPO.load without resume does not touch it."""
    run = str(tmp_path / "run")
    TRPO("CartPole-v1", TRPOConfig(steps_per_iteration=64, value_epochs=1), seed=0).learn(64).save(run)
    calls = []
    monkeypatch.setattr(pickle, "loads", lambda *args, **kwargs: calls.append(args) or {})
    monkeypatch.setattr(pickle, "load", lambda *args, **kwargs: calls.append(args) or {})
    agent = TRPO.load(run)
    assert agent.timesteps == 64 and agent.sampler.observations is None and calls == []
    agent.evaluate(episodes=1)
    assert calls == []
    with pytest.warns(checkpoint.CheckpointWarning):
        TRPO.load(run, resume=True)  # resuming does unpickle (here through the stub, which gives no state)
    assert len(calls) == 1
