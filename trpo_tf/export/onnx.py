"""ONNX conversion of an export's signatures (tf2onnx), to run with onnxruntime or any ONNX runtime.

Each signature becomes its own file, ``OUT_DIR/<signature>.onnx``, with the SavedModel's names:
input ``observation`` [B, *obs_shape] (dynamic batch; float32, or uint8 for image frames and bool
grids), or for a ``Dict`` space one input per key with the key's name; outputs as in
:mod:`trpo_tf.export.saved_model` (``action``; ``mean``/``log_std`` or ``logits``; ``value``).
One file per signature rather than one model with every output: the deterministic files hold
no random op, a program loads only what it runs, and the names stay those of the SavedModel
(``serving_default`` and ``sample`` both output ``action``). The variables are frozen into
constants; observation normalization is in the graph, as in the SavedModel.

``sample.onnx`` draws with ONNX's random operators (``RandomNormalLike`` for a Gaussian,
``Multinomial`` for Categoricals), so its draws are not those of TensorFlow; its
distribution is the same. The SavedModel's shape check (``EnsureShape``) becomes a no-op:
onnxruntime refuses an observation whose shape or dtype differs from the declared input.

Needs the ``onnx`` extra: ``pip install -e '.[onnx]'`` (tf2onnx, onnx and onnxruntime).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from typing import Any

import tensorflow as tf

from trpo_tf.errors import ExportError, InputError, MissingDependencyError
from trpo_tf.export.saved_model import conversion_signatures, load_saved_model, resolve_saved_model_dir

OPSET = 17
DROPPED_CHECKS = ("Assert", "CheckNumerics", "CheckNumericsV2")  # tf2onnx removes them
INSTALL_HINT = "pip install -e '.[onnx]'"


def to_onnx(saved_model_dir: str, out_dir: str, signatures: list[str] | tuple[str, ...] | None = None,
            opset: int = OPSET) -> dict[str, str]:
    """Convert signatures of an export to ``out_dir/<signature>.onnx``; returns signature → path.

    ``saved_model_dir`` is a version folder or the model folder above it (its highest
    version); ``signatures`` defaults to all of them but those the export's metadata lists as
    ``unconvertible_signatures`` (a Beta policy's ``sample``), which are left out with a warning
    (asked for by name, they raise :class:`~trpo_tf.errors.ExportError`). Raises :class:`MissingDependencyError`
    (before converting anything) without the ``onnx`` extra, :class:`InputError` for an
    unknown signature, and RuntimeError naming the TensorFlow ops tf2onnx could not convert.
    Warns (RuntimeWarning) when a signature holds checks ONNX has no operator for
    (:data:`DROPPED_CHECKS`): tf2onnx leaves them out, so the file does not make them.

    Args:
        saved_model_dir: the export to convert.
        out_dir: where the ``.onnx`` files go (created when missing).
        signatures: the signatures to convert, by name; None for every convertible one.
        opset: the ONNX opset to convert to.
    """
    check_dependencies()
    tf2onnx = importlib.import_module("tf2onnx")
    path = resolve_saved_model_dir(saved_model_dir)
    loaded = load_saved_model(path)
    try:
        keys = conversion_signatures(path, signatures, "ONNX")
    except ExportError:
        raise
    except ValueError as error:
        raise InputError(str(error)) from None
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    dropped: dict[str, list[str]] = {}  # check op → signatures that hold it
    for name in keys:
        function, specs = _positional_function(loaded.signatures[name])
        for op in _dropped_checks(function, specs):
            dropped.setdefault(op, []).append(name)
        model, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=opset)
        _check_converted(model, f"signature {name!r} of {path}")
        written[name] = os.path.join(out_dir, f"{name}.onnx")
        with open(written[name], "wb") as file:
            file.write(model.SerializeToString())
    if dropped:
        found = "; ".join(f"{op} (in {', '.join(names)})" for op, names in sorted(dropped.items()))
        warnings.warn(f"{path}: ONNX has no operator for {found}; the .onnx files leave these checks out "
                      "(e.g. they do not refuse a NaN observation the SavedModel refuses)", RuntimeWarning,
                      stacklevel=2)
    return written


def _positional_function(signature: Any) -> tuple[Any, list[tf.TensorSpec]]:
    """(tf.function of the inputs in name order, their TensorSpecs named as the inputs) calling a loaded
    ``signature``: ``observation``, or one input per key of a Dict space.

    tf2onnx converts a tf.function with an input signature, and names the ONNX inputs after the
    specs; a loaded signature takes keyword arguments only.
    """
    inputs = signature.structured_input_signature[1]
    names = sorted(inputs)
    specs = [tf.TensorSpec(inputs[name].shape, inputs[name].dtype, name=name) for name in names]

    def call(*values: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = signature(**dict(zip(names, values)))
        # ONNX names each tensor once: an output named as an input (a recurrent policy's state) becomes next_<name>.
        return {f"next_{key}" if key in inputs else key: value for key, value in outputs.items()}

    function = tf.function(call, input_signature=specs)
    return function, specs


def _dropped_checks(function: Any, specs: list[tf.TensorSpec]) -> list[str]:
    """The :data:`DROPPED_CHECKS` ops in ``function``'s graph and the functions it calls."""
    graph = function.get_concrete_function(*specs).graph.as_graph_def()
    ops = {node.op for node in graph.node} | {node.op for f in graph.library.function for node in f.node_def}
    return sorted(ops & set(DROPPED_CHECKS))


def _check_converted(model: Any, what: str) -> None:
    """RuntimeError naming the nodes that are not ONNX operators (ops tf2onnx left unconverted)."""
    onnx = importlib.import_module("onnx")
    unconverted = sorted({node.op_type for node in model.graph.node if not onnx.defs.has(node.op_type, node.domain)})
    if unconverted:
        raise RuntimeError(f"tf2onnx could not convert the TensorFlow op(s) {', '.join(unconverted)} in {what}")
    onnx.checker.check_model(model)


def check_dependencies() -> None:
    """Raise :class:`MissingDependencyError` unless tf2onnx, onnx and onnxruntime can be imported."""
    missing = [name for name in ("tf2onnx", "onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(f"ONNX export needs {', '.join(missing)}, not installed: "
                                     f"{INSTALL_HINT} (tf2onnx, onnx and onnxruntime, the onnx extra)")
