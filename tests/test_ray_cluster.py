"""Sampling on more than one machine, simulated on this one: Ray actors spread over the nodes of a
``ray.cluster_utils.Cluster``, a node removed mid-run, a cluster address where nothing answers; and
environments that exist only in the user's script, sent to the workers by value."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import gymnasium as gym
import pytest

from trpo_tf import TRPO, TRPOConfig
from trpo_tf.errors import InputError, UnknownEnvironmentError, WorkerRestartWarning
from trpo_tf.sampling.workers import WorkerDiedError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = TRPOConfig(steps_per_iteration=256, n_envs=2, n_workers=2, policy_hidden=(16,), value_hidden=(16,),
                   value_epochs=1)


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_ray_address_where_nothing_answers_fails_within_the_bound_naming_it(monkeypatch):
    import ray

    assert not ray.is_initialized()
    port = _free_loopback_port()  # closed again: nothing listens there
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(InputError, match=rf"no Ray cluster answers at 127\.0\.0\.1:{port} .* within 2 s .*"
                                         r"'ray start --head' .*ray_connect_timeout"):
        TRPO("CartPole-v1", SMALL.replace(sampler="ray", ray_connect_timeout=2), seed=0)
    assert time.monotonic() - start < 60  # ray.init alone waits for ever
    assert not ray.is_initialized()


SCRIPT = textwrap.dedent("""
    import gymnasium as gym
    import numpy as np
    from trpo_tf import TRPO, TRPOConfig

    class Corridor(gym.Env):
        '''Defined in the script only: walk right to the end of a corridor of 5 cells.'''
        observation_space = gym.spaces.Box(0.0, 4.0, (1,), np.float32)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.cell = 0
            return np.array([self.cell], np.float32), {}

        def step(self, action):
            self.cell = min(4, max(0, self.cell + (1 if int(action) == 1 else -1)))
            return np.array([self.cell], np.float32), float(self.cell == 4), self.cell == 4, False, {}

    gym.register("ScriptOnly-v0", entry_point=Corridor, max_episode_steps=20)
    config = TRPOConfig(steps_per_iteration=256, n_envs=2, n_workers=2, policy_hidden=(8,), value_hidden=(8,))
    with TRPO("ScriptOnly-v0", config, seed=0) as agent:
        agent.learn(512)
        print(len(agent.history), agent.history[-1]["episodes"] > 0)
""")


def test_an_environment_registered_only_in_the_users_script_works_with_worker_processes(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    process = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=600, env=dict(os.environ, PYTHONPATH=REPO))
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.split() == ["2", "True"]


def test_an_environment_whose_creator_cannot_travel_is_refused_naming_the_module_form():
    lock = threading.Lock()  # a lock cannot be pickled, so neither can a creator that holds one

    def make_with_lock() -> gym.Env:
        with lock:
            return gym.make("CartPole-v1")

    gym.register("Unsendable-v0", entry_point=make_with_lock)
    try:
        with pytest.raises(UnknownEnvironmentError, match=r"environment id 'Unsendable-v0' is registered in this "
                                                          r"process, but its creator .* cannot be sent to sampling "
                                                          r"workers .*pass 'module:Unsendable-v0'"):
            TRPO("Unsendable-v0", SMALL, seed=0)
    finally:
        del gym.registry["Unsendable-v0"]


def _nodes_of(agent: TRPO) -> list[str]:
    """The Ray node id each sampling worker runs on, from where the workers said they run."""
    return [re.search(r"Ray node (\w+)", location).group(1) for location in agent.sampler.locations]


def test_actors_spread_over_nodes_and_a_lost_node_costs_its_workers_segments():
    """Three one-CPU nodes (the head has none): two actors land on two nodes. Removing a node mid-run
    loses its actor: with restart_workers a replacement starts on the node left and training goes on,
    the restart in the history; without, training stops naming the worker and its node."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        nodes = {node.node_id: node for node in [cluster.add_node(num_cpus=1) for _ in range(3)]}
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, include_dashboard=False)
        with TRPO("CartPole-v1", SMALL.replace(sampler="ray", restart_workers=True), seed=0) as agent:
            agent.learn(256)
            first = _nodes_of(agent)
            assert len(set(first)) == 2 and set(first) <= set(nodes)  # spread: one actor per node
            cluster.remove_node(nodes.pop(first[0]))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                agent.learn(256)
            assert [entry["worker_restarts"] for entry in agent.history] == [0, 1]
            assert any(issubclass(w.category, WorkerRestartWarning) and first[0] in str(w.message) for w in caught)
            assert _nodes_of(agent)[0] not in (first[0], first[1])  # the replacement runs on the third node
            assert agent.history[-1]["timesteps"] == 512  # the lost segment was sampled again: nothing missing
        with TRPO("CartPole-v1", SMALL.replace(sampler="ray"), seed=1) as agent:
            agent.learn(256)
            victim = _nodes_of(agent)[1]
            cluster.remove_node(nodes.pop(victim))
            with pytest.raises(WorkerDiedError, match=rf"sampler worker 1 of 2 \(environments 1–1, on .*Ray node "
                                                      rf"{victim}\) died \(Ray: "):
                agent.learn(256)
    finally:
        ray.shutdown()
        cluster.shutdown()
