"""Gymnasium spaces ↔ JSON, as recorded in an export's metadata and checkpoints' run files.

Box bounds are one number when uniform, else nested lists; infinities are the strings
"inf" and "-inf" (JSON has no infinity).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from trpo_tf.errors import UnsupportedSpaceError


def space_to_metadata(space: gym.Space) -> dict[str, Any]:
    """A JSON-ready description of a Box, Discrete, MultiDiscrete, MultiBinary or Dict space
    (a Dict as ``{"type": "Dict", "spaces": {key: description}}``, keys in order).

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
        return {"type": "MultiBinary", "n": np.asarray(n).tolist(),
                "dtype": space.dtype.name}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {key: space_to_metadata(sub) for key, sub in space.spaces.items()}}
    raise UnsupportedSpaceError(f"cannot describe space {space!r}: expected Box, Discrete, "
                                f"MultiDiscrete, MultiBinary or Dict")



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
    if kind == "Dict":
        return gym.spaces.Dict({key: space_from_metadata(sub) for key, sub in description["spaces"].items()})
    raise ValueError(f"unknown space type {kind!r} in {description!r}: expected Box, Discrete, "
                     f"MultiDiscrete, MultiBinary or Dict")


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
