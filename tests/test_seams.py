"""The seams a contributor extends: a new action distribution or observation encoder is one class that
registers itself, and the rest of the package (config, training, acting, export) takes it as it is.

Each test defines its class here, as a contributor's new module would, and removes it from the
registry afterwards. MultiDiscrete observations, read by the one-hot encoder, are checked the same way.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from trpo_tf import TRPO, TRPOConfig
from trpo_tf.errors import ConfigError, EnvironmentValueError
from trpo_tf.policies import distributions, encoders
from trpo_tf.policies.distributions import ActionDistribution
from trpo_tf.policies.encoders import LeafEncoder

SMALL = TRPOConfig(steps_per_iteration=200, n_envs=2, policy_hidden=(16,), value_hidden=(16,), value_epochs=2)


def define_laplace() -> type:
    """A Laplace distribution, registered when this runs (so other test modules never see it)."""

    class Laplace(ActionDistribution):
        """Box → a Laplace per element: location from the network, a free log-scale (a contributor's example)."""

        name = "laplace_for_tests"
        spaces = (gym.spaces.Box,)
        configurable = True

        def __init__(self, space: gym.spaces.Box):
            self.action_shape = tuple(space.shape)
            self.param_size = int(np.prod(space.shape))
            self.action_dtype = "float32"

        @classmethod
        def for_space(cls, space: gym.Space, init_log_std: float = 0.0) -> "Laplace":
            assert isinstance(space, gym.spaces.Box)
            return cls(space)

        def free_parameters(self) -> dict[str, tuple[tuple[int, ...], float]]:
            return {"log_scale": ((self.param_size,), -0.5)}

        def parameters(self, outputs: tf.Tensor, free: Mapping[str, tf.Tensor]) -> list[tf.Tensor]:
            return [outputs, tf.identity(free["log_scale"])]

        def tfp_distribution(self, parameters: Sequence[tf.Tensor]) -> Any:
            import tensorflow_probability as tfp
            location, log_scale = parameters
            return tfp.distributions.Independent(tfp.distributions.Laplace(location, tf.exp(log_scale)), 1)

        def named_parameters(self, parameters: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
            return {"location": parameters[0], "log_scale": tf.zeros_like(parameters[0]) + parameters[1]}

        def deterministic(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
            return tf.reshape(parameters[0], (-1,) + self.action_shape)

        def sample(self, parameters: Sequence[tf.Tensor]) -> tf.Tensor:
            uniform = tf.random.uniform(tf.shape(parameters[0]), -0.5, 0.5)
            noise = -tf.sign(uniform) * tf.math.log1p(-2.0 * tf.abs(uniform))
            return tf.reshape(parameters[0] + tf.exp(parameters[1]) * noise, (-1,) + self.action_shape)

        def act(self, outputs: np.ndarray, free: Any, rng: np.random.Generator | None) -> np.ndarray:
            if rng is None:
                return outputs
            return (outputs + rng.laplace(0.0, np.exp(free["log_scale"]), outputs.shape)).astype(np.float32)

        def to_env(self, actions: np.ndarray) -> np.ndarray:
            return actions.reshape((len(actions),) + self.action_shape)

    return Laplace


@pytest.fixture
def laplace():
    laplace = define_laplace()
    yield laplace
    del distributions.DISTRIBUTIONS[laplace.name]


def test_a_new_distribution_is_one_class_that_config_training_and_export_take(laplace, tmp_path):
    assert laplace.name in distributions.configurable_names()
    config = SMALL.replace(action_distribution=laplace.name)
    with TRPO("Pendulum-v1", config, seed=0) as agent:
        agent.learn(400)
        assert agent.policy.head.kind == laplace.name
        assert all(entry["kl"] <= config.max_kl for entry in agent.history)  # its KL bounds the step
        assert agent.policy.head.log_scale.numpy().tolist() != [-0.5]  # the free parameter trained
        observations = np.stack([agent.observation_space.sample() for _ in range(6)])
        np.testing.assert_allclose(agent.policy.actor().act(observations, None)[1], agent.predict(observations),
                                   atol=1e-5)  # the NumPy side acts as the TensorFlow side
        features = agent.policy.features(tf.constant(observations))
        location, log_scale = (p.numpy() for p in agent.policy.distribution_parameters(features))
        actions = np.random.default_rng(1).normal(size=location.shape).astype(np.float32)
        expected = scipy.stats.laplace.logpdf(actions, location, np.exp(log_scale)).sum(axis=1)
        np.testing.assert_allclose(agent.policy.distribution(features).log_prob(actions).numpy(), expected, rtol=1e-4)
        path = agent.export(str(tmp_path / "laplace"), episodes=0)
    served = tf.saved_model.load(path).signatures["distribution"](observation=tf.constant(observations))
    np.testing.assert_allclose(served["location"].numpy(), location, atol=1e-5)


def test_an_unregistered_distribution_name_is_refused_listing_the_registered_ones():
    with pytest.raises(ConfigError, match=r"action_distribution must be one of \('gaussian', 'beta'\)"):
        TRPOConfig(action_distribution="laplace_for_tests")


class BitsEncoder(LeafEncoder):
    """MultiBinary observations → their bits as float features (a contributor's example)."""

    spaces = (gym.spaces.MultiBinary,)

    @classmethod
    def for_space(cls, space: gym.Space, encoder: str, name: str) -> "BitsEncoder":
        return cls(space, name, "float32", int(np.prod(space.shape)))

    def numpy(self, observations: Any) -> np.ndarray:
        return np.asarray(observations, np.float32).reshape(len(observations), self.dim)

    def tensorflow(self, observations: Any) -> tf.Tensor:
        return tf.reshape(tf.cast(observations, tf.float32), [-1, self.dim])

    def tensorflow_feature_mask(self, entry_mask: Any) -> tf.Tensor:
        return tf.reshape(entry_mask, [-1, self.dim])


class BitsEnv(gym.Env):
    """Three random bits; the reward is 1 when the action is their parity."""

    observation_space = gym.spaces.MultiBinary(3)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.bits, self.steps = self.observation_space.sample(), 0
        return self.bits, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(int(action) == int(self.bits.sum()) % 2)
        self.steps += 1
        self.bits = self.np_random.integers(0, 2, 3).astype(np.int8)
        return self.bits, reward, False, self.steps >= 10, {}


@pytest.fixture
def bits_encoder():
    yield BitsEncoder
    encoders.ENCODERS.remove(BitsEncoder)


def test_a_new_encoder_is_one_class_that_training_and_acting_take(bits_encoder):
    assert isinstance(encoders.make_encoder(gym.spaces.MultiBinary(3)), BitsEncoder)
    with TRPO(BitsEnv(), SMALL.replace(n_envs=1), seed=0) as agent:
        agent.learn(400)
        observations = np.array([[0, 1, 1], [1, 1, 1]], np.int8)
        np.testing.assert_array_equal(agent.policy.encoder.numpy(observations), observations.astype(np.float32))
        np.testing.assert_array_equal(agent.policy.actor().act(observations, None)[1], agent.predict(observations))


MULTI = gym.spaces.MultiDiscrete([3, 2], start=[1, -1])


def test_multidiscrete_observations_are_concatenated_one_hot_vectors_in_numpy_and_tensorflow():
    encoder = encoders.make_encoder(MULTI)
    observations = np.array([[1, -1], [3, 0], [2, 0]])
    expected = np.array([[1, 0, 0, 1, 0], [0, 0, 1, 0, 1], [0, 1, 0, 0, 1]], np.float32)  # written out by hand
    np.testing.assert_array_equal(encoder.numpy(observations), expected)
    np.testing.assert_array_equal(encoder.tensorflow(tf.constant(observations, tf.float32)).numpy(), expected)
    with pytest.raises(ValueError, match=r"MultiDiscrete observations must be whole numbers in \[1, 4\), \[-1, 1\)"):
        encoder.check(np.array([[4, 0]]))


class MultiDiscreteEnv(gym.Env):
    """MultiDiscrete([3, 2]) observations; the reward is 1 when the action names the first value (minus 1).
    ``bad_step`` returns an out-of-range observation at that step."""

    observation_space = MULTI
    action_space = gym.spaces.Discrete(3)

    def __init__(self, bad_step: int | None = None):
        self.bad_step = bad_step

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.steps = 0
        self.observation = self.observation_space.sample()
        return self.observation, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = float(int(action) == int(self.observation[0]) - 1)
        self.steps += 1
        self.observation = self.observation_space.sample()
        if self.steps == self.bad_step:
            self.observation = np.array([1, 5])
        return self.observation, reward, False, self.steps >= 10, {}


def test_an_agent_learns_from_multidiscrete_observations_and_refuses_values_outside_them():
    with TRPO(MultiDiscreteEnv(), SMALL.replace(n_envs=1, steps_per_iteration=500, max_kl=0.05), seed=0) as agent:
        agent.learn(5000)
        assert agent.history[-1]["episode_return_mean"] > 6.0  # a blind policy's is 10/3
    with TRPO(MultiDiscreteEnv(bad_step=3), SMALL.replace(n_envs=1), seed=0) as agent:
        with pytest.raises(EnvironmentValueError, match=r"observation \[1, 5\] outside MultiDiscrete\(\[3 2\], "
                                                        r"start=\[ 1 -1\]\): it must be whole numbers in \[1, 4\), "
                                                        r"\[-1, 1\)"):
            agent.learn(200)
