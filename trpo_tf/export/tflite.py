"""TFLite (LiteRT) conversion of an export, and a shape-checking LiteRT runner."""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from trpo_tf.export.saved_model import (INPUT_NAME, MASK_NAME, NON_FINITE_MESSAGE, conversion_signatures,
                                        resolve_saved_model_dir)


def to_tflite(saved_model_dir: str, out_path: str, signatures: list[str] | tuple[str, ...] | None = None) -> str:
    """Convert the export in ``saved_model_dir`` to a ``.tflite`` file at ``out_path`` (returned); ``signatures``
    names the signatures to keep (default: all signatures LiteRT can run).

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
    (see :mod:`trpo_tf.export.saved_model`). A masked policy's signatures keep their ``action_mask``
    input (bool [B, M]); the checks that each row allows an action are dropped too.
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


def litert_runner(tflite_path: str, signature: str = "serving_default") -> Callable[..., dict[str, np.ndarray]]:
    """``signature`` of a .tflite file under LiteRT, as a function observations (, action_mask) → outputs by name.

    Observations are [B, *obs_shape] in the signature's dtype (float32; uint8 for uint8 frames and
    for bool grids, which may come as bool), or for a Dict space a dict of such arrays by key (the
    signature's named inputs); outputs are as in the SavedModel. Unlike the bare signature runner,
    which would silently reshape an observation of the wrong shape, this one raises ValueError for a
    shape, dtype or name the signature does not declare, and, as the SavedModel does, for an
    observation that holds NaN or infinity. An ``action_mask`` input may come as bool or as 0/1 numbers;
    a row that allows no action raises ValueError as the SavedModel refuses it (its components unknown
    here, a MultiDiscrete mask is checked as a whole).

    Args:
        tflite_path: the ``.tflite`` file.
        signature: the signature to run.

    Returns:
        a function observations → {output name: array}; a masked policy's also takes ``action_mask=``
        [B, M], a recurrent policy's ``state=`` [B, S] (and returns the next ``state``); a recurrent policy's
        ``initial_state`` signature takes ``batch_size=`` alone.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=tflite_path)
    available = sorted(interpreter.get_signature_list())
    if signature not in available:
        raise ValueError(f"unknown signature {signature!r}; {tflite_path} has {available}")
    runner = interpreter.get_signature_runner(signature)
    declared = runner.get_input_details()  # name → details

    def check(name: str, values: np.ndarray) -> None:
        """ValueError unless ``values`` fits input ``name``'s dtype and shape (-1: any size) and is finite."""
        expected = tuple(int(d) for d in declared[name]["shape_signature"])
        shape_ok = len(values.shape) == len(expected) and all(e in (-1, d) for e, d in zip(expected, values.shape))
        if not shape_ok or values.dtype != declared[name]["dtype"]:
            label = "observation" if name == INPUT_NAME else f"input {name!r}"
            raise ValueError(f"{label} {values.dtype.name}{list(values.shape)} does not fit "
                             f"{np.dtype(declared[name]['dtype']).name}{[None if e < 0 else e for e in expected]}")
        finite = np.isfinite(values).all(axis=tuple(range(1, values.ndim)))  # [B]
        if not finite.all():
            where = "" if name == INPUT_NAME else f" (input {name})"
            raise ValueError(f"{NON_FINITE_MESSAGE}{where} (row {int(np.argmin(finite))} of the batch)")

    def checked_mask(values: np.ndarray) -> np.ndarray:
        """An action mask [B, M] as bool; ValueError for values other than 0/1 or a row allowing nothing."""
        if values.dtype != np.bool_ and values.dtype.kind in "iuf":
            if not np.isin(values, (0, 1)).all():
                raise ValueError(f"input {MASK_NAME!r} must hold booleans or 0 and 1")
            values = values != 0
        if values.dtype == np.bool_ and values.ndim == 2 and not values.any(axis=1).all():
            raise ValueError(f"input {MASK_NAME!r} allows no action in row {int(np.argmin(values.any(axis=1)))}")
        return values

    def run(observations: Any = None, action_mask: Any = None, state: Any = None,
            batch_size: int | None = None) -> dict[str, np.ndarray]:
        if batch_size is not None:  # a recurrent policy's initial_state signature
            return runner(batch_size=np.asarray(batch_size, np.int32))
        feed = ({key: np.asarray(value) for key, value in observations.items()} if isinstance(observations, dict)
                else {INPUT_NAME: np.asarray(observations)})
        if action_mask is not None:
            feed[MASK_NAME] = np.asarray(action_mask)
        if state is not None:
            feed["state"] = np.asarray(state)
        if MASK_NAME in feed:
            feed[MASK_NAME] = checked_mask(feed[MASK_NAME])
        if sorted(feed) != sorted(declared):
            raise ValueError(f"inputs {sorted(feed)} do not match the signature's inputs {sorted(declared)}")
        for name, values in feed.items():
            if values.dtype == np.bool_ and declared[name]["dtype"] == np.uint8:  # a bool grid, read as 0/1
                feed[name] = values = values.astype(np.uint8)
            check(name, values)
        return runner(**feed)

    return run
