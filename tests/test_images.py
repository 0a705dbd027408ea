"""Image observations through a CNN and Dict observations: learning, the CNN's numbers, exports, bad spaces.

Three small agents are trained once for the module on tasks whose correct action can be read only
from the pixels (tests/image_envs.py): 12×12×1 uint8 frames through the small CNN, the same frames
with a ±1 vector as a Dict, and 12×12×1 bool grids (as MinAtar gives). Their exports are checked in
a process where only TensorFlow can be imported, under LiteRT and through the REST contract.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from image_envs import DICT_ID, EPISODE, GRID_ID, IMAGE_ID, SIZE
from test_cli import _command as command_line
from test_export import REPO, episode_returns, isolated_python
from trpo_tf import TRPO, TRPOConfig, cli, export
from trpo_tf.errors import EnvironmentValueError, InputError, UnsupportedSpaceError
from trpo_tf.evaluation import run_episodes
from trpo_tf.policies import kl_divergence, make_encoder
from trpo_tf.policies.cnn import CONVOLUTIONS, Trunk
from trpo_tf.sampling import InProcessSampler, make_vector_env
from trpo_tf.update import PolicyUpdate

CONFIG = TRPOConfig(steps_per_iteration=256, n_envs=4, max_kl=0.1, policy_hidden=(), value_hidden=(32,),
                    value_epochs=2, cnn_features=32)
STEPS = {IMAGE_ID: 1024, DICT_ID: 2048, GRID_ID: 1024}
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
    return {key: tf.constant(value) for key, value in feed_names(observations).items()}


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
    return {env_id: agent.export(str(tmp_path_factory.mktemp("exports") / env_id), episodes=0)
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
    image = agents[IMAGE_ID][0].sampler.collect(agents[IMAGE_ID][0].policy.actor(), 3)
    assert image.observations.dtype == np.uint8 and image.observations.shape == (3, 4, 12, 12, 1)
    assert image.last_observations.dtype == np.uint8 and image.final_observations.dtype == np.uint8
    grid = agents[GRID_ID][0].sampler.collect(agents[GRID_ID][0].policy.actor(), 3)
    assert grid.observations.dtype == np.uint8 and set(np.unique(grid.observations)) == {0, 1}
    both = agents[DICT_ID][0].sampler.collect(agents[DICT_ID][0].policy.actor(), 3)
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
    observation_encoder = make_encoder(space, encoder)
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
    inputs = tf.nest.map_structure(tf.constant, policy.actor().features(observations_of(DICT_ID, 8, seed=1)))
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


# --------------------------------------------------------------------------- exports

ISOLATED_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf

for job in json.loads(sys.argv[1]):
    model = tf.saved_model.load(job["model"])
    inputs = {key: tf.constant(value) for key, value in np.load(job["observations"]).items()}
    answers = {}
    for name in ("serving_default", "distribution", "value"):
        answers.update({f"{name}/{key}": value.numpy() for key, value in model.signatures[name](**inputs).items()})
    np.savez(job["answers"], **answers)
"""


def test_exports_load_with_tensorflow_alone_and_answer_what_the_agent_does(agents, exports, tmp_path):
    """In a process where trpo_tf, TFP, Keras and gymnasium cannot be imported: actions = predict, logits and
    values = the agent's Keras models on the same observations; the inputs are named by the Dict keys."""
    jobs, observations = [], {}
    for env_id in sorted(STEPS):
        observations[env_id] = observations_of(env_id, BATCH, seed=5)
        np.savez(tmp_path / f"{env_id}.npz", **feed_names(observations[env_id]))
        jobs.append({"model": exports[env_id], "observations": str(tmp_path / f"{env_id}.npz"),
                     "answers": str(tmp_path / f"{env_id}-answers.npz")})
    (tmp_path / "load.py").write_text(ISOLATED_SCRIPT)
    isolated_python(str(tmp_path / "load.py"), json.dumps(jobs), cwd=str(tmp_path))

    for env_id, job in zip(sorted(STEPS), jobs):
        agent, answers = agents[env_id][0], np.load(job["answers"])
        inputs = agent.policy.actor().features(observations[env_id])
        np.testing.assert_array_equal(answers["serving_default/action"], agent.predict(observations[env_id]))
        np.testing.assert_allclose(answers["distribution/logits"],
                                   agent.policy.network_outputs(inputs).numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(answers["value/value"], agent.value(inputs).numpy()[:, 0], rtol=1e-5, atol=1e-5)
        signature = export.read_metadata(exports[env_id])["signatures"]["serving_default"]["inputs"]
        expected = {"image": "uint8", "side": "float32"} if env_id == DICT_ID else {"observation": "uint8"}
        assert {name: spec["dtype"] for name, spec in signature.items()} == expected


def feed_names(observations: dict[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    """Observations by input name, as an exported signature takes them: bool grids as uint8 0/1."""
    named = observations if isinstance(observations, dict) else {"observation": observations}
    return {key: value.astype(np.uint8) if value.dtype == np.bool_ else value for key, value in named.items()}


@pytest.mark.parametrize("env_id", sorted(STEPS))
def test_tflite_takes_named_inputs_and_matches_the_savedmodel(env_id, agents, exports, tmp_path):
    path = export.to_tflite(exports[env_id], str(tmp_path / "model.tflite"))
    model = tf.saved_model.load(exports[env_id])
    observations = observations_of(env_id, BATCH, seed=6)
    details = Interpreter(model_path=path).get_signature_runner("serving_default").get_input_details()
    assert {name: np.dtype(d["dtype"]).name for name, d in details.items()} == \
        {name: value.dtype.name for name, value in feed_names(observations).items()}
    for signature in export.DETERMINISTIC_SIGNATURES:
        expected = {k: v.numpy() for k, v in model.signatures[signature](**feed(observations)).items()}
        answered = export.litert_runner(path, signature)(observations)
        assert answered.keys() == expected.keys()
        for key in expected:
            np.testing.assert_allclose(answered[key], expected[key], rtol=1e-4, atol=1e-4, err_msg=key)
    with pytest.raises(ValueError, match="do not match the signature's inputs|does not fit"):
        export.litert_runner(path)(np.zeros((2, 3), np.float32))
    assert example_returns("run_tflite.py", path, env_id, tmp_path) == reference_returns(agents[env_id][0], env_id)


@pytest.mark.parametrize("env_id", sorted(STEPS))
def test_onnx_takes_named_inputs_and_matches_the_savedmodel(env_id, agents, exports, tmp_path):
    """onnxruntime reads uint8 frames (bool grids as 0/1) and a Dict's keys as inputs of those names and
    answers the deterministic signatures as the SavedModel does; examples/run_onnx.py plays them."""
    onnxruntime = pytest.importorskip("onnxruntime")  # the onnx extra; .ci/run installs it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = export.to_onnx(exports[env_id], str(tmp_path / "onnx"), signatures=export.DETERMINISTIC_SIGNATURES)
    # Frames are not checked for NaN (uint8 has none); the Dict's float vector is, and ONNX drops that check.
    assert any("no operator for CheckNumerics" in str(w.message) for w in caught) == (env_id == DICT_ID)
    model = tf.saved_model.load(exports[env_id])
    observations = feed_names(observations_of(env_id, BATCH, seed=8))
    for signature in export.DETERMINISTIC_SIGNATURES:
        session = onnxruntime.InferenceSession(files[signature], providers=["CPUExecutionProvider"])
        assert {i.name: i.type for i in session.get_inputs()} == \
            {name: f"tensor({'uint8' if value.dtype == np.uint8 else 'float'})" for name, value in observations.items()}
        names = [o.name for o in session.get_outputs()]
        answered = dict(zip(names, session.run(names, observations)))
        expected = {k: v.numpy() for k, v in model.signatures[signature](**feed(observations)).items()}
        assert answered.keys() == expected.keys()
        for key in expected:
            np.testing.assert_allclose(answered[key], expected[key], rtol=1e-4, atol=1e-4, err_msg=key)
    assert example_returns("run_onnx.py", files["serving_default"], env_id, tmp_path) == \
        reference_returns(agents[env_id][0], env_id)


def example_returns(script: str, model: str, env_id: str, tmp_path) -> list[float]:
    """Returns of 2 episodes (seeds 3, 4) that ``examples/<script>`` plays with ``model``, run where
    trpo_tf, TensorFlow, TFP and Keras cannot be imported (the test environments are registered)."""
    (tmp_path / "run.py").write_text(f"import runpy, sys\nsys.path.insert(0, {os.path.dirname(__file__)!r})\n"
                                     "import image_envs\n"
                                     f"runpy.run_path({os.path.join(REPO, 'examples', script)!r}, run_name='__main__')\n")
    return episode_returns(isolated_python(str(tmp_path / "run.py"), model, "--env", env_id, "--episodes", "2",
                                           "--seed", "3", cwd=str(tmp_path),
                                           blocked=("trpo_tf", "tensorflow", "tensorflow_probability", "keras")))


def reference_returns(agent: TRPO, env_id: str) -> list[float]:
    """Returns of 2 episodes (seeds 3, 4) acted by ``agent.predict``."""
    return run_episodes(gym.make(env_id), agent.predict, 2, 3)["returns"]


@pytest.mark.parametrize("env_id", sorted(STEPS))
def test_rest_predict_takes_rows_with_named_fields_and_columns(env_id, agents, exports):
    agent = agents[env_id][0]
    observations = observations_of(env_id, BATCH, seed=7)
    named = feed_names(observations)
    rows = [{key: value[i].tolist() for key, value in named.items()} for i in range(BATCH)]
    columns = {key: value.tolist() for key, value in named.items()}
    expected = agent.predict(observations).tolist()
    answer = export.rest_predict(exports[env_id], json.dumps({"instances": rows}))
    assert json.loads(answer) == {"predictions": expected}
    assert json.loads(export.rest_predict(exports[env_id], json.dumps({"inputs": columns}))) == {"outputs": expected}
    if env_id != DICT_ID:  # one input: bare frames work too
        bare = json.dumps({"instances": observations.tolist()})
        assert json.loads(export.rest_predict(exports[env_id], bare)) == {"predictions": expected}
    else:
        missing = json.dumps({"inputs": {"image": columns["image"]}})
        error = json.loads(export.rest_predict(exports[env_id], missing))["error"]
        assert "do not match the signature's inputs" in error


@pytest.mark.parametrize("env_id", sorted(STEPS))
def test_the_command_line_evaluates_the_exports(env_id, exports, capsys):
    """``trpo-tf evaluate EXPORT`` feeds a Dict's keys to the named inputs; the export keeps the agent's return."""
    assert cli.main(["evaluate", exports[env_id], "--episodes", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mean_return"] >= 0.95 * EPISODE


def test_checkpoints_restore_the_cnns_and_the_sampler(agents, tmp_path):
    """A loaded agent acts and values as the saved one, and its sampler continues the Dict episodes."""
    for env_id in sorted(STEPS):
        agent = agents[env_id][0]
        run_dir = str(tmp_path / env_id)
        agent.save(run_dir)
        loaded = TRPO.load(run_dir, resume=True)
        observations = observations_of(env_id, BATCH, seed=8)
        np.testing.assert_array_equal(loaded.predict(observations), agent.predict(observations))
        inputs = agent.policy.actor().features(observations)
        np.testing.assert_allclose(loaded.value(inputs).numpy(), agent.value(inputs).numpy(), rtol=1e-6)
        for saved, restored in zip(tf.nest.flatten(agent.sampler.observations),
                                   tf.nest.flatten(loaded.sampler.observations)):
            np.testing.assert_array_equal(restored, saved)
        loaded.close()


# --------------------------------------------------------------------------- which spaces

def test_bool_grids_are_read_as_uint8_without_rescaling():
    """MinAtar's observation space: 0/1 cells reach the CNN as 0.0/1.0, not as 1/255."""
    image = make_encoder(gym.spaces.Box(0, 1, (10, 10, 4), np.bool_)).images["observation"]
    assert (image.cnn, image.channels_first, image.dtype, image.scale) == ("small_cnn", False, "uint8", 1.0)
    flat = make_encoder(gym.spaces.Box(0, 1, (5, 6), np.bool_))  # not rank 3: flattened into the MLP
    assert not flat.images and flat.dim == 30


@pytest.mark.parametrize("shape, cnn, channels_first", [
    ((10, 10, 4), "small_cnn", False),  # MinAtar (Breakout: 10×10×4 channels)
    ((4, 84, 84), "nature_cnn", True),  # ALE after AtariPreprocessing + FrameStackObservation(4)
    ((84, 84, 4), "nature_cnn", False),
    ((64, 64, 3), "nature_cnn", False),
    ((1, 12, 12), "small_cnn", True),
])
def test_image_spaces_get_the_cnn_and_layout(shape, cnn, channels_first):
    image = make_encoder(gym.spaces.Box(0, 255, shape, np.uint8)).images["observation"]
    assert (image.cnn, image.channels_first, image.dtype, image.scale) == (cnn, channels_first, "uint8", 1 / 255)
    flat = make_encoder(gym.spaces.Box(0, 255, shape, np.uint8), "mlp")
    assert not flat.images and flat.dim == math.prod(shape)
    forced = make_encoder(gym.spaces.Box(0, 255, shape, np.uint8), "small_cnn").images["observation"]
    assert forced.cnn == "small_cnn"


BAD_SPACES = {
    "float frames beyond [0, 1]": (gym.spaces.Box(0.0, 255.0, (12, 12, 3), np.float32), "auto",
                                   r"Box\(0.0, 255.0, \(12, 12, 3\), float32\) has rank 3 like an image.*uint8 frames"),
    "uint8 without channels": (gym.spaces.Box(0, 255, (12, 12), np.uint8), "auto",
                               r"Box\(0, 255, \(12, 12\), uint8\) holds uint8 frames without a channel axis"),
    "uint8 of rank 4": (gym.spaces.Box(0, 255, (2, 12, 12, 3), np.uint8), "auto", r"has rank 4: the CNN reads rank-3"),
    "Nature CNN on a small grid": (gym.spaces.Box(0, 255, (10, 10, 4), np.uint8), "nature_cnn",
                                   r"frames of 10×10 pixels are too small for the nature_cnn.*small_cnn"),
    "nested Dict": (gym.spaces.Dict({"a": gym.spaces.Dict({"b": gym.spaces.Discrete(2)})}), "auto",
                    r"key 'a' holds Dict.*must be Box, Discrete or MultiDiscrete \(not nested Dict or Tuple\)"),
    "Tuple in a Dict": (gym.spaces.Dict({"a": gym.spaces.Tuple([gym.spaces.Discrete(2)])}), "auto",
                        r"key 'a' holds Tuple.*must be Box, Discrete or MultiDiscrete"),
    "key that names no input": (gym.spaces.Dict({"my key": gym.spaces.Discrete(2)}), "auto",
                                r"key 'my key' cannot name an input of an exported signature"),
    "key starting with a digit": (gym.spaces.Dict({"1st": gym.spaces.Discrete(2)}), "auto", r"key '1st' cannot name"),
    "empty Dict": (gym.spaces.Dict({}), "auto", r"has no keys"),
}


@pytest.mark.parametrize("name", sorted(BAD_SPACES))
def test_bad_observation_spaces_are_named(name):
    space, encoder, message = BAD_SPACES[name]
    with pytest.raises(UnsupportedSpaceError, match=message):
        make_encoder(space, encoder)


class SpaceEnv(gym.Env):
    """Spaces and a reset to a zero observation: building the agent must fail (or not) before any step."""

    def __init__(self, observation_space: gym.Space):
        self.observation_space, self.action_space = observation_space, gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.observation_space.shape, self.observation_space.dtype), {}


class NoResetEnv(SpaceEnv):
    """gymnasium.Env's own reset, which returns None: the agent must name it."""

    def reset(self, *, seed=None, options=None):
        return gym.Env.reset(self, seed=seed)


def test_the_agent_refuses_bad_spaces_and_cnns_in_worker_processes():
    bad = BAD_SPACES["uint8 without channels"][0]
    with pytest.raises(UnsupportedSpaceError, match="without a channel axis"):
        TRPO(SpaceEnv(bad), TRPOConfig(steps_per_iteration=64))
    flattened = TRPO(SpaceEnv(bad), TRPOConfig(steps_per_iteration=64, encoder="mlp"))
    assert flattened.policy.trunk is None and flattened.policy.encoder.dim == 144
    with pytest.raises(InputError, match=r"goes through a CNN.*use n_workers=1 and sampler='local'"):
        TRPO(IMAGE_ID, TRPOConfig(steps_per_iteration=64, n_envs=2, n_workers=2))


def test_a_reset_that_returns_no_observation_and_info_is_named():
    space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    with pytest.raises(EnvironmentValueError, match=r"environment 0 \(NoResetEnv\)'s reset\(\) returned NoneType, "
                                                    r"not gymnasium's \(observation, info\)"):
        TRPO(NoResetEnv(space), TRPOConfig(steps_per_iteration=64))


class BrokenDictEnv(gym.Env):
    """A Dict environment whose step 3 returns ``bad`` instead of its observation."""

    observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (4, 4, 1), np.uint8),
                                         "side": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)})
    action_space = gym.spaces.Discrete(2)

    def __init__(self, bad: dict):
        self.bad, self.t = bad, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.good(), {}

    def good(self) -> dict:
        return {"image": np.zeros((4, 4, 1), np.uint8), "side": np.zeros(2, np.float32)}

    def step(self, action):
        self.t += 1
        return (self.bad if self.t == 3 else self.good()), 0.0, False, self.t >= 5, {}


class FirstAction:
    """Action 0 in the one environment (what the sampler acts with)."""

    def act(self, observations, rng):
        return np.zeros(1, np.int64), np.zeros(1, np.int64)


@pytest.mark.parametrize("bad, message", [
    ({"image": np.zeros((4, 4, 1), np.uint8), "side": np.array([0.0, np.nan], np.float32)},
     r"environment 0 \(BrokenDictEnv\) returned a non-finite observation part 'side' \[0.0, nan\] from step\(\) "
     r"after 3 environment steps"),
    ({"image": np.zeros((4, 4), np.uint8), "side": np.zeros(2, np.float32)},
     r"returned an observation whose 'image' is of shape \(4, 4\)"),
    ({"side": np.zeros(2, np.float32)},
     r"returned the observation \['side'\], not a dict with the keys \['image', 'side'\]"),
])
def test_a_bad_dict_observation_is_named_with_its_key(bad, message):
    sampler = InProcessSampler(make_vector_env(BrokenDictEnv(bad), 1), seed=0, rng=np.random.default_rng(0))
    with pytest.raises(EnvironmentValueError, match=message):
        sampler.collect(FirstAction(), 8)


@pytest.mark.parametrize("value", [0.5, 300, -1, 1e30])
@pytest.mark.parametrize("env_id, name", [(IMAGE_ID, "observation"), (DICT_ID, "image")])
def test_rest_predict_refuses_pixels_that_uint8_cannot_hold(exports, env_id, name, value):
    """TF Serving's contract converts JSON numbers to the input's dtype; a cast would truncate 0.5 to 0."""
    frame = np.zeros((SIZE, SIZE, 1), np.int64).tolist()
    frame[3][4][0] = value
    row = {"image": frame, "side": [1.0]} if env_id == DICT_ID else frame
    answer = json.loads(export.rest_predict(exports[env_id], json.dumps({"instances": [row]})))
    shown = int(value) if float(value).is_integer() and abs(value) < 2**53 else value
    assert answer == {"error": f"input {name!r}: {shown} does not fit uint8, which holds whole numbers from 0 to 255"}


# --------------------------------------------------------------------------- image environments by id

def test_minatar_trains_exports_and_evaluates_from_the_command_line(tmp_path):
    """Each command in a fresh process, where nothing has registered MinAtar's ids: the id registers them."""
    pytest.importorskip("minatar", reason="needs the minatar extra (pip install -e '.[minatar]')")
    run = os.path.join("runs", "MinAtar_Breakout-v1-seed0")
    commands = [
        ["train", "MinAtar/Breakout-v1", "--timesteps", "128", "--set", "steps_per_iteration=64", "--quiet"],
        ["export", run, "exported", "--eval-episodes", "1"],
        ["evaluate", run, "--episodes", "1", "--json"],
        ["evaluate", "exported", "--episodes", "1", "--json"],
    ]
    for argv in commands:
        process = subprocess.run(command_line() + argv, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=REPO),
                                 capture_output=True, text=True, timeout=600)
        assert process.returncode == 0 and process.stderr == "", (argv, process.stderr)
    assert json.loads(process.stdout)["episodes"] == 1
    with open(tmp_path / "exported" / "1" / "assets" / "metadata.json") as handle:
        metadata = json.load(handle)
    assert metadata["env_id"] == "MinAtar/Breakout-v1" and metadata["observation_space"]["shape"] == [10, 10, 4]


def test_ale_ids_register_in_a_fresh_process_without_the_ales_banner():
    pytest.importorskip("ale_py", reason="needs the atari extra (pip install -e '.[atari]')")
    script = ("from trpo_tf.sampling import make_env\n"
              "env = make_env('ALE/Breakout-v5', {'max_num_frames_per_episode': 40})\n"
              "observation, _ = env.reset(seed=0)\n"
              "print(env.observation_space.shape, observation.dtype, env.action_space)\n")
    process = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=REPO),
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    assert process.stdout == "(210, 160, 3) uint8 Discrete(4)\n" and process.stderr == ""


@pytest.mark.parametrize("env_id, package, extra", [("ALE/Breakout-v5", "ale_py", "atari"),
                                                    ("MinAtar/Breakout-v1", "minatar", "minatar")])
def test_an_image_family_without_its_package_names_the_install_command(env_id, package, extra):
    script = (f"import sys\nsys.modules[{package!r}] = None  # as when it is not installed\n"
              f"from trpo_tf import cli\nsys.exit(cli.main(['train', {env_id!r}]))\n")
    process = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=REPO),
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 2
    assert process.stderr.splitlines()[-1] == (
        f"trpo-tf: error: {env_id} is one of the {env_id.split('/')[0]} environments, which need the "
        f"{package} package: pip install -e '.[{extra}]'")
