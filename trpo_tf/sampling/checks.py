"""What the sampler accepts from an environment, in NumPy: the checks behind its errors.

An observation must have the observation space's shape and a numeric dtype (checked on every
step, cheaply), and, like a reward, be finite once converted to float32 (what training computes
in); a ``Discrete`` or ``MultiDiscrete`` observation must also hold whole numbers in the space's range. The value
checks run on whole arrays [K, ...] of values (K: steps × environments) at once.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

NUMERIC_KINDS = "biuf"
"""``dtype.kind`` of the arrays accepted as observations: bool, signed, unsigned, float."""

FLOAT32_MAX = float(np.finfo(np.float32).max)


def structure_problem(observation: Any, shape: tuple[int, ...]) -> str | None:
    """Why ``observation`` is not a numeric array of ``shape``, or None when it is one."""
    if not isinstance(observation, np.ndarray):
        return f"a {type(observation).__name__}, not an array"
    if observation.shape != shape:
        return f"shape {observation.shape}"
    if observation.dtype.kind not in NUMERIC_KINDS:
        return f"dtype {observation.dtype}, not a number type"
    return None


def to_float32(values: np.ndarray) -> np.ndarray:
    """``values`` as float32; too large a number becomes ±inf (no warning), as :func:`invalid_rows` expects."""
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(np.float32)


def as_stored(values: np.ndarray) -> np.ndarray:
    """Observations ``values`` [K, ...] as a batch stores them: uint8 ones (frames) as they are, 4× smaller
    than float32, bool ones (grids) as uint8 0/1 (a view, not a copy); any other ones as :func:`to_float32`
    makes them."""
    if values.dtype == np.bool_:
        return values.view(np.uint8)
    return values if values.dtype == np.uint8 else to_float32(values)


def invalid_rows(values: np.ndarray, converted: np.ndarray, space: gym.Space | None) -> np.ndarray:
    """Bool [K]: which rows of ``values`` [K, ...] (as returned) are not valid.

    ``converted`` [K, ...] is ``as_stored(values)``: a row is invalid when any of its numbers is
    not finite there (uint8 ones always are); for a ``Discrete`` or ``MultiDiscrete`` ``space`` also
    when any of its numbers is not a whole number in range.
    """
    if converted.dtype == np.uint8:
        bad = np.zeros(len(converted), dtype=bool)
    else:
        bad = ~np.isfinite(converted).all(axis=tuple(range(1, converted.ndim)))
    bounds = _integer_range(space)
    if bounds is not None:
        start, stop = bounds
        flat = values.reshape(len(values), int(np.prod(values.shape[1:])))  # not -1: K may be 0
        with np.errstate(invalid="ignore"):
            bad |= ((flat != np.floor(flat)) | (flat < start) | (flat >= stop)).any(axis=1)
    return bad


def _integer_range(space: gym.Space | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(first value, one past the last) per element [K] of a ``Discrete`` or ``MultiDiscrete`` space; else None."""
    if isinstance(space, gym.spaces.Discrete):
        return np.array([space.start]), np.array([space.start + space.n])
    if isinstance(space, gym.spaces.MultiDiscrete):
        return np.asarray(space.start).reshape(-1), (np.asarray(space.start) + np.asarray(space.nvec)).reshape(-1)
    return None


def describe_invalid(value: np.ndarray, what: str, space: gym.Space | None) -> str:
    """What is wrong with one invalid ``value`` (a row :func:`invalid_rows` flagged), e.g.
    ``a non-finite observation [nan, 1.0]``.

    ``what`` names the kind of value in the message ("observation", "reward"); ``space`` is the space the
    value belongs to, needed (a ``Discrete`` or ``MultiDiscrete`` one) when the value is finite but out of
    range, which the message then shows.
    """
    numbers = np.asarray(value, dtype=np.float64)
    shown = np.asarray(value).tolist()
    if not np.all(np.isfinite(numbers)):
        return f"a non-finite {what} {shown}"
    article = "an" if what[0] in "aeiou" else "a"
    if np.any(np.abs(numbers) > FLOAT32_MAX):
        return f"{article} {what} {shown} too large for float32 (magnitude above {FLOAT32_MAX:.4g}), which training uses"
    bounds = _integer_range(space)
    assert bounds is not None, "only Discrete and MultiDiscrete values have a range to check"
    ranges = ", ".join(f"[{start}, {stop})" for start, stop in zip(*bounds))
    whole = "a whole number" if len(bounds[0]) == 1 else "whole numbers"
    return f"{article} {what} {shown} outside {space}: it must be {whole} in {ranges}"
