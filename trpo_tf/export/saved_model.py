"""SavedModel export of a trained policy and value model, and helpers to read exports back.

Export knows only trained models: it takes a :class:`~trpo_tf.policies.Policy`, a value model
of the policy's normalized features, and the metadata the caller gives (see
:func:`build_metadata`); the caller evaluates.

An export is a TF Serving model directory: ``OUT_DIR/<version>/`` holds ``saved_model.pb``,
``variables/`` and ``assets/metadata.json``. It loads with TensorFlow alone (no trpo_tf,
no TensorFlow Probability). Tag ``serve``; every signature takes one input,
``observation``: float32 [B, *obs_shape], raw observations (normalization is in the graph):

===================  ========================================================================
signature            outputs
===================  ========================================================================
``serving_default``  ``action`` [B, *A]: the most probable action in environment units (Box:
                     the Gaussian mean clipped to the bounds, or the Beta policy's mean, float32; Discrete/MultiDiscrete:
                     the argmax plus the space's ``start``, int32; MultiBinary: int32 0/1)
``sample``           ``action`` [B, *A]: a random action drawn from the policy (stateful
                     random ops, which LiteRT runs, except the Beta policy's: see
                     :func:`unconvertible_signatures`), same units and dtype as above
``distribution``     Box: ``mean`` and ``log_std`` [B, *A] (Beta policy: ``alpha`` and ``beta``
                     [B, *A], the Beta's concentrations on [low, high]); Discrete: ``logits`` [B, n];
                     MultiDiscrete: ``logits`` [B, K, max(nvec)] (unused entries of shorter
                     sub-spaces are -1e9); MultiBinary: ``logits`` [B, *A]
``value``            ``value`` [B]: the value function's estimate
===================  ========================================================================

A policy trained with action masks (:mod:`trpo_tf.sampling.masks`) takes a second input in
``serving_default``, ``sample`` and ``distribution``: ``action_mask``, bool [B, M], True where an
action is allowed (M = n for Discrete(n); for MultiDiscrete the components' masks concatenated,
M = Σ nvec). Forbidden actions get the logit -1e9: probability exactly 0, so the deterministic
action, the argmax of the masked logits, is always an allowed one, and no sample is forbidden; the
``distribution`` signature gives the masked logits. The graph refuses a mask of the wrong shape,
with another number of rows than the observations, or with a row (a component of a row) that
allows no action (``InvalidArgumentError`` "action_mask ..."); converters drop those checks, and
there a row that allows nothing answers action 0 of each such component. metadata.json describes the
input under ``action_masks``.

A recurrent policy (``TRPOConfig.recurrent``) carries a state between calls: ``serving_default``, ``sample``
and ``distribution`` take a second input, ``state``, float32 [B, S], and return the next ``state`` [B, S]
beside their outputs; the ``value`` signature takes and returns the value function's own ``state``
(same width); a further signature ``initial_state`` takes ``batch_size`` (int32 scalar) and returns the
``state`` of a new episode, zeros [batch_size, S]. The whole state of one environment is one vector: for
an LSTM of U units ``[h, c]`` concatenated (S = 2·U), for a GRU ``h`` (S = U). Callers feed each call the
state the previous call returned and start every episode from ``initial_state``. metadata.json
describes it under ``recurrent``.

An observation of the wrong shape is refused by an ``EnsureShape`` check in the graph; a
tensor of the wrong dtype is refused by the signature (Python lists and NumPy arrays are
first converted to float32 by TensorFlow, as TF Serving converts JSON numbers). An observation
holding NaN or ±infinity is refused by a ``CheckNumerics`` op (``InvalidArgumentError``
"observation holds NaN or infinity"), and so is a Discrete observation outside its space (5, −1
or 2.7 for ``Discrete(5)``: "observation outside its Discrete space"). Converters drop those ops
(TFLite, tf2onnx): there, and only there, every normalized feature that such an entry feeds is 0
(a non-finite entry reads as its training mean, or as 0 with normalization off; a non-finite or
out-of-space Discrete observation reads as the mean one-hot vector), so every output stays finite
and every action inside the action space.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import tempfile
import warnings
from typing import Any, Callable

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf

from trpo_tf.errors import ExportError
from trpo_tf.files import refuse_link
from trpo_tf.export.spaces import space_to_metadata
from trpo_tf.policies import Policy
from trpo_tf.policies.distributions import MASK_NAME
from trpo_tf.policies.encoders import INPUT_NAME, NON_FINITE_MESSAGE

SIGNATURES = ("serving_default", "sample", "distribution", "value")
DETERMINISTIC_SIGNATURES = ("serving_default", "distribution", "value")
MASKED_SIGNATURES = ("serving_default", "sample", "distribution")
"""The signatures that take an ``action_mask`` input when the policy is masked."""
METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1

_VERSION_DIR = re.compile(r"^\d+$")


# --------------------------------------------------------------------------- SavedModel

def export_saved_model(policy: Policy, value: keras.Model, out_dir: str, metadata: dict[str, Any],
                       version: int | None = None, evaluate: Callable[[str], dict[str, Any]] | None = None) -> str:
    """Write ``policy`` and ``value`` as a SavedModel to ``out_dir/<version>/`` and return that path.

    ``metadata`` (from :func:`build_metadata`) goes to ``assets/metadata.json`` with the
    signatures added, and with ``evaluation`` replaced by ``evaluate(path)`` when given: an
    evaluation of the SavedModel just written at ``path`` (through its own graph, as
    :func:`trpo_tf.evaluation.evaluate_saved_model` runs it), before it is moved into place. ``version`` defaults to one more than the largest numeric folder in
    ``out_dir`` (1 for a new directory); an existing version is never overwritten
    (``FileExistsError``). The model is written to a hidden temporary folder and renamed into
    place, so a TF Serving instance watching ``out_dir`` never sees a half-written version.
    :class:`ExportError` when ``out_dir`` cannot be a directory (:func:`check_export_dir`) or the
    version's entry is a symbolic link.
    """
    _check_finite_weights(policy, value)
    check_export_dir(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as error:
        raise ExportError(f"cannot create the export directory {out_dir}: {error.strerror or error}") from None
    version = next_version(out_dir) if version is None else _checked_version(version)
    target = os.path.join(out_dir, str(version))
    refuse_link(target, ExportError)
    if os.path.exists(target):
        raise FileExistsError(f"{target} already exists; export to another version (or leave "
                              f"version=None to use the next free one, {next_version(out_dir)})")
    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=out_dir)
    try:
        write_saved_model(policy, value, staging, metadata, evaluate)
        os.chmod(staging, 0o755)  # mkdtemp made it private; a server may run as another user
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def check_export_dir(out_dir: str) -> None:
    """ExportError naming the path when ``out_dir`` or one of its parents exists but is not a directory,
    so that an export that cannot be written is refused before anything else is done."""
    folder = os.path.normpath(out_dir)
    while folder and not os.path.lexists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    if folder and os.path.lexists(folder) and not os.path.isdir(folder):
        raise ExportError(f"cannot export to {out_dir}: {folder} exists and is not a directory")


def write_saved_model(policy: Policy, value: keras.Model, path: str, metadata: dict[str, Any],
                      evaluate: Callable[[str], dict[str, Any]] | None = None) -> None:
    """Save the serving module of ``policy`` and ``value`` to ``path``, and ``metadata`` with the signatures
    to assets/metadata.json (``evaluation``: ``evaluate(path)`` when given; see :func:`export_saved_model`)."""
    module = serving_module(policy, value)
    names = SIGNATURES + (("initial_state",) if policy.recurrent else ())
    tf.saved_model.save(module, path, signatures={name: getattr(module, name) for name in names})
    if evaluate is not None:
        metadata = dict(metadata, evaluation=_evaluation_metadata(evaluate(path)))
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    if policy.masked:
        metadata = dict(metadata, action_masks=dict(metadata.get("action_masks") or {}, **describe_action_masks(policy)))
    if policy.recurrent:
        metadata = dict(metadata, recurrent=describe_recurrence(policy))
    with open(os.path.join(path, "assets", METADATA_FILE), "w", encoding="utf-8") as file:
        json.dump(dict(metadata, signatures=describe_signatures(module),
                       unconvertible_signatures=unconvertible_signatures(policy)), file, indent=2, allow_nan=False)
        file.write("\n")


def serving_module(policy: Policy, value: keras.Model) -> tf.Module:
    """A ``tf.Module`` with the four signature functions of ``policy`` and ``value`` and the variables they read.

    Each function is a ``tf.function`` with input signature float32 [None, *obs_shape]
    named ``observation`` (and, for a masked policy's :data:`MASKED_SIGNATURES`, bool [None, M]
    named ``action_mask``) and returns a dict of tensors (see the module docstring).
    """
    spec, mask_spec = policy.observation_spec(), policy.mask_spec()
    module = tf.Module()
    # Keras 3 variables are not tracked by tf.Module; track the tf.Variables behind them.
    module.tracked_variables = [v.value for v in _exported_variables(policy, value)]
    for name, graph in signature_graphs(policy, value).items():
        masked = mask_spec is not None and name in MASKED_SIGNATURES
        inputs = [spec, mask_spec] if masked else [spec, policy.state_spec()] if policy.recurrent else [spec]
        setattr(module, name, tf.function(graph, input_signature=inputs))
    if policy.recurrent:
        size = policy.state_size
        module.initial_state = tf.function(lambda batch_size: {"state": tf.zeros(tf.stack([batch_size, size]))},
                                           input_signature=[tf.TensorSpec([], tf.int32, name="batch_size")])
    return module


def describe_recurrence(policy: Policy) -> dict[str, Any]:
    """How metadata.json documents a recurrent policy's ``state`` input and output (see the module docstring)."""
    units = policy.cell.units if policy.cell is not None else 0
    layout = "[h, c] concatenated (LSTM)" if policy.cell_kind == "lstm" else "h (GRU)"
    return {"cell": policy.cell_kind, "units": units, "input": "state", "dtype": "float32",
            "shape": [None, policy.state_size], "layout": layout, "initial_state": "initial_state",
            "signatures": list(SIGNATURES),
            "meaning": "feed each call the state the previous call returned; start an episode from initial_state "
                       "(zeros); the value signature carries the value function's own state"}


def signature_graphs(policy: Policy, value: keras.Model) -> dict[str, Callable[..., dict[str, tf.Tensor]]]:
    """Name → function of raw observations [B, *obs_shape] (a dict by key for a Dict space), and for a masked
    policy's :data:`MASKED_SIGNATURES` of action masks bool [B, M] too, returning the signature's outputs,
    from ``policy`` and the ``value`` model.

    Every function first checks the observation's shape, that it is finite and (Discrete) inside its
    space (and the mask's shape, rows and that each row allows an action), so that a wrong one raises
    instead of being reshaped, broadcast, answered with NaN or read as another value (see the module
    docstring for what the converted formats answer instead).
    """
    encoder = policy.encoder

    def features(observation: Any) -> Any:
        """Checked raw observations [B, *obs_shape] (a dict for a Dict space) → model inputs: normalized
        features [B, D], 0 where not finite (with the frames, NaN read as 0, for a CNN)."""
        usable, finite = encoder.tensorflow_checked(observation)
        normalized = policy.normalizer(encoder.tensorflow(usable)) * encoder.tensorflow_feature_mask(finite)
        return policy.model_inputs(normalized, usable)

    def parameters(observation: Any, action_mask: tf.Tensor | None) -> list[tf.Tensor]:
        masks = None if action_mask is None else checked_mask(policy, action_mask, observation)
        return policy.distribution_parameters(features(observation), masks)

    def taking_masks(outputs: Callable[[list[tf.Tensor]], dict[str, tf.Tensor]]) -> Callable[..., dict[str, tf.Tensor]]:
        """The signature function computing ``outputs`` of the distribution's parameters: of (observation,
        action_mask) for a masked policy, else of the observation alone."""
        if policy.masked:
            return lambda observation, action_mask: outputs(parameters(observation, action_mask))
        return lambda observation: outputs(parameters(observation, None))

    head = policy.head
    if policy.recurrent:
        def stepping(outputs: Callable[[list[tf.Tensor]], dict[str, tf.Tensor]]) -> Callable[..., dict[str, tf.Tensor]]:
            """The signature function of (observation, state) → ``outputs`` of η, with the next ``state``."""
            def graph(observation: Any, state: tf.Tensor) -> dict[str, tf.Tensor]:
                state = tf.ensure_shape(state, (None, policy.state_size), name="check_state_shape")
                network_outputs, state = policy.step_outputs(features(observation), state)
                return dict(outputs(head.distribution_parameters(network_outputs)), state=state)
            return graph

        def value_step(observation: Any, state: tf.Tensor) -> dict[str, tf.Tensor]:
            values, state = value.step(features(observation), tf.ensure_shape(state, (None, value.state_size)))
            return {"value": values[:, 0], "state": state}

        return {"serving_default": stepping(lambda eta: {"action": head.deterministic(eta)}),
                "sample": stepping(lambda eta: {"action": head.sample(eta)}),
                "distribution": stepping(head.named_parameters), "value": value_step}
    return {
        "serving_default": taking_masks(lambda eta: {"action": head.deterministic(eta)}),
        "sample": taking_masks(lambda eta: {"action": head.sample(eta)}),
        "distribution": taking_masks(head.named_parameters),
        "value": lambda observation: {"value": value(features(observation))[:, 0]},
    }


def checked_mask(policy: Policy, mask: tf.Tensor, observation: Any) -> tf.Tensor:
    """``mask`` bool [B, M] after graph checks that it is [B, M], with M the mask length of ``policy``'s action
    distribution and B the batch of ``observation`` (raw observations, or a dict of them), and that every
    component of every row allows an action (checks that converters drop; see the module docstring)."""
    components = np.asarray(policy.head.action_distribution.mask_components)
    size = int(components.sum())
    mask = tf.ensure_shape(mask, (None, size), name="check_action_mask_shape")
    rows = tf.shape(tf.nest.flatten(observation)[0])[0]
    same_rows = tf.debugging.assert_equal(tf.shape(mask)[0], rows, name="check_action_mask_rows",
                                          message="action_mask must hold one row per observation")
    # segments [M, C]: entry j of a mask belongs to component c; a component allows an action when its sum > 0.
    segments = np.zeros((size, len(components)), np.float32)
    segments[np.arange(size), np.repeat(np.arange(len(components)), components)] = 1.0
    allowed = tf.matmul(tf.cast(mask, tf.float32), segments) > 0.5  # [B, C]
    some_allowed = tf.debugging.Assert(tf.reduce_all(allowed), [
        "action_mask allows no action in some row (or some component of a row)"], name="check_action_mask_allows")
    with tf.control_dependencies([same_rows, some_allowed]):
        return tf.identity(mask)


def describe_action_masks(policy: Policy) -> dict[str, Any]:
    """How metadata.json documents a masked policy's ``action_mask`` input (see the module docstring)."""
    components = np.asarray(policy.head.action_distribution.mask_components).tolist()
    return {"input": MASK_NAME, "dtype": "bool", "shape": [None, int(sum(components))], "components": components,
            "signatures": list(MASKED_SIGNATURES),
            "meaning": "True where the action is allowed; for MultiDiscrete the components' masks concatenated"}


def unconvertible_signatures(policy: Policy) -> dict[str, str]:
    """Signature → why TFLite (LiteRT) and ONNX cannot run it: the signatures their conversions leave out.

    Recorded in metadata.json as ``unconvertible_signatures``: ``{"sample": "..."}`` for a policy
    whose sampling they cannot run (the Beta's Gamma variates), else ``{}``.
    """
    reason = policy.head.sample_conversion_problem
    return {} if reason is None else {"sample": reason}


def conversion_signatures(path: str, requested: list[str] | tuple[str, ...] | None, converter: str) -> list[str]:
    """The signatures of the SavedModel at ``path`` that ``converter`` ("TFLite", "ONNX") should convert.

    ``requested`` None: all but the metadata's ``unconvertible_signatures``, with a warning naming
    those left out and why. A requested signature that the SavedModel lacks raises ValueError; one
    that it cannot convert raises :class:`ExportError` saying why.
    """
    available = sorted(load_saved_model(path).signatures.keys())
    try:
        unconvertible = read_metadata(path).get("unconvertible_signatures", {})
    except FileNotFoundError:  # not written by trpo_tf: nothing is known to be unconvertible
        unconvertible = {}
    if not isinstance(unconvertible, dict):
        raise ExportError(f"{path}: metadata 'unconvertible_signatures' must be an object, got {unconvertible!r}")
    keys = [name for name in available if name not in unconvertible] if requested is None else list(requested)
    unknown = sorted(set(keys) - set(available))
    if unknown or not keys:
        raise ValueError(f"unknown signature(s) {unknown or keys}; this SavedModel has {available}")
    refused = sorted(set(keys) & set(unconvertible))
    if refused:
        raise ExportError(f"{converter} cannot run signature {refused[0]!r} of {path}: {unconvertible[refused[0]]}")
    left_out = sorted(set(unconvertible) & set(available))
    if requested is None and left_out:
        warnings.warn(f"{path}: the {converter} conversion leaves out signature(s) {', '.join(left_out)}: "
                      + "; ".join(str(unconvertible[name]) for name in left_out), UserWarning, stacklevel=3)
    return keys


def describe_signatures(module: tf.Module) -> dict[str, Any]:
    """Name → {"inputs": {name: {dtype, shape}}, "outputs": {...}} of the module's signatures.

    Unknown dimensions (the batch) are None.
    """
    described = {}
    for name in SIGNATURES:
        function = getattr(module, name).get_concrete_function()
        inputs = function.structured_input_signature[0]
        described[name] = {"inputs": {spec.name: _describe_tensor(spec) for spec in tf.nest.flatten(inputs)},
                           "outputs": {key: _describe_tensor(tensor)
                                       for key, tensor in sorted(function.structured_outputs.items())}}
    return described


def load_saved_model(path: str) -> Any:
    """``tf.saved_model.load(path)``; :class:`ExportError` naming the damaged file when TensorFlow cannot read
    it (``saved_model.pb`` truncated, empty or not one; ``variables/`` truncated or garbled)."""
    problem: Exception
    try:
        return tf.saved_model.load(path)
    except (OSError, ValueError) as error:  # the graph: a protobuf that does not parse, or holds no MetaGraph
        damaged, problem = os.path.join(path, "saved_model.pb"), error
    except (IndexError, tf.errors.OpError) as error:  # the variables: short reads, bad checksums and magic
        damaged, problem = os.path.join(path, "variables"), error
    text = (problem.message if isinstance(problem, tf.errors.OpError) else str(problem)).strip()
    raise ExportError(f"{damaged} is damaged or not part of a SavedModel, so TensorFlow cannot load it "
                      f"({' '.join(text.splitlines()[0].split()) if text else type(problem).__name__})")


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


def _exported_variables(policy: Policy, value: keras.Model) -> list:
    """The Keras variables the signatures read: the policy's (normalizer, head, network) and the value's."""
    return list(policy.weights) + list(value.weights)


def _check_finite_weights(policy: Policy, value: keras.Model) -> None:
    """Refuse to export a policy whose weights contain NaN or infinity."""
    bad = [v.path for v in _exported_variables(policy, value)
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


def _describe_tensor(tensor: Any) -> dict[str, Any]:
    return {"dtype": tensor.dtype.name, "shape": tensor.shape.as_list()}


# --------------------------------------------------------------------------- metadata

def build_metadata(env_id: str | None, observation_space: gym.Space, action_space: gym.Space, timesteps: int,
                   seed: int | None, evaluation: dict[str, Any] | None, config: dict[str, Any],
                   command: str | None, mask_source: str | None = None) -> dict[str, Any]:
    """The contents of ``assets/metadata.json`` but ``signatures`` (added from the saved functions).

    ``env_id``, ``observation_space`` and ``action_space`` describe the environment (the spaces as
    :func:`~trpo_tf.export.spaces.space_to_metadata` writes them); ``timesteps`` and ``seed`` the training.

    ``evaluation`` is a dict as :func:`trpo_tf.evaluation.evaluate_saved_model` returns (mean_return,
    std_return, episodes, optionally returns, seed, deterministic) or None; ``config`` the
    ``TRPOConfig.to_dict()`` of the run; ``command`` the command line, recorded as given;
    ``mask_source`` where the training environment gave action masks (recorded under
    ``action_masks``, which :func:`write_saved_model` completes from the policy; None: it gave none).
    """
    return {
        "format_version": FORMAT_VERSION,
        "env_id": env_id,
        "observation_space": space_to_metadata(observation_space),
        "action_space": space_to_metadata(action_space),
        "timesteps": int(timesteps),
        "seed": seed,
        "evaluation": _evaluation_metadata(evaluation),
        "config": config,
        "versions": library_versions(),
        "command": command,
        "action_masks": None if mask_source is None else {"source": mask_source},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


METADATA_TYPES: dict[str, tuple[type, ...]] = {
    "env_id": (str, type(None)), "observation_space": (dict,), "action_space": (dict,), "config": (dict,),
    "signatures": (dict,), "evaluation": (dict, type(None)), "action_masks": (dict, type(None)),
    "recurrent": (dict, type(None))}
"""The metadata keys that readers rely on, and the JSON types each may have (when present)."""


def read_metadata(saved_model_dir: str) -> dict[str, Any]:
    """The ``assets/metadata.json`` of the export in ``saved_model_dir`` (a version folder, or the model
    folder above it).

    Raises FileNotFoundError when there is none, and :class:`ExportError` naming the file when it is
    not UTF-8 JSON, not an object, or holds one of :data:`METADATA_TYPES` with another type.
    """
    path = os.path.join(resolve_saved_model_dir(saved_model_dir), "assets", METADATA_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: this SavedModel was not written by trpo_tf.export")
    try:
        with open(path, encoding="utf-8") as file:
            metadata = json.load(file)
    except UnicodeDecodeError as error:
        raise ExportError(f"{path} is not UTF-8 text (byte offset {error.start})") from None
    except json.JSONDecodeError as error:
        raise ExportError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(metadata, dict):
        raise ExportError(f"{path} must hold a JSON object, got {type(metadata).__name__}")
    for key, types in METADATA_TYPES.items():
        if key in metadata and not isinstance(metadata[key], types):
            raise ExportError(f"{path}: {key!r} must be {' or '.join(_JSON_NAMES[t] for t in types)}, "
                              f"got {json.dumps(metadata[key])[:80]}")
    if not isinstance(metadata.get("config", {}).get("env_kwargs", {}), dict):
        raise ExportError(f"{path}: 'config'.'env_kwargs' must be an object")
    return metadata


_JSON_NAMES = {str: "a string", dict: "an object", type(None): "null"}


def library_versions() -> dict[str, str]:
    """Versions of the libraries that made the export."""
    import tensorflow_probability as tfp
    import trpo_tf
    return {"trpo_tf": trpo_tf.__version__, "tensorflow": tf.__version__,
            "tensorflow_probability": tfp.__version__, "keras": keras.__version__,
            "gymnasium": gym.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _evaluation_metadata(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The evaluation as recorded: the keys of an ``evaluate`` result, checked; None stays None."""
    if evaluation is None:
        return None
    missing = {"mean_return", "std_return", "episodes"} - set(evaluation)
    if missing:
        raise ValueError(f"evaluation lacks {sorted(missing)}; pass the dict agent.evaluate() returns")
    recorded: dict[str, Any] = {"mean_return": float(evaluation["mean_return"]), "std_return": float(evaluation["std_return"]),
                "episodes": int(evaluation["episodes"]),
                "deterministic": bool(evaluation.get("deterministic", True))}
    if "returns" in evaluation:
        recorded["returns"] = [float(r) for r in evaluation["returns"]]
    if "seed" in evaluation:
        recorded["seed"] = int(evaluation["seed"])  # episode i was reset with seed + i
    return recorded
