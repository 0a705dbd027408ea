"""Image observations through a CNN and Dict observations: learning, the CNN's numbers, exports, bad spaces.

Two small agents are trained once for the module on tasks whose correct action can be read only
from the pixels (tests/image_envs.py): 12×12×1 uint8 frames through the small CNN, and the same
frames with a ±1 vector as a Dict. Their exports are checked in a process where only TensorFlow
can be imported, under LiteRT and through the REST contract.
"""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from image_envs import DICT_ID, EPISODE, IMAGE_ID
from test_export import isolated_python
from trpo_tf import TRPO, TRPOConfig, export
from trpo_tf.errors import InputError, UnsupportedSpaceError
from trpo_tf.policies import ObservationEncoder, kl_divergence
from trpo_tf.policies.cnn import CONVOLUTIONS, Trunk
from trpo_tf.update import PolicyUpdate

CONFIG = TRPOConfig(steps_per_iteration=256, n_envs=4, max_kl=0.1, policy_hidden=(), value_hidden=(32,),
                    value_epochs=2, cnn_features=32)
STEPS = {IMAGE_ID: 1024, DICT_ID: 2048}
BATCH = 6


def observations_of(env_id: str, count: int, seed: int) -> dict[str, np.ndarray] | np.ndarray:
    """``count`` raw observations of the environment, batched [count, ...] (a dict of batches for a Dict)."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    seen = [env.step(env.action_space.sample())[0] for _ in range(count)]
    if isinstance(seen[0], dict):
        return {key: np.stack([s[key] for s in seen]) for key in seen[0]}
    return np.stack(seen)


def feed(observations: dict[str, np.ndarray] | np.ndarray) -> dict[str, tf.Tensor]:
    """Observations as a signature's keyword arguments (one per Dict key, else ``observation``)."""
    named = observations if isinstance(observations, dict) else {"observation": observations}
    return {key: tf.constant(value) for key, value in named.items()}


@pytest.fixture(scope="module")
def agents() -> dict[str, tuple[TRPO, list[np.ndarray]]]:
    """Each task's agent after training, with the trunk weights it started from."""
    trained = {}
    for env_id, steps in STEPS.items():
        agent = TRPO(env_id, CONFIG, seed=0)
        initial = [v.numpy() for v in agent.policy.trunk.trainable_variables]
        trained[env_id] = agent.learn(steps), initial
    return trained


@pytest.fixture(scope="module")
def exports(agents, tmp_path_factory) -> dict[str, str]:
    return {env_id: agent.export(str(tmp_path_factory.mktemp("exports") / env_id), evaluation=None)
            for env_id, (agent, _) in agents.items()}


# --------------------------------------------------------------------------- learning

@pytest.mark.parametrize("env_id", sorted(STEPS))
def test_learns_to_read_the_pixels(env_id, agents):
    """≥ 95% of the best return (4 per episode; a policy blind to the pixels gets 1, or 0.5 with the Dict)."""
    agent, initial = agents[env_id]
    assert agent.evaluate(episodes=50)["mean_return"] >= 0.95 * EPISODE
    assert all(not np.allclose(before, after.numpy()) for before, after in
               zip(initial, agent.policy.trunk.trainable_variables)), "the trust-region step moves the CNN"
    policy_variables = {id(v) for v in agent.policy.trainable_parameters()}
    assert not policy_variables & {id(v.value) for v in agent.value.trainable_variables}, \
        "the value function has its own CNN"
    assert all(entry["kl"] <= CONFIG.max_kl for entry in agent.history)


def test_batches_keep_uint8_frames(agents):
    """Frames are stored as uint8 (a quarter of float32), a Dict's vector part as float32."""
    image = agents[IMAGE_ID][0].sampler.collect(agents[IMAGE_ID][0].policy.snapshot(), 3)
    assert image.observations.dtype == np.uint8 and image.observations.shape == (3, 4, 12, 12, 1)
    assert image.last_observations.dtype == np.uint8 and image.final_observations.dtype == np.uint8
    both = agents[DICT_ID][0].sampler.collect(agents[DICT_ID][0].policy.snapshot(), 3)
    assert both.observations["image"].dtype == np.uint8 and both.observations["side"].dtype == np.float32
    assert both.observations["side"].shape == (3, 4, 1) and both.final_observations["image"].shape[1:] == (12, 12, 1)


# --------------------------------------------------------------------------- the CNN's numbers

def numpy_convolution(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int) -> np.ndarray:
    """ReLU of a valid convolution, x [B, H, W, C], kernel [k, k, C, F] → [B, H', W', F], by its definition."""
    k = kernel.shape[0]
    rows, cols = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    out = np.zeros((len(x), rows, cols, kernel.shape[-1]))
    for i in range(rows):
        for j in range(cols):
            patch = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]  # [B, k, k, C]
            out[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2])) + bias
    return np.maximum(out, 0.0)


@pytest.mark.parametrize("space, encoder", [
    (gym.spaces.Box(0, 255, (7, 6, 2), np.uint8), "auto"),  # small CNN, channels last
    (gym.spaces.Box(0, 255, (2, 7, 6), np.uint8), "auto"),  # small CNN, channels first
    (gym.spaces.Box(0.0, 1.0, (5, 5, 3), np.float32), "small_cnn"),  # float frames in [0, 1]: not rescaled
    (gym.spaces.Box(0, 255, (4, 36, 37), np.uint8), "auto"),  # the Nature CNN, channels first (ALE-style)
])
def test_trunk_computes_the_cnn_by_definition(space, encoder):
    """Trunk outputs = the convolutions and the dense layer written out in NumPy on frames × 1/255 (uint8),
    moved to channels last where the space has channels first."""
    observation_encoder = ObservationEncoder(space, encoder)
    trunk = Trunk(observation_encoder, features=5, seed=3)
    rng = np.random.default_rng(0)
    frames = (rng.integers(0, 256, (3,) + space.shape).astype(np.uint8) if space.dtype == np.uint8
              else rng.random((3,) + space.shape).astype(np.float32))
    outputs = trunk((tf.zeros([3, 0]), {"observation": tf.constant(frames)})).numpy()

    x = frames.astype(np.float64) / (255.0 if space.dtype == np.uint8 else 1.0)
    if space.shape[0] < space.shape[2]:
        x = x.transpose(0, 2, 3, 1)
    cnn = trunk.cnns[0]
    cnn_kind = observation_encoder.images["observation"].cnn
    convolutions = [layer for layer in cnn.layers if layer.name.startswith("conv_")]
    assert len(convolutions) == len(CONVOLUTIONS[cnn_kind]) == (3 if min(x.shape[1:3]) >= 36 else 1)
    for layer, (_, _, stride) in zip(convolutions, CONVOLUTIONS[cnn_kind]):
        x = numpy_convolution(x, layer.kernel.numpy(), layer.bias.numpy(), stride)
    dense = cnn.get_layer("dense")
    expected = np.maximum(x.reshape(len(x), -1) @ dense.kernel.numpy() + dense.bias.numpy(), 0.0)
    assert outputs.shape == (3, 5)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5)


def test_curvature_through_the_cnn_matches_finite_differences(agents):
    """H·v of the mean KL(π_old ‖ π_θ) through the CNN, by each hvp_method, against central differences
    of the KL's gradient along v: (∇KL(θ + εv) − ∇KL(θ − εv)) / 2ε, π_old frozen at θ."""
    policy = agents[DICT_ID][0].policy
    inputs = tf.nest.map_structure(tf.constant, policy.snapshot().features(observations_of(DICT_ID, 8, seed=1)))
    variables = policy.trainable_parameters()
    theta = [v.numpy() for v in variables]
    sizes = [int(np.prod(v.shape)) for v in variables]
    vector = np.random.default_rng(2).normal(size=sum(sizes)).astype(np.float32)
    old = policy.frozen_distribution(inputs)

    def kl_gradient(step: float) -> np.ndarray:
        for variable, start, delta in zip(variables, theta, np.split(vector * step, np.cumsum(sizes)[:-1])):
            variable.assign(start + delta.reshape(start.shape))
        with tf.GradientTape() as tape:
            kl = tf.reduce_mean(kl_divergence(old, policy.distribution(inputs)))
        gradient = tape.gradient(kl, variables)
        for variable, start in zip(variables, theta):
            variable.assign(start)
        return np.concatenate([g.numpy().reshape(-1) for g in gradient])

    epsilon = 3e-4  # small enough that few ReLUs of the CNN switch between θ ± εv
    expected = (kl_gradient(epsilon) - kl_gradient(-epsilon)) / (2 * epsilon)
    assert np.linalg.norm(expected) > 0
    for method in ("forward_over_backward", "double_backward", "gauss_newton"):
        product = PolicyUpdate(policy, CONFIG.replace(hvp_method=method)).curvature_product(inputs)(vector)
        assert np.linalg.norm(product.numpy() - expected) <= 0.01 * np.linalg.norm(expected), method
