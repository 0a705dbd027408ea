"""Sampling workers: local processes and Ray actors behind the sampler's interface."""

import math
import os
import re
import sys

import gymnasium as gym
import numpy as np
import pytest
import yaml

from trpo_tf import TRPO, TRPOConfig
from trpo_tf.errors import ConfigError, EnvironmentValueError, InputError
from trpo_tf.sampling import InProcessSampler, SerialVectorEnv, make_env
from trpo_tf.sampling.workers import start_workers

SMALL = TRPOConfig(steps_per_iteration=256, n_envs=2, n_workers=2, policy_hidden=(16,), value_hidden=(16,),
                   value_epochs=1)
TIMING = {"fps", "sampling_seconds", "advantage_seconds", "policy_step_seconds", "value_fit_seconds"}


class TipOver:
    """A deterministic CartPole actor that pushes the pole further the way it leans (short
    episodes): picklable by module path."""

    def act(self, observations, rng):
        actions = (observations[:, 2] < 0).astype(np.int64)
        return actions, actions


def _comparable(history):
    return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in entry.items()
             if k not in TIMING} for entry in history]


def test_two_workers_record_what_one_sampler_stepping_all_environments_records(monkeypatch):
    """Reference: an in-process Sampler over 4 environments seeded 7..10; the workers hold 2 each."""
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(os.path.abspath(__file__)))  # workers import TipOver
    reference = InProcessSampler(SerialVectorEnv([lambda: make_env("CartPole-v1")] * 4), seed=7,
                        rng=np.random.default_rng(0))
    workers = start_workers("CartPole-v1", None, n_envs=4, n_workers=2, backend="local", seed=7,
                            stream=np.random.SeedSequence(0))
    processes = [handle.process for handle in workers.handles]
    try:
        for _ in range(2):  # episodes carry over between batches
            want, got = reference.collect(TipOver(), 60), workers.collect(TipOver(), 60)
            assert len(want.episode_returns) > 8
            for field in ("observations", "actions", "rewards", "terminated", "truncated", "final_observations",
                          "final_index", "last_observations"):
                np.testing.assert_array_equal(getattr(want, field), getattr(got, field), err_msg=field)
            assert want.episode_returns == got.episode_returns
            assert want.episode_lengths == got.episode_lengths
    finally:
        workers.close()
        reference.close()
    assert all(process.poll() is not None for process in processes)


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "CartPole-v1", "FrozenLake-v1"])
def test_a_snapshot_acts_in_another_process_without_tensorflow(env_id):
    """What a worker does: unpickle the snapshot, act; the actions equal the TensorFlow policy's."""
    import pickle
    import subprocess

    with TRPO(env_id, TRPOConfig(n_envs=1), seed=0) as agent:
        observations = np.stack([agent.observation_space.sample() for _ in range(5)])
        expected = agent.predict(observations)
        snapshot = pickle.dumps(agent.policy.snapshot())
    code = ("import pickle, sys; import numpy as np; snapshot = pickle.loads(sys.stdin.buffer.read()); "
            f"print(snapshot.act(np.array({observations.tolist()!r}), None)[0].tolist()); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'tensorflow_probability'}))")
    process = subprocess.run([sys.executable, "-c", code], input=snapshot, capture_output=True, timeout=120)
    assert process.returncode == 0, process.stderr.decode()
    actions, imported = process.stdout.decode().strip().splitlines()
    np.testing.assert_allclose(np.array(eval(actions)), expected, atol=1e-5)
    assert imported == "[]"


def test_worker_histories_repeat_and_workers_stop_with_the_agent():
    runs = []
    for _ in range(2):
        with TRPO("Pendulum-v1", SMALL, seed=3) as agent:
            agent.learn(512)
            handles = list(agent.sampler.handles)
            runs.append(_comparable(agent.history))
        assert all(handle.process.poll() is not None for handle in handles)
    assert runs[0] == runs[1]


def test_resuming_with_workers_matches_an_uninterrupted_run(tmp_path):
    with TRPO("CartPole-v1", SMALL, seed=5) as straight:
        straight.learn(4 * 256)
    with TRPO("CartPole-v1", SMALL, seed=5) as first:
        first.learn(2 * 256).save(str(tmp_path / "run"))
    with TRPO.load(str(tmp_path / "run"), resume=True) as resumed:
        resumed.learn(2 * 256)
        assert _comparable(resumed.history) == _comparable(straight.history)


@pytest.mark.parametrize("changes, message", [
    ({"n_envs": 3, "n_workers": 2}, "n_envs .3. must be a multiple of n_workers .2."),
    ({"n_envs": 2, "n_workers": 4}, "n_envs .2. must be a multiple of n_workers .4."),  # more workers than envs
    ({"n_workers": 0}, "n_workers must be an integer >= 1"),
    ({"sampler": "dask"}, "sampler must be one of .'local', 'ray'."),
    ({"restart_workers": True}, "restart_workers needs sampling workers"),
    ({"restart_workers": 1, "n_workers": 2, "n_envs": 2}, "restart_workers must be True or False"),
])
def test_worker_settings_are_validated(changes, message):
    with pytest.raises(ConfigError, match=message):
        TRPOConfig(**changes)


def test_workers_need_an_environment_id():
    with pytest.raises(InputError, match="sampling workers build their own environments from an environment id"):
        TRPO(gym.make("CartPole-v1"), TRPOConfig(n_workers=2, n_envs=2))


@pytest.mark.parametrize("env_id, changes", [("CartPole-v1", {}), ("Pendulum-v1", {}),
                                             ("CartPole-v1", {"recurrent": "gru", "recurrent_units": 8})],
                         ids=["CartPole-v1", "Pendulum-v1", "CartPole-v1-gru"])
def test_ray_actors_give_the_history_of_local_worker_processes(env_id, changes):
    """Ray actors and local worker processes record the same history (a recurrent policy's states carried the
    same way in both)."""
    import ray  # the [ray] extra, installed by .ci/run

    histories = {}
    try:
        for sampler in ("local", "ray"):
            with TRPO(env_id, SMALL.replace(sampler=sampler, **changes), seed=1) as agent:
                agent.learn(512)
                histories[sampler] = _comparable(agent.history)
    finally:
        ray.shutdown()
    assert histories["local"] == histories["ray"]


def test_train_with_workers_on_the_command_line_records_them(tmp_path, capsys):
    from trpo_tf import cli

    run = tmp_path / "run"
    assert cli.main(["train", "CartPole-v1", "--workers", "2", "--timesteps", "256", "--set", "steps_per_iteration=256",
                     "--logdir", str(run), "--quiet"]) == 0
    recorded = TRPOConfig.from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    assert (recorded.n_workers, recorded.n_envs, recorded.sampler) == (2, 2, "local")
    assert cli.main(["train", "CartPole-v1", "--workers", "3", "--logdir", str(tmp_path / "other"),
                     "--set", "steps_per_iteration=256"]) == 2
    assert "steps_per_iteration (256) must be a multiple of n_envs (3)" in capsys.readouterr().err


def test_asking_for_ray_without_it_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError, as when it is not installed
    with pytest.raises(InputError, match=r"sampler='ray' needs Ray, which is not installed: pip install -e '.\[ray\]'"):
        start_workers("CartPole-v1", None, n_envs=2, n_workers=2, backend="ray", seed=0,
                      stream=np.random.SeedSequence(0))


def test_workers_make_an_environment_registered_by_a_module_named_in_the_id(tmp_path, monkeypatch):
    """"module:Env-v0": each process imports the module, which registers the environment."""
    (tmp_path / "registers_cartpole.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('ShortCartPole-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv',"
        " max_episode_steps=20)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with TRPO("registers_cartpole:ShortCartPole-v0", SMALL, seed=0) as agent:
        agent.learn(256)
        assert max(agent.sampler.collect(agent.policy.snapshot(), 30).episode_lengths) <= 20  # its time limit


def test_a_killed_worker_is_named_and_does_not_hang_the_learner():
    import signal

    with TRPO("CartPole-v1", SMALL, seed=0) as agent:
        agent.learn(256)
        processes = [handle.process for handle in agent.sampler.handles]
        victim = processes[1]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        with pytest.raises(RuntimeError, match=r"sampler worker 1 of 2 \(environments 1–1, on \S+ \([^)]*\), pid \d+\) "
                                                     r"died \(exit code -9\)"):
            agent.learn(256)
    assert all(process.poll() is not None for process in processes)  # close() stopped the survivor too


def test_a_killed_worker_is_replaced_with_restart_workers_and_training_goes_on():
    import signal

    with TRPO("CartPole-v1", SMALL.replace(restart_workers=True), seed=0) as agent:
        agent.learn(256)
        victim = agent.sampler.handles[0].process
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        with pytest.warns(UserWarning, match=r"sampler worker 0 of 2 \(environments 0–0, on .*pid \d+\) died \(exit code -9\); "
                                             "replacing it with fresh environments"):
            agent.learn(512)
        assert [entry["worker_restarts"] for entry in agent.history] == [0, 1, 0]
        assert [entry["timesteps"] for entry in agent.history] == [256, 512, 768]  # the segment was sampled again
        assert agent.sampler.handles[0].process.poll() is None and agent.sampler.handles[0].process is not victim


FLAKY_MODULE = """
import os
import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv


class Flaky(CartPoleEnv):
    \"\"\"CartPole whose step raises once, in whichever environment first takes the flag file.\"\"\"

    def step(self, action):
        try:
            os.remove(os.environ["FLAKY_FLAG"])
        except FileNotFoundError:
            return super().step(action)
        raise RuntimeError("the simulator lost its licence")


class NanFromSeedOne(CartPoleEnv):
    \"\"\"CartPole that returns NaN after a few steps in the environment first reset with seed 1.\"\"\"

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.first_seed, self.steps = seed, 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        observation, reward, terminated, truncated, info = super().step(action)
        self.steps += 1
        if self.first_seed == 1 and self.steps == 5:
            observation = np.full_like(observation, np.nan)
        return observation, reward, terminated, truncated, info


gym.register("Flaky-v0", entry_point="flaky_envs:Flaky", max_episode_steps=50)
gym.register("NanFromSeedOne-v0", entry_point="flaky_envs:NanFromSeedOne", max_episode_steps=50)
"""


@pytest.fixture
def flaky_envs(tmp_path, monkeypatch):
    """A module registering Flaky-v0 and NanFromSeedOne-v0, importable by worker processes; the flag file's path."""
    (tmp_path / "flaky_envs.py").write_text(FLAKY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    flag = tmp_path / "raise-once"
    monkeypatch.setenv("FLAKY_FLAG", str(flag))
    return flag


def test_an_environment_raising_in_a_worker_is_raised_naming_the_worker(flaky_envs):
    with TRPO("flaky_envs:Flaky-v0", SMALL, seed=0) as agent:
        agent.learn(256)
        flaky_envs.touch()
        with pytest.raises(RuntimeError, match="the simulator lost its licence") as raised:
            agent.learn(256)
    assert any(re.fullmatch(r"raised in sampler worker [01] of 2 \(environments ([01])–\1, on .*pid \d+\)", note)
               for note in raised.value.__notes__)


def test_an_environment_raising_in_a_worker_is_replaced_with_restart_workers(flaky_envs):
    with TRPO("flaky_envs:Flaky-v0", SMALL.replace(restart_workers=True), seed=0) as agent:
        agent.learn(256)
        flaky_envs.touch()
        with pytest.warns(UserWarning, match="the simulator lost its licence"):
            agent.learn(512)
        assert [entry["worker_restarts"] for entry in agent.history] == [0, 1, 0]
        assert not flaky_envs.exists()


def test_a_bad_value_in_a_worker_names_the_environment_among_all_of_them(flaky_envs):
    """Worker 1's only environment is environment 1 of the run (reset with seed 0 + 1), not its local 0."""
    with TRPO("flaky_envs:NanFromSeedOne-v0", SMALL.replace(restart_workers=True), seed=0) as agent:
        with pytest.raises(EnvironmentValueError, match=r"^environment 1 \(NanFromSeedOne-v0\) returned a "
                                                       r"non-finite observation \[nan, .* after 5 environment steps"):
            agent.learn(256)  # a bad value names a bug to fix: never restarted


def test_a_killed_ray_actor_is_replaced_with_restart_workers():
    import ray

    try:
        with TRPO("CartPole-v1", SMALL.replace(sampler="ray", restart_workers=True), seed=0) as agent:
            agent.learn(256)
            ray.kill(agent.sampler.handles[1].actor)
            with pytest.warns(UserWarning, match=r"sampler worker 1 of 2 \(environments 1–1, on .*Ray node \w+\) died \(Ray: "):
                agent.learn(256)
            assert [entry["worker_restarts"] for entry in agent.history] == [0, 1]
    finally:
        ray.shutdown()


def test_more_ray_actors_than_the_cluster_has_cpus_is_refused_instead_of_waiting_forever():
    import ray

    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    try:
        with pytest.raises(InputError, match="3 Ray actors need 3 CPUs .one each., but the Ray cluster has 2"):
            start_workers("CartPole-v1", None, n_envs=3, n_workers=3, backend="ray", seed=0,
                          stream=np.random.SeedSequence(0))
    finally:
        ray.shutdown()
