"""The TF Serving REST predict contract (``POST /v1/models/<name>:predict``), answered in process."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import tensorflow as tf

from trpo_tf.export.saved_model import load_saved_model, resolve_saved_model_dir


def rest_predict(saved_model_dir: str, request_json: str) -> str:
    """Answer a TF Serving REST predict request body ``request_json`` with the export in
    ``saved_model_dir`` (a version folder or the folder above it) the way ``tensorflow_model_server`` does.

    This is the contract of ``POST /v1/models/<name>:predict`` for these exports, run in
    process. The request is ``{"signature_name": "serving_default", "instances": [obs, ...]}``
    (row format; each instance may also be ``{"observation": obs}``) or ``{"inputs": [obs, ...]}``
    (columnar; also ``{"inputs": {"observation": [obs, ...]}}``); ``signature_name`` defaults
    to ``serving_default``. Values are converted to the signature's dtype (float32, or uint8 for
    image frames: a value uint8 cannot hold exactly — 0.5, 300, −1 — is refused, naming the input).

    The response to the row format is ``{"predictions": [p, ...]}``, one entry per instance:
    the output's value when the signature has one output, else an object by output name
    (``distribution`` of a Box policy: ``{"mean": ..., "log_std": ...}``). The columnar format gets
    ``{"outputs": value}`` or ``{"outputs": {name: value}}``. A bad request gets
    ``{"error": message}``, as the server answers with HTTP 400.

    A policy trained with action masks takes a second input, ``action_mask`` (one mask per
    observation, true/false or 1/0, true where the action is allowed; see
    :mod:`trpo_tf.export.saved_model`), in ``serving_default``, ``sample`` and ``distribution``: each
    instance is then ``{"observation": obs, "action_mask": mask}``, or columnar
    ``{"inputs": {"observation": [obs, ...], "action_mask": [mask, ...]}}``::

        {"instances": [{"observation": [0.1, 0.2], "action_mask": [true, false, true]}]}
        → {"predictions": [2]}   (or 0: never the forbidden action 1)
    A recurrent policy (``TRPOConfig.recurrent``) takes a second input, ``state`` (one float32 vector of
    S numbers per observation), and answers the next ``state`` beside the action: the client keeps it and
    sends it with the next observation of the same episode; a new episode starts from the zeros the
    ``initial_state`` signature gives (``{"signature_name": "initial_state", "inputs": {"batch_size": 1}}``
    → ``{"outputs": [[0.0, ...]]}``)::

        {"instances": [{"observation": [0.1, 0.2], "state": [0.0, 0.0, 0.0, 0.0]}]}
        → {"predictions": [{"action": 1, "state": [0.12, -0.3, 0.05, 0.2]}]}
        {"instances": [{"observation": [0.2, 0.1], "state": [0.12, -0.3, 0.05, 0.2]}]}   (the next step)
    """
    model = load_saved_model(resolve_saved_model_dir(saved_model_dir))
    try:
        request = json.loads(request_json)
        name, feed, rows = _parse_predict_request(request, model.signatures)
        outputs = {key: tensor.numpy() for key, tensor in model.signatures[name](**feed).items()}
    except (ValueError, TypeError, KeyError, tf.errors.OpError) as error:
        return json.dumps({"error": _error_message(error)})
    return json.dumps(_predict_response(outputs, rows))


def _parse_predict_request(request: Any, signatures: Any) -> tuple[str, dict[str, tf.Tensor], bool]:
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
    feed = {key: tf.constant(_as_input(key, value, np.dtype(specs[key].dtype.as_numpy_dtype)))
            for key, value in values.items()}
    return name, feed, rows


def _as_input(name: str, value: Any, dtype: np.dtype) -> np.ndarray:
    """JSON numbers (nested lists) → an array of the input's ``dtype``. ValueError naming the input, the
    value and the range when an integer dtype (uint8 frames) cannot hold a value exactly: a fraction, a
    value out of range or not finite is refused rather than truncated or wrapped."""
    if not np.issubdtype(dtype, np.integer):
        return np.asarray(value, dtype=dtype)
    try:
        numbers = np.asarray(value, dtype=np.float64)  # exact for the integers of uint8 ... int32
    except (TypeError, ValueError):
        raise ValueError(f"input {name!r} must hold numbers (nested lists of one shape)") from None
    limits = np.iinfo(dtype)
    fits = (numbers == np.floor(numbers)) & (numbers >= limits.min) & (numbers <= limits.max)
    if not np.all(fits):
        bad = float(numbers[~fits].flat[0])
        shown = int(bad) if bad.is_integer() and abs(bad) < 2**53 else bad
        raise ValueError(f"input {name!r}: {shown} does not fit {dtype.name}, which holds whole numbers from "
                         f"{limits.min} to {limits.max}")
    return numbers.astype(dtype)


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
    return re.sub(r"^\{\{function_node [^}]*\}\}\s*|\s*\[\[.*$|\s*\[Op:.*$", "", useful[0]) if useful \
        else type(error).__name__
