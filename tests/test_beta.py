"""The Beta policy for bounded Box actions (Chou et al., 2017), against independent computations.

The head's densities against scipy.stats.beta with the affine map to [low, high], its KL against a
Monte-Carlo estimate, the curvature product against an explicit Hessian of the mean KL written out
here, NumPy and SavedModel sampling against TFP's Beta CDF (Kolmogorov–Smirnov bounds), exports
against the agent, checkpoints against an uninterrupted run, and clear refusals for spaces the Beta
cannot model.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp
from ai_edge_litert.interpreter import Interpreter

from trpo_tf import TRPO, TRPOConfig, export
from trpo_tf.config import HVP_METHODS
from trpo_tf.errors import ConfigError, ExportError, UnsupportedSpaceError
from trpo_tf.policies import action_head, kl_divergence, make_policy
from curvature import assert_curvature_product_matches, explicit_hessian
from trpo_tf.update import PolicyUpdate

SPACE = gym.spaces.Box(np.array([-2.0, 0.5], np.float32), np.array([1.0, 4.0], np.float32))
OBSERVATIONS = gym.spaces.Box(-np.inf, np.inf, shape=(3,))
TINY = TRPOConfig(steps_per_iteration=256, policy_hidden=(16,), value_hidden=(16,), action_distribution="beta")
KS_999 = 1.95  # P(√n · D_n > 1.95) ≈ 0.001 for the Kolmogorov distribution
# For draws no seed can repeat (the sample signature's stateful RandomGamma ops), a bound a correct
# sampler crosses about once in 370,000 runs: P(√n · D_n > 2.6) ≈ 2·exp(−2·2.6²) ≈ 2.7e-6.
KS_UNSEEDED = 2.6


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def concentrations(outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """α, β [B, K] from network outputs [B, 2K], as Chou et al.'s parametrization: 1 + softplus."""
    size = outputs.shape[1] // 2
    return 1.0 + softplus(outputs[:, :size]), 1.0 + softplus(outputs[:, size:])


def beta_distribution(outputs: np.ndarray, space: gym.spaces.Box = SPACE) -> scipy.stats.rv_continuous:
    """scipy's Beta on [low, high] of ``space`` (loc = low, scale = high − low) for outputs [B, 2K]."""
    alpha, beta = concentrations(outputs.astype(np.float64))
    return scipy.stats.beta(alpha, beta, loc=space.low, scale=space.high - space.low)


def random_outputs(rng: np.random.Generator, batch: int) -> np.ndarray:
    return rng.normal(scale=1.5, size=(batch, 4)).astype(np.float32)


def ks_distance(samples: np.ndarray, cdf: np.ndarray) -> float:
    """Kolmogorov–Smirnov distance of sorted ``samples``' empirical CDF to ``cdf`` (the model CDF at them)."""
    n = len(samples)
    upper = np.arange(1, n + 1) / n - cdf
    lower = cdf - np.arange(n) / n
    return float(max(upper.max(), lower.max()))


# --------------------------------------------------------------------------- the distribution


def test_log_prob_entropy_and_mean_match_scipy_with_the_affine_map():
    head = action_head(SPACE, distribution="beta")
    rng = np.random.default_rng(0)
    outputs = random_outputs(rng, 6)
    reference = beta_distribution(outputs)
    actions = head.action_distribution.act(outputs, {}, rng)
    assert np.all((actions > SPACE.low) & (actions < SPACE.high))
    distribution = head.distribution([tf.constant(outputs)])
    np.testing.assert_allclose(distribution.log_prob(actions).numpy(), reference.logpdf(actions).sum(-1),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(distribution.entropy().numpy(), reference.entropy().sum(-1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(head.deterministic([tf.constant(outputs)]).numpy(), reference.mean(), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(head.action_distribution.act(outputs, {}, None), reference.mean(), rtol=1e-5,
                               atol=1e-5)
    named = head.named_parameters([tf.constant(outputs)])
    np.testing.assert_allclose(named["alpha"].numpy(), reference.args[0], rtol=1e-5)
    np.testing.assert_allclose(named["beta"].numpy(), reference.args[1], rtol=1e-5)


def test_kl_matches_monte_carlo_estimate():
    """KL(old ‖ new) = E_old[log old(a) − log new(a)], from 200k draws of old (scipy's sampler)."""
    rng = np.random.default_rng(1)
    head = action_head(SPACE, distribution="beta")
    first, second = random_outputs(rng, 4), random_outputs(rng, 4)
    old, new = beta_distribution(first), beta_distribution(second)
    samples = old.rvs(size=(200_000, 4, 2), random_state=rng)
    estimate = np.mean(old.logpdf(samples).sum(-1) - new.logpdf(samples).sum(-1), axis=0)
    exact = kl_divergence(head.distribution([tf.constant(first)]), head.distribution([tf.constant(second)])).numpy()
    np.testing.assert_allclose(exact, estimate, rtol=0.05, atol=5e-3)
    assert np.all(exact > 0.01)


def test_numpy_sampling_follows_tfps_beta_cdf():
    """Kolmogorov–Smirnov distance of 40k NumPy draws per dimension to TFP's Beta CDF, at 0.1% significance."""
    rng = np.random.default_rng(2)
    head = action_head(SPACE, distribution="beta")
    outputs = random_outputs(rng, 1)
    draws = 40_000
    actions = head.action_distribution.act(np.repeat(outputs, draws, axis=0), {}, rng)
    alpha, beta = (c.numpy()[0] for c in head.action_distribution.concentrations(tf.constant(outputs)))
    for k in range(2):
        unit = np.sort((actions[:, k].astype(np.float64) - SPACE.low[k]) / (SPACE.high[k] - SPACE.low[k]))
        cdf = tfp.distributions.Beta(np.float64(alpha[k]), np.float64(beta[k])).cdf(unit).numpy()
        assert ks_distance(unit, cdf) < KS_999 / np.sqrt(draws), k
    # The bound can fail: the last dimension's draws against a Beta whose α is 10% off.
    shifted = tfp.distributions.Beta(np.float64(alpha[1] * 1.1), np.float64(beta[1])).cdf(unit).numpy()
    assert ks_distance(unit, shifted) > KS_999 / np.sqrt(draws)


def test_stored_actions_stay_inside_the_bounds_where_the_density_is_finite():
    """Concentrations that put nearly all mass within float32 rounding of a bound still give finite log-probabilities.

    Without the margin (checked below), draws that round onto a bound have log-probability −∞.
    """
    space = gym.spaces.Box(np.float32(-1.0), np.float32(1.0), shape=(2,))
    head = action_head(space, distribution="beta")
    outputs = np.array([[0.0, 3e7, 3e7, 0.0]] * 5000, np.float32)  # α ≈ 1.7, β ≈ 3e7: u ~ 6e-8; and the reverse
    distribution = head.distribution([tf.constant(outputs)])
    beta = head.action_distribution
    actions = beta.act(outputs, {}, np.random.default_rng(3))
    assert np.all((actions > space.low) & (actions < space.high))
    assert np.all(np.isfinite(distribution.log_prob(actions).numpy()))
    unguarded_beta = copy.copy(beta)
    unguarded_beta.margin = np.zeros(2)
    unguarded = unguarded_beta.act(outputs, {}, np.random.default_rng(3))
    assert not np.all(np.isfinite(distribution.log_prob(unguarded).numpy()))


def kl_by_formula(alpha_p: tf.Tensor, beta_p: tf.Tensor, alpha_q: tf.Tensor, beta_q: tf.Tensor) -> tf.Tensor:
    """KL(Beta(αp, βp) ‖ Beta(αq, βq)) summed over dimensions, per row (the affine map cancels)."""
    def log_beta(a, b):
        return tf.math.lgamma(a) + tf.math.lgamma(b) - tf.math.lgamma(a + b)
    digamma = tf.math.digamma
    kl = (log_beta(alpha_q, beta_q) - log_beta(alpha_p, beta_p) + (alpha_p - alpha_q) * digamma(alpha_p)
          + (beta_p - beta_q) * digamma(beta_p) + (alpha_q - alpha_p + beta_q - beta_p) * digamma(alpha_p + beta_p))
    return tf.reduce_sum(kl, axis=-1)


def small_policy(seed: int = 0):
    policy = make_policy(OBSERVATIONS, SPACE, (4,), "tanh", 0.0, normalize_observations=True, seed=seed,
                         action_distribution="beta")
    kernel = policy.network.layers[-1].kernel  # off its near-zero start, so states differ
    kernel.assign(np.random.default_rng(seed).normal(scale=0.5, size=kernel.shape).astype(np.float32))
    return policy


@pytest.mark.parametrize("method", HVP_METHODS)
def test_curvature_product_equals_the_explicit_hessian_of_the_mean_kl(method):
    policy = small_policy(seed=2)
    features = tf.constant(np.random.default_rng(3).normal(size=(32, 3)).astype(np.float32))
    variables = policy.trainable_parameters()
    outputs_old = tf.constant(policy.network(features))
    alpha_old, beta_old = (1.0 + tf.math.softplus(half) for half in tf.split(outputs_old, 2, axis=1))
    theta = tf.concat([tf.reshape(v, [-1]) for v in variables], axis=0)

    def mean_kl(flat):
        """The network from a flat θ (tanh hidden, linear output) → mean KL by formula."""
        shapes = [v.shape for v in variables]
        kernel_1, bias_1, kernel_2, bias_2 = [tf.reshape(p, s) for p, s in
                                              zip(tf.split(flat, [int(np.prod(s)) for s in shapes]), shapes)]
        outputs = tf.tanh(features @ kernel_1 + bias_1) @ kernel_2 + bias_2
        alpha, beta = (1.0 + tf.math.softplus(half) for half in tf.split(outputs, 2, axis=1))
        return tf.reduce_mean(kl_by_formula(alpha_old, beta_old, alpha, beta))

    assert len(variables) == 4  # the Beta head owns no parameters
    assert_curvature_product_matches(policy, method, features, explicit_hessian(mean_kl, theta))


def test_the_step_keeps_the_kl_recomputed_by_formula_within_max_kl_and_reports_it():
    config = TRPOConfig(max_kl=0.01)
    policy = small_policy()
    update = PolicyUpdate(policy, config)
    rng = np.random.default_rng(5)
    features = rng.normal(size=(256, 3)).astype(np.float32)
    moved = 0
    for _ in range(3):
        actions = policy.snapshot().act(features, rng)[1]
        before = concentrations(policy.network(features).numpy())
        result = update(features, actions, rng.normal(size=256).astype(np.float32))
        after = concentrations(policy.network(features).numpy())
        kl = kl_by_formula(*(tf.constant(c, tf.float64) for c in before + after)).numpy().mean()
        assert kl <= config.max_kl * (1 + 1e-3)
        assert kl == pytest.approx(float(result["kl"]), rel=1e-3, abs=1e-7)
        moved += bool(result["accepted"]) and kl > 1e-4
    assert moved


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("space, problem", [
    (gym.spaces.Box(-np.inf, np.inf, shape=(2,)), r"unbounded in dimension\(s\) \[0, 1\]"),
    (gym.spaces.Box(np.array([-1.0, -1.0], np.float32), np.array([1.0, np.inf], np.float32)),
     r"unbounded in dimension\(s\) \[1\]"),
    (gym.spaces.Discrete(3), r"needs a Box action space with finite bounds, got Discrete\(3\)"),
], ids=["unbounded", "partly-unbounded", "discrete"])
def test_spaces_the_beta_cannot_model_are_refused_by_name(space, problem):
    with pytest.raises(UnsupportedSpaceError, match=r"action_distribution='beta' .*" + problem):
        action_head(space, distribution="beta")


def test_config_refuses_an_unknown_distribution_and_the_agent_an_unbounded_space():
    with pytest.raises(ConfigError, match=r"action_distribution must be one of \('gaussian', 'beta'\), got 'gamma'"):
        TRPOConfig(action_distribution="gamma")
    with pytest.raises(UnsupportedSpaceError, match="unbounded"):
        TRPO(UnboundedEnv(), TINY, seed=0)


class UnboundedEnv(gym.Env):
    """A one-step environment with an unbounded Box action space."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,))
    action_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,))

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


# --------------------------------------------------------------------------- exports and checkpoints


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A Pendulum-v1 Beta agent after two iterations, its export and its TFLite file (with the warning)."""
    agent = TRPO("Pendulum-v1", TINY, seed=4).learn(512)
    folder = tmp_path_factory.mktemp("beta")
    path = agent.export(str(folder / "model"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lite = export.to_tflite(path, str(folder / "model.tflite"))
    observations = (np.random.default_rng(6).standard_normal((7, 3)) * 4.0).astype(np.float32)
    return agent, path, lite, [str(w.message) for w in caught], observations


def call(path: str, signature: str, observations: np.ndarray) -> dict[str, np.ndarray]:
    outputs = tf.saved_model.load(path).signatures[signature](observation=tf.constant(observations))
    return {key: value.numpy() for key, value in outputs.items()}


def test_export_signatures_answer_what_the_agent_computes(exported):
    agent, path, _, _, observations = exported
    snapshot = agent.policy.snapshot()
    from trpo_tf.policies import numpy_forward  # the NumPy forward pass, independent of the SavedModel
    outputs = numpy_forward(snapshot.layers, snapshot.features(observations))
    reference = beta_distribution(outputs, agent.action_space)
    parameters = call(path, "distribution", observations)
    np.testing.assert_allclose(parameters["alpha"], reference.args[0], rtol=1e-5)
    np.testing.assert_allclose(parameters["beta"], reference.args[1], rtol=1e-5)
    action = call(path, "serving_default", observations)["action"]
    np.testing.assert_allclose(action, reference.mean(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(action, agent.predict(observations), atol=1e-6)
    metadata = export.read_metadata(path)
    assert metadata["config"]["action_distribution"] == "beta"
    assert metadata["unconvertible_signatures"] == {"sample": agent.policy.head.sample_conversion_problem}


def test_sample_signature_follows_tfps_beta_cdf(exported):
    """Kolmogorov–Smirnov distance of 40k draws of ``sample`` at one observation to the Beta of ``distribution``.

    The draws are unseeded, so the bound is KS_UNSEEDED (with 0.1%, one CI run in about a dozen
    failed at √n·D = 1.97 with 4,000 draws); a Beta whose α is 10% off still exceeds it."""
    _, path, _, _, observations = exported
    draws = 40_000
    actions = call(path, "sample", np.repeat(observations[:1], draws, axis=0))["action"][:, 0].astype(np.float64)
    assert np.all((actions >= SPACE_PENDULUM.low) & (actions <= SPACE_PENDULUM.high))
    parameters = call(path, "distribution", observations[:1])
    unit = np.sort((actions + 2.0) / 4.0)  # Pendulum's torque is in [-2, 2]
    alpha, beta = np.float64(parameters["alpha"][0, 0]), np.float64(parameters["beta"][0, 0])
    cdf = tfp.distributions.Beta(alpha, beta).cdf(unit).numpy()
    assert ks_distance(unit, cdf) < KS_UNSEEDED / np.sqrt(draws)
    shifted = tfp.distributions.Beta(alpha * 1.1, beta).cdf(unit).numpy()
    assert ks_distance(unit, shifted) > KS_UNSEEDED / np.sqrt(draws)


SPACE_PENDULUM = gym.make("Pendulum-v1").action_space

LOAD_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
for name in ("trpo_tf", "tensorflow_probability", "keras"):
    assert sys.modules.get(name) is None, name  # blocked: importing it would fail
model = tf.saved_model.load(sys.argv[1])
np.save(sys.argv[3], model.signatures["serving_default"](observation=tf.constant(np.load(sys.argv[2])))["action"].numpy())
"""


def test_serving_default_in_a_process_with_tensorflow_alone(exported, tmp_path):
    agent, path, _, _, observations = exported
    np.save(tmp_path / "observations.npy", observations)
    blocker = "import sys\nfor name in ('trpo_tf', 'tensorflow_probability', 'keras'): sys.modules[name] = None\n"
    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT)
    result = subprocess.run([sys.executable, "-I", "-c", blocker + f"exec(open({str(script)!r}).read())", path,
                             str(tmp_path / "observations.npy"), str(tmp_path / "actions.npy")],
                            capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "actions.npy"), agent.predict(observations), atol=1e-6)


def test_tflite_keeps_the_deterministic_signatures_and_says_it_leaves_out_sample(exported):
    _, path, lite, caught, observations = exported
    assert any("leaves out signature(s) sample: Beta sampling draws Gamma variates" in m for m in caught), caught
    interpreter = Interpreter(model_path=lite)
    assert set(interpreter.get_signature_list()) == {"serving_default", "distribution", "value"}
    for signature in ("serving_default", "distribution", "value"):
        expected = call(path, signature, observations)
        got = interpreter.get_signature_runner(signature)(observation=observations)
        assert got.keys() == expected.keys()
        for key in expected:  # the README's TFLite tolerance: 1e-4 · max(1, |SavedModel|)
            excess = np.abs(got[key] - expected[key]) - 1e-4 * np.maximum(1.0, np.abs(expected[key]))
            assert np.all(excess <= 0), (signature, key)
    with pytest.raises(ExportError, match="TFLite cannot run signature 'sample' .*RandomGamma"):
        export.to_tflite(path, lite + ".sample", signatures=["sample"])


def test_onnx_keeps_the_deterministic_signatures_and_says_it_leaves_out_sample(exported, tmp_path):
    import onnxruntime

    _, path, _, _, observations = exported
    with pytest.warns(UserWarning, match=r"the ONNX conversion leaves out signature\(s\) sample: Beta sampling"):
        files = export.to_onnx(path, str(tmp_path / "onnx"))
    assert sorted(files) == ["distribution", "serving_default", "value"]
    session = onnxruntime.InferenceSession(files["serving_default"], providers=["CPUExecutionProvider"])
    action = session.run(["action"], {"observation": observations})[0]
    np.testing.assert_allclose(action, call(path, "serving_default", observations)["action"], rtol=1e-5, atol=1e-5)
    with pytest.raises(ExportError, match="ONNX cannot run signature 'sample'"):
        export.to_onnx(path, str(tmp_path / "onnx"), signatures=["sample"])


def test_litert_really_cannot_convert_the_beta_sampling(exported):
    """Why ``sample`` is left out: the converter refuses RandomGamma (if this fails, LiteRT learned it: keep sample)."""
    _, path, _, _, _ = exported
    converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["sample"], tags={"serve"})
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.experimental_enable_resource_variables = False
    with pytest.raises(Exception, match="RandomGamma"):
        converter.convert()


def test_resume_gives_the_run_an_uninterrupted_agent_has(tmp_path):
    """2 + 1 iterations with a checkpoint between == 3 in one go: the same history and weights."""
    straight = TRPO("Pendulum-v1", TINY, seed=8).learn(3 * 256)
    first = TRPO("Pendulum-v1", TINY, seed=8).learn(2 * 256)
    first.save(str(tmp_path / "run"))
    resumed = TRPO.load(str(tmp_path / "run"), resume=True)
    assert resumed.config.action_distribution == "beta" and resumed.policy.head.kind == "beta"
    resumed.learn(256)
    timing = ("fps",)
    for want, got in zip(straight.history, resumed.history, strict=True):
        assert {k: v for k, v in want.items() if k not in timing and not k.endswith("_seconds")} == \
            {k: v for k, v in got.items() if k not in timing and not k.endswith("_seconds")}
    for a, b in zip(straight.policy.weights + straight.value.weights, resumed.policy.weights + resumed.value.weights,
                    strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
