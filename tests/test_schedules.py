"""Linear schedules of δ (``max_kl_schedule``) and of the value fit's step size (``value_lr_schedule``).

The expected values are the formula written out here: value × (1 − steps taken before the
iteration / the total ``learn`` trains to). Resuming on a schedule: tests/test_checkpoint.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from trpo_tf import TRPO, TRPOConfig
from trpo_tf.errors import ConfigError


@pytest.mark.parametrize("field", ["max_kl_schedule", "value_lr_schedule"])
def test_an_unknown_schedule_is_refused_naming_the_field_and_the_choices(field):
    message = rf"TRPOConfig\.{field} must be one of \('constant', 'linear'\), got 'cosine'"
    with pytest.raises(ConfigError, match=message):
        TRPOConfig(**{field: "cosine"})


def test_delta_falls_linearly_over_the_run_and_bounds_every_step():
    steps, iterations = 512, 4
    config = TRPOConfig(steps_per_iteration=steps, max_kl=0.02, max_kl_schedule="linear", cg_damping=0.0,
                        value_epochs=2)
    agent = TRPO("Pendulum-v1", config, seed=3).learn(iterations * steps)
    expected = [0.02, 0.015, 0.01, 0.005]  # 0.02 × (1 − k·512 / 2048)
    assert [entry["max_kl"] for entry in agent.history] == pytest.approx(expected)
    assert [entry["value_lr"] for entry in agent.history] == [1e-3] * iterations  # its own schedule: constant
    for entry, delta in zip(agent.history, expected):
        # The step is scaled so that ½sᵀ(H + λI)s = δ; without damping (λ = 0) that is ½sᵀHs.
        assert entry["kl_predicted"] == pytest.approx(delta, rel=1e-3)
        assert entry["kl"] <= delta * (1 + 1e-5)  # the line search held the step to this iteration's δ


def test_the_value_fit_steps_at_the_scheduled_rate():
    """Adam's first step moves every weight whose gradient is far above ε by the learning rate itself
    (m̂ = g, v̂ = g²), so the weights' change reads off the step size the fit used."""
    steps = 256
    config = TRPOConfig(steps_per_iteration=steps, value_epochs=1, value_batch_size=steps, value_lr=1e-3,
                        value_lr_schedule="linear")
    agent = TRPO("Pendulum-v1", config, seed=5)
    agent.total_timesteps, agent.timesteps = 4 * steps, 3 * steps  # a quarter of the run to go
    before = [w.numpy() for w in agent.value.trainable_weights]
    entry = agent.iterate()
    assert entry["value_lr"] == pytest.approx(2.5e-4)
    moved = np.concatenate([np.abs(w.numpy() - b).ravel() for w, b in zip(agent.value.trainable_weights, before)])
    assert moved.max() <= 2.5e-4 * (1 + 1e-4)
    assert np.median(moved) == pytest.approx(2.5e-4, rel=1e-3)


def test_a_constant_schedule_keeps_the_configured_values():
    agent = TRPO("CartPole-v1", TRPOConfig(steps_per_iteration=128, value_epochs=1, max_kl=0.03), seed=0)
    agent.learn(256)
    assert [(entry["max_kl"], entry["value_lr"]) for entry in agent.history] == [(0.03, 1e-3)] * 2
