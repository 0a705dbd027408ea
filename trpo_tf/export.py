"""SavedModel and TFLite export of a trained policy, and helpers to read exports back.

An export is a TF Serving model directory: ``OUT_DIR/<version>/`` holds ``saved_model.pb``,
``variables/`` and ``assets/metadata.json``. It loads with TensorFlow alone (no trpo_tf,
no TensorFlow Probability). Tag ``serve``; every signature takes one input,
``observation``: float32 [B, *obs_shape], raw observations (normalization is in the graph):

===================  ========================================================================
signature            outputs
===================  ========================================================================
``serving_default``  ``action`` [B, *A]: the most probable action in environment units (Box:
                     the Gaussian mean clipped to the bounds, float32; Discrete/MultiDiscrete:
                     the argmax plus the space's ``start``, int32; MultiBinary: int32 0/1)
``sample``           ``action`` [B, *A]: a random action drawn from the policy (stateful
                     random ops, which LiteRT runs), same units and dtype as above
``distribution``     Box: ``mean`` and ``log_std`` [B, *A]; Discrete: ``logits`` [B, n];
                     MultiDiscrete: ``logits`` [B, K, max(nvec)] (unused entries of shorter
                     sub-spaces are -1e9); MultiBinary: ``logits`` [B, *A]
``value``            ``value`` [B]: the value function's estimate
===================  ========================================================================

An observation of the wrong shape is refused by an ``EnsureShape`` check in the graph; a
tensor of the wrong dtype is refused by the signature (Python lists and NumPy arrays are
first converted to float32 by TensorFlow, as TF Serving converts JSON numbers).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import re
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, Callable

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from trpo_tf.policies import UnsupportedSpaceError

if TYPE_CHECKING:
    from trpo_tf.trpo import TRPO

SIGNATURES = ("serving_default", "sample", "distribution", "value")
DETERMINISTIC_SIGNATURES = ("serving_default", "distribution", "value")
INPUT_NAME = "observation"
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1
EVALUATION_EPISODES = 10

_VERSION_DIR = re.compile(r"^\d+$")


# --------------------------------------------------------------------------- SavedModel

def export_saved_model(agent: TRPO, out_dir: str, version: int | None = None,
                       evaluation: dict[str, Any] | None = None, command: str | None = None) -> str:
    """Write ``agent``'s policy as a SavedModel to ``out_dir/<version>/`` and return that path.

    ``version`` defaults to one more than the largest numeric folder in ``out_dir`` (1 for a
    new directory); an existing version is never overwritten (``FileExistsError``). The model
    is written to a hidden temporary folder and renamed into place, so a TF Serving instance
    watching ``out_dir`` never sees a half-written version.

    ``evaluation`` is a dict as returned by ``agent.evaluate`` (mean_return, std_return,
    episodes, optionally returns); when None it is measured with
    ``agent.evaluate(episodes=10)`` if the agent knows its environment id, else recorded as
    null. ``command`` (the command line that produced the policy) is recorded as given.
    """
    _check_finite_weights(agent)
    os.makedirs(out_dir, exist_ok=True)
    version = next_version(out_dir) if version is None else _checked_version(version)
    target = os.path.join(out_dir, str(version))
    if os.path.exists(target):
        raise FileExistsError(f"{target} already exists; export to another version (or leave "
                              f"version=None to use the next free one, {next_version(out_dir)})")
    metadata = build_metadata(agent, _evaluation_metadata(agent, evaluation), command)
    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=out_dir)
    try:
        write_saved_model(agent, staging, metadata)
        os.chmod(staging, 0o755)  # mkdtemp made it private; a server may run as another user
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def write_saved_model(agent: TRPO, path: str, metadata: dict[str, Any]) -> None:
    """Save ``agent``'s serving module to ``path``, ``metadata`` and the signatures to assets/metadata.json."""
    module = serving_module(agent)
    tf.saved_model.save(module, path, signatures={name: getattr(module, name) for name in SIGNATURES})
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(os.path.join(path, "assets", METADATA_FILE), "w", encoding="utf-8") as file:
        json.dump(dict(metadata, signatures=describe_signatures(module)), file, indent=2, allow_nan=False)
        file.write("\n")


def serving_module(agent: TRPO) -> tf.Module:
    """A ``tf.Module`` with the four signature functions of ``agent`` and the variables they read.

    Each function is a ``tf.function`` with input signature float32 [None, *obs_shape]
    named ``observation`` and returns a dict of tensors (see the module docstring).
    """
    spec = tf.TensorSpec((None,) + tuple(agent.encoder.shape), tf.float32, name=INPUT_NAME)
    module = tf.Module()
    # Keras 3 variables are not tracked by tf.Module; track the tf.Variables behind them.
    module.tracked_variables = [v.value for v in _exported_variables(agent)]
    for name, graph in signature_graphs(agent).items():
        setattr(module, name, tf.function(graph, input_signature=[spec]))
    return module


def signature_graphs(agent: TRPO) -> dict[str, Callable[[tf.Tensor], dict[str, tf.Tensor]]]:
    """Name → function of raw observations [B, *obs_shape] returning the signature's outputs.

    Every function first checks the observation's shape, so that a wrong one raises instead
    of being reshaped or broadcast.
    """
    obs_shape = (None,) + tuple(agent.encoder.shape)

    def checked(observation: tf.Tensor) -> tf.Tensor:
        return tf.ensure_shape(observation, obs_shape, name="check_observation_shape")

    def outputs(observation: tf.Tensor) -> tf.Tensor:
        """Raw observations → policy outputs [B, P]."""
        return agent.policy(agent.features_graph(checked(observation)))

    def serving_default(observation):
        return {"action": agent.deterministic_action_graph(checked(observation))}

    def sample(observation):
        return {"action": agent.head.sample(outputs(observation), _log_std(agent))}

    def distribution(observation):
        return agent.head.parameters(outputs(observation), _log_std(agent))

    def value(observation):
        return {"value": agent.value(agent.features_graph(checked(observation)))[:, 0]}

    return {"serving_default": serving_default, "sample": sample, "distribution": distribution,
            "value": value}


def describe_signatures(module: tf.Module) -> dict[str, Any]:
    """Name → {"inputs": {name: {dtype, shape}}, "outputs": {...}} of the module's signatures.

    Unknown dimensions (the batch) are None.
    """
    described = {}
    for name in SIGNATURES:
        function = getattr(module, name).get_concrete_function()
        inputs = function.structured_input_signature[0]
        described[name] = {"inputs": {spec.name: _describe_tensor(spec) for spec in inputs},
                           "outputs": {key: _describe_tensor(tensor)
                                       for key, tensor in sorted(function.structured_outputs.items())}}
    return described


def next_version(out_dir: str) -> int:
    """One more than the largest numeric sub-folder of ``out_dir`` (1 when there is none)."""
    return max(_numeric_versions(out_dir), default=0) + 1


def resolve_saved_model_dir(path: str) -> str:
    """``path`` itself when it holds ``saved_model.pb``, else its highest numeric version folder.

    Raises FileNotFoundError when neither holds a SavedModel.
    """
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = [v for v in _numeric_versions(path)
                if os.path.isfile(os.path.join(path, str(v), "saved_model.pb"))]
    if not versions:
        raise FileNotFoundError(f"no SavedModel at {path!r}: expected saved_model.pb in it or in a "
                                f"numeric version folder (OUT_DIR/<version>/saved_model.pb)")
    return os.path.join(path, str(max(versions)))


def _log_std(agent: TRPO) -> tf.Variable | None:
    """The policy's log-std variable [P] (Gaussian heads), else None."""
    return None if agent.policy.log_std is None else agent.policy.log_std.value


def _exported_variables(agent: TRPO) -> list:
    """The Keras variables the signatures read: normalizer statistics, policy and value weights."""
    return list(agent.normalizer.weights) + list(agent.policy.weights) + list(agent.value.weights)


def _check_finite_weights(agent: TRPO) -> None:
    """Refuse to export a policy whose weights contain NaN or infinity."""
    bad = [v.path for v in _exported_variables(agent)
           if np.issubdtype(np.dtype(v.dtype), np.floating) and not np.all(np.isfinite(v.numpy()))]
    if bad:
        raise ValueError(f"refusing to export: non-finite values in {', '.join(bad)}")


def _checked_version(version: Any) -> int:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"version must be a non-negative integer (TF Serving's version folders), "
                         f"got {version!r}")
    return int(version)


def _numeric_versions(out_dir: str) -> list[int]:
    if not os.path.isdir(out_dir):
        return []
    return [int(name) for name in os.listdir(out_dir)
            if _VERSION_DIR.match(name) and os.path.isdir(os.path.join(out_dir, name))]


def _describe_tensor(tensor) -> dict[str, Any]:
    return {"dtype": tensor.dtype.name, "shape": tensor.shape.as_list()}


# --------------------------------------------------------------------------- metadata

def build_metadata(agent: TRPO, evaluation: dict[str, Any] | None, command: str | None) -> dict[str, Any]:
    """The contents of ``assets/metadata.json`` but ``signatures`` (added from the saved functions)."""
    return {
        "format_version": FORMAT_VERSION,
        "env_id": agent.env_id,
        "observation_space": space_to_metadata(agent.observation_space),
        "action_space": space_to_metadata(agent.action_space),
        "timesteps": int(agent.timesteps),
        "seed": agent.seed,
        "evaluation": evaluation,
        "config": agent.config.to_dict(),
        "versions": library_versions(),
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def read_metadata(saved_model_dir: str) -> dict[str, Any]:
    """The ``assets/metadata.json`` of an export (a version folder, or the model folder above it)."""
    path = os.path.join(resolve_saved_model_dir(saved_model_dir), "assets", METADATA_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: this SavedModel was not written by trpo_tf.export")
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def space_to_metadata(space: gym.Space) -> dict[str, Any]:
    """A JSON-ready description of a Box, Discrete, MultiDiscrete or MultiBinary space.

    Box bounds are one number when uniform, else nested lists; infinities are the strings
    "inf" and "-inf" (JSON has no infinity).
    """
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": space.dtype.name,
                "low": _bound_to_json(space.low), "high": _bound_to_json(space.high)}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start), "dtype": space.dtype.name}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist(),
                "dtype": space.dtype.name}
    if isinstance(space, gym.spaces.MultiBinary):
        n = space.n
        return {"type": "MultiBinary", "n": int(n) if np.ndim(n) == 0 else np.asarray(n).tolist(),
                "dtype": space.dtype.name}
    raise UnsupportedSpaceError(f"cannot describe space {space!r}: expected Box, Discrete, "
                                f"MultiDiscrete or MultiBinary")


def space_from_metadata(description: dict[str, Any]) -> gym.Space:
    """Inverse of :func:`space_to_metadata`: the gymnasium space a description stands for."""
    kind = description.get("type")
    if kind == "Box":
        dtype = np.dtype(description["dtype"])
        shape = tuple(description["shape"])
        return gym.spaces.Box(low=_bound_from_json(description["low"], dtype, shape),
                              high=_bound_from_json(description["high"], dtype, shape), shape=shape, dtype=dtype)
    if kind == "Discrete":
        return gym.spaces.Discrete(description["n"], start=description.get("start", 0),
                                   dtype=description.get("dtype", "int64"))
    if kind == "MultiDiscrete":
        nvec = np.asarray(description["nvec"])
        return gym.spaces.MultiDiscrete(nvec, start=np.asarray(description.get("start", np.zeros_like(nvec))),
                                        dtype=description.get("dtype", "int64"))
    if kind == "MultiBinary":
        n = description["n"]
        return gym.spaces.MultiBinary(n if isinstance(n, int) else list(n))
    raise ValueError(f"unknown space type {kind!r} in {description!r}: expected Box, Discrete, "
                     f"MultiDiscrete or MultiBinary")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that made the export."""
    import tensorflow_probability as tfp
    import trpo_tf
    return {"trpo_tf": trpo_tf.__version__, "tensorflow": tf.__version__,
            "tensorflow_probability": tfp.__version__, "keras": keras.__version__,
            "gymnasium": gym.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _evaluation_metadata(agent: TRPO, evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The recorded evaluation: ``evaluation`` checked, or measured now, or None without an env id."""
    if evaluation is None:
        if agent.env_id is None:
            return None
        evaluation = agent.evaluate(episodes=EVALUATION_EPISODES)
    missing = {"mean_return", "std_return", "episodes"} - set(evaluation)
    if missing:
        raise ValueError(f"evaluation lacks {sorted(missing)}; pass the dict agent.evaluate() returns")
    recorded = {"mean_return": float(evaluation["mean_return"]), "std_return": float(evaluation["std_return"]),
                "episodes": int(evaluation["episodes"]),
                "deterministic": bool(evaluation.get("deterministic", True))}
    if "returns" in evaluation:
        recorded["returns"] = [float(r) for r in evaluation["returns"]]
    if "seed" in evaluation:
        recorded["seed"] = int(evaluation["seed"])  # episode i was reset with seed + i
    return recorded


def _bound_to_json(bound: np.ndarray) -> Any:
    values = np.asarray(bound)
    if values.size and np.all(values == values.flat[0]):
        return _json_number(values.flat[0].item())
    return _json_number(values.tolist())


def _json_number(value: Any) -> Any:
    """Nested lists of numbers with ±inf/NaN replaced by the strings "inf", "-inf", "nan"."""
    if isinstance(value, list):
        return [_json_number(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _bound_from_json(value: Any, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    def number(v: Any) -> Any:
        return [number(x) for x in v] if isinstance(v, list) else (float(v) if isinstance(v, str) else v)

    return np.broadcast_to(np.asarray(number(value), dtype=dtype), shape).copy()


# --------------------------------------------------------------------------- TFLite

def to_tflite(saved_model_dir: str, out_path: str, signatures: list[str] | tuple[str, ...] | None = None) -> str:
    """Convert an export to a ``.tflite`` file at ``out_path`` (returned); default: all signatures.

    Signature names and input/output names stay those of the SavedModel. Only builtin TFLite
    ops are used and the variables are frozen into constants, so the file runs under
    ``ai_edge_litert.interpreter.Interpreter`` with its default delegates. The batch
    dimension stays dynamic: ``interpreter.get_signature_runner(name)(observation=x)``
    resizes the input to ``x.shape``. The SavedModel's shape check does not survive the
    conversion and LiteRT reshapes what it is given, so check shapes first (see
    :func:`litert_runner`).
    """
    path = resolve_saved_model_dir(saved_model_dir)
    available = sorted(tf.saved_model.load(path).signatures.keys())
    keys = list(available if signatures is None else signatures)
    unknown = sorted(set(keys) - set(available))
    if unknown or not keys:
        raise ValueError(f"unknown signature(s) {unknown or keys}; this SavedModel has {available}")
    converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=keys, tags={"serve"})
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.experimental_enable_resource_variables = False
    flatbuffer = converter.convert()
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "wb") as file:
        file.write(flatbuffer)
    return out_path


def litert_runner(tflite_path: str, signature: str = "serving_default"
                  ) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """``signature`` of a .tflite file under LiteRT, as a function observations → outputs by name.

    Observations are float32 [B, *obs_shape]; outputs are as in the SavedModel. Unlike the
    bare signature runner, which would silently reshape an observation of the wrong shape,
    this one raises ValueError for a shape or dtype the signature does not declare.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=tflite_path)
    available = sorted(interpreter.get_signature_list())
    if signature not in available:
        raise ValueError(f"unknown signature {signature!r}; {tflite_path} has {available}")
    runner = interpreter.get_signature_runner(signature)
    declared = runner.get_input_details()[INPUT_NAME]
    expected = tuple(int(d) for d in declared["shape_signature"])  # -1: any size

    def run(observations: np.ndarray) -> dict[str, np.ndarray]:
        observations = np.asarray(observations)
        shape_ok = len(observations.shape) == len(expected) and all(
            e in (-1, d) for e, d in zip(expected, observations.shape))
        if not shape_ok or observations.dtype != declared["dtype"]:
            raise ValueError(f"observation {observations.dtype.name}{list(observations.shape)} does not fit "
                             f"{np.dtype(declared['dtype']).name}{[None if e < 0 else e for e in expected]}")
        return runner(**{INPUT_NAME: observations})

    return run


# --------------------------------------------------------------------------- TF Serving REST

def rest_predict(saved_model_dir: str, request_json: str) -> str:
    """Answer a TF Serving REST predict request body the way ``tensorflow_model_server`` does.

    This is the contract of ``POST /v1/models/<name>:predict`` for these exports, run in
    process. The request is ``{"signature_name": "serving_default", "instances": [obs, ...]}``
    (row format; each instance may also be ``{"observation": obs}``) or ``{"inputs": [obs, ...]}``
    (columnar; also ``{"inputs": {"observation": [obs, ...]}}``); ``signature_name`` defaults
    to ``serving_default``. Values are converted to the signature's dtype (float32).

    The response to the row format is ``{"predictions": [p, ...]}``, one entry per instance:
    the output's value when the signature has one output, else an object by output name
    (``distribution`` of a Box policy: ``{"mean": ..., "log_std": ...}``). The columnar format gets
    ``{"outputs": value}`` or ``{"outputs": {name: value}}``. A bad request gets
    ``{"error": message}``, as the server answers with HTTP 400.
    """
    model = tf.saved_model.load(resolve_saved_model_dir(saved_model_dir))
    try:
        request = json.loads(request_json)
        name, feed, rows = _parse_predict_request(request, model.signatures)
        outputs = {key: tensor.numpy() for key, tensor in model.signatures[name](**feed).items()}
    except (ValueError, TypeError, KeyError, tf.errors.OpError) as error:
        return json.dumps({"error": _error_message(error)})
    return json.dumps(_predict_response(outputs, rows))


def _parse_predict_request(request: Any, signatures) -> tuple[str, dict[str, tf.Tensor], bool]:
    """(signature name, input tensors by name, whether the row format was used)."""
    if not isinstance(request, dict):
        raise ValueError("the request body must be a JSON object")
    if ("instances" in request) == ("inputs" in request):
        raise ValueError("the request must have exactly one of 'instances' (row format) or 'inputs' (columnar)")
    name = request.get("signature_name", "serving_default")
    if name not in signatures:
        raise ValueError(f"unknown signature_name {name!r}; this model serves {sorted(signatures.keys())}")
    specs = signatures[name].structured_input_signature[1]
    rows = "instances" in request
    values = request["instances"] if rows else request["inputs"]
    if rows and isinstance(values, list) and values and all(isinstance(v, dict) for v in values):
        values = {key: [row[key] for row in values] for key in values[0]}
    if not isinstance(values, dict):
        if len(specs) != 1:
            raise ValueError(f"this signature takes named inputs {sorted(specs)}")
        values = {next(iter(specs)): values}
    unknown = sorted(set(values) - set(specs))
    if unknown or len(values) != len(specs):
        raise ValueError(f"inputs {sorted(values)} do not match the signature's inputs {sorted(specs)}")
    feed = {key: tf.constant(np.asarray(value, dtype=specs[key].dtype.as_numpy_dtype))
            for key, value in values.items()}
    return name, feed, rows


def _predict_response(outputs: dict[str, np.ndarray], rows: bool) -> dict[str, Any]:
    """TF Serving's response body for outputs [B, ...] by name."""
    if not rows:
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values())).tolist()}
        return {"outputs": {key: value.tolist() for key, value in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values())).tolist()}
    batch = len(next(iter(outputs.values())))
    return {"predictions": [{key: value[i].tolist() for key, value in outputs.items()} for i in range(batch)]}


_NOISE = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[")


def _error_message(error: Exception) -> str:
    """The line of an exception's message that says what was wrong (TF adds graph context)."""
    message = error.message if isinstance(error, tf.errors.OpError) else str(error)
    lines = [line.strip() for line in message.splitlines()]
    useful = [line for line in lines if line and not line.startswith(_NOISE)]
    return re.sub(r"\s*\[\[.*$|\s*\[Op:.*$", "", useful[0]) if useful else type(error).__name__
