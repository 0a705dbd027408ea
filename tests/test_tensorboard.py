"""TensorBoard, installed with the package, reads a run's event files: every numeric history key,
at step = timesteps, as the scalars plugin's data."""

from __future__ import annotations

import numpy as np
import pytest
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.util import tensor_util

from trpo_tf import TRPO, TRPOConfig, monitor


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run directory, agent.history) of 3 iterations of 64 steps on CartPole, logged by TensorBoardLogger."""
    logdir = str(tmp_path_factory.mktemp("tensorboard"))
    logger = monitor.TensorBoardLogger(logdir)
    with TRPO("CartPole-v1", TRPOConfig(steps_per_iteration=64, policy_hidden=(8,), value_hidden=(8,),
                                        value_epochs=1), seed=0) as agent:
        try:
            agent.learn(192, callback=logger)
        finally:
            logger.close()
        return logdir, list(agent.history)


def test_tensorboard_reads_every_numeric_history_key_as_a_scalar(run):
    logdir, history = run
    accumulator = plugin_event_accumulator.EventAccumulator(logdir, size_guidance={"tensors": 0})
    accumulator.Reload()
    numeric = [key for key, value in history[0].items() if isinstance(value, (bool, int, float))]
    assert len(numeric) >= 10 and "kl" in numeric and "episode_return_mean" in numeric
    assert sorted(accumulator.Tags()["tensors"]) == sorted(f"trpo/{key}" for key in numeric)
    for key in numeric:
        tag = f"trpo/{key}"
        assert accumulator.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
        events = accumulator.Tensors(tag)
        assert [event.step for event in events] == [entry["timesteps"] for entry in history] == [64, 128, 192]
        values = [float(tensor_util.make_ndarray(event.tensor_proto)) for event in events]
        expected = [float(entry[key]) for entry in history]
        np.testing.assert_allclose(values, np.float32(expected), rtol=1e-6, err_msg=tag)
