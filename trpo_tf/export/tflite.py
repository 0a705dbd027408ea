"""TFLite (LiteRT) conversion of an export, and a shape-checking LiteRT runner."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np
import tensorflow as tf

from trpo_tf.export.saved_model import INPUT_NAME, NON_FINITE_MESSAGE, conversion_signatures, resolve_saved_model_dir


def to_tflite(saved_model_dir: str, out_path: str, signatures: list[str] | tuple[str, ...] | None = None) -> str:
    """Convert an export to a ``.tflite`` file at ``out_path`` (returned); default: all signatures LiteRT can run.

    An export whose metadata lists ``unconvertible_signatures`` (a Beta policy's ``sample``: LiteRT
    has no Gamma sampling) is converted without those, with a warning; asking for one of them
    raises :class:`~trpo_tf.errors.ExportError` saying why.

    Signature names and input/output names stay those of the SavedModel. Only builtin TFLite
    ops are used and the variables are frozen into constants, so the file runs under
    ``ai_edge_litert.interpreter.Interpreter`` with its default delegates. The batch
    dimension stays dynamic: ``interpreter.get_signature_runner(name)(observation=x)``
    resizes the input to ``x.shape``. The SavedModel's shape and finiteness checks do not
    survive the conversion: LiteRT reshapes what it is given, so check shapes first (see
    :func:`litert_runner`), and a non-finite entry of an observation reads as its training mean
    (see :mod:`trpo_tf.export.saved_model`).
    """
    path = resolve_saved_model_dir(saved_model_dir)
    keys = conversion_signatures(path, signatures, "TFLite")
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
    this one raises ValueError for a shape or dtype the signature does not declare, and, as the
    SavedModel does, for an observation that holds NaN or infinity.
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
        finite = np.isfinite(observations).all(axis=tuple(range(1, observations.ndim)))  # [B]
        if not finite.all():
            raise ValueError(f"{NON_FINITE_MESSAGE} (row {int(np.argmin(finite))} of the batch)")
        return runner(**{INPUT_NAME: observations})

    return run
