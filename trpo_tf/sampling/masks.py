"""Action masks: where an environment's come from, how they are read after each reset and step, what is accepted.

With ``TRPOConfig.action_masks = "auto"`` the first of these sources an environment offers gives
its masks (``"off"`` ignores them all):

- ``"info"``: ``info["action_mask"]`` at reset and at every step (gymnasium's convention: ``Taxi-v4``
  and the other toy-text environments give it);
- ``"method"``: an ``action_masks()`` method, called after reset and after every step
  (sb3-contrib's ``MaskablePPO`` convention);
- ``"observation"``: the key ``action_mask`` of a ``Dict`` observation (PettingZoo's convention),
  which is then taken out of the observations: the networks never see it.

A mask holds one number per action, nonzero (True, 1) where the action is allowed: M = n numbers
for ``Discrete(n)``, and for ``MultiDiscrete`` the components' masks concatenated (M = Σ nvec, in
the order of ``nvec.flatten()``), sb3-contrib's layout. Other action spaces take no mask: an
environment that gives masks with one is refused.

The sampler checks a mask's structure (shape, number type) at every step and its values (0 or 1,
finite, at least one allowed action per component) on the whole batch at once, as it checks
observations; every refusal is an :class:`~trpo_tf.errors.ActionMaskError` naming the environment
and the step. Nothing here imports TensorFlow.

Shapes: N is the number of environments, M the length of a mask, K rows of masks to check.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from trpo_tf.errors import ActionMaskError, InputError

MASK_KEY = "action_mask"
"""The info key and the Dict observation key masks come under."""
MASK_METHOD = "action_masks"
"""The environment method that returns a mask."""
SOURCES = ("info", "method", "observation")
MODES = ("auto", "off")
"""The values ``TRPOConfig.action_masks`` takes."""

Describe = Callable[[int], str]
"""How errors name environment n: "environment 3 (Taxi-v4)"."""


def component_sizes(action_space: gym.Space) -> np.ndarray | None:
    """The number of choices of each component a mask of ``action_space`` covers: [n] for Discrete(n),
    nvec flattened for MultiDiscrete; None for a space that takes no mask."""
    if isinstance(action_space, gym.spaces.Discrete):
        return np.array([int(action_space.n)])
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return np.asarray(action_space.nvec, dtype=np.int64).reshape(-1)
    return None


def mask_size(action_space: gym.Space) -> int | None:
    """M, the length of a mask for ``action_space``; None when it takes none."""
    sizes = component_sizes(action_space)
    return None if sizes is None else int(sizes.sum())


def find_source(env: gym.Env | gym.vector.VectorEnv, reset_info: dict[str, Any]) -> str | None:
    """The first source (in the order of :data:`SOURCES`) ``env`` gives masks from, or None.

    ``env`` is a gymnasium Env or VectorEnv, ``reset_info`` the info its reset returned.
    """
    if MASK_KEY in reset_info:
        return "info"
    if _has_method(env):
        return "method"
    if MASK_KEY in getattr(_single_observation_space(env), "spaces", {}):
        return "observation"
    return None


def policy_observation_space(space: gym.Space, source: str | None) -> gym.Space:
    """The observation space the policy reads: ``space`` without its ``action_mask`` key when that is the source."""
    if source != "observation" or not isinstance(space, gym.spaces.Dict):
        return space
    return gym.spaces.Dict({key: sub for key, sub in space.spaces.items() if key != MASK_KEY})


def without_mask(observation: Any, source: str | None) -> Any:
    """``observation`` (a batch, or one) as the policy reads it: a dict without ``action_mask`` when that is the source."""
    if source != "observation":
        return observation
    return {key: value for key, value in observation.items() if key != MASK_KEY}


class MaskReader:
    """Reads the masks of N environments (a VectorEnv; or one Env, ``vectorized=False``) after each reset
    and step from ``source``, checking their structure; :meth:`check_values` checks their values.

    ``action_space`` is one environment's, ``n_envs`` is N; ``describe(n)`` names environment n in errors. With a
    ``source`` of None it reads no masks: for an action space that takes none it refuses the masks
    an info holds (``reads_steps``: it must see every step); else it does nothing.
    """

    def __init__(self, source: str | None, action_space: gym.Space, n_envs: int, describe: Describe,
                 vectorized: bool = True):
        self.source = source
        self.action_space = action_space
        self.sizes = component_sizes(action_space)
        self.size = mask_size(action_space)
        self.n_envs = n_envs
        self.describe = describe
        self.vectorized = vectorized
        self.reads_steps = source is not None or self.size is None

    def read(self, env: Any, observations: Any, info: dict[str, Any], call: str,
             steps: int) -> tuple[Any, np.ndarray | None]:
        """(observations as the policy reads them, masks [N, M] as given, in a number type) after ``call``
        ("reset" or "step") of ``env`` returned ``observations`` and ``info``, ``steps`` environment steps
        into the run. Refuses masks of the wrong structure, and any mask when ``source`` is None."""
        if self.source is None:
            if self.size is None and MASK_KEY in info:
                self._refuse_unsupported("info", self._first_present(info), call, steps)
            return observations, None
        raw = self._raw(env, observations, info)
        return without_mask(observations, self.source), self._structured(raw, call, steps)

    def refuse_static_sources(self, env: Any, call: str, steps: int) -> None:
        """Raise when ``env`` offers masks by a method or an observation key but ``source`` is None and the
        action space takes none (what :meth:`read` cannot see in an info); the error says they were found
        at ``call`` ("reset"), ``steps`` environment steps into the run."""
        if self.source is None and self.size is None:
            if _has_method(env):
                self._refuse_unsupported("method", 0, call, steps)
            if MASK_KEY in getattr(_single_observation_space(env), "spaces", {}):
                self._refuse_unsupported("observation", 0, call, steps)

    def check_values(self, masks: np.ndarray, locate: Callable[[int], tuple[int, str, int]]) -> np.ndarray:
        """``masks`` [K, M] as bool (True: allowed) when every row holds only 0 and 1 with an allowed action
        in each component; else ActionMaskError for the first bad row k, placed by ``locate(k)`` →
        (environment index, "reset" or "step", environment steps taken when it was returned)."""
        assert self.sizes is not None
        bad = invalid_masks(masks, self.sizes)
        if not bad.any():
            return masks != 0
        k = int(np.argmax(bad))
        n, call, steps = locate(k)
        raise ActionMaskError(f"{self.describe(n)} returned {describe_invalid_mask(masks[k], self.sizes)} "
                              f"from {call}() after {steps} environment steps")

    # ------------------------------------------------------------------ the structure of masks

    def _raw(self, env: Any, observations: Any, info: dict[str, Any]) -> Any:
        """The masks as the source gives them: a sequence of N (an array [N, M] or N entries, None where missing)."""
        if self.source == "info":
            values = info.get(MASK_KEY)
            if not self.vectorized:
                return [values]
            present = info.get(f"_{MASK_KEY}")  # gymnasium's vector environments: which environments gave one
            if values is None:
                return [None] * self.n_envs
            if present is not None and not np.all(present):
                return [value if given else None for value, given in zip(values, present)]
            return values
        if self.source == "method":
            return env.call(MASK_METHOD) if self.vectorized else [env.get_wrapper_attr(MASK_METHOD)()]
        values = observations.get(MASK_KEY) if isinstance(observations, dict) else None
        return values if self.vectorized or values is None else [values]

    def _structured(self, raw: Any, call: str, steps: int) -> np.ndarray:
        """``raw`` as an array [N, M] of numbers; ActionMaskError naming the first environment whose mask
        is missing or not M numbers."""
        try:
            array = np.asarray(raw)
        except (ValueError, TypeError):  # ragged: some mask has another shape
            array = np.zeros(0)
        if array.shape == (self.n_envs, self.size) and array.dtype.kind in "biuf":
            return array
        entries = list(raw) if isinstance(raw, (list, tuple, np.ndarray)) else []
        if len(entries) != self.n_envs:
            raise ActionMaskError(f"the vector environment returned action masks {_shown(raw)} from {call}() after "
                                  f"{steps} environment steps; expected one mask per environment, {self._expected()}")
        for n, entry in enumerate(entries):
            problem = self._entry_problem(entry)
            if problem is not None:
                raise ActionMaskError(f"{self.describe(n)} returned {problem} from {call}() after {steps} "
                                      f"environment steps; {self._expected()}")
        raise AssertionError("unreachable: some mask had a problem")

    def _entry_problem(self, entry: Any) -> str | None:
        """What is wrong with one environment's mask, or None."""
        if entry is None:
            return f"no action mask ({self._where()})"
        try:
            value = np.asarray(entry)
        except (ValueError, TypeError):
            return f"an action mask {_shown(entry)} that is not an array"
        if value.dtype.kind not in "biuf":
            return f"an action mask of dtype {value.dtype}, not numbers or booleans"
        if value.shape != (self.size,):
            return f"an action mask of shape {value.shape}"
        return None

    def _expected(self) -> str:
        layout = "" if isinstance(self.action_space, gym.spaces.Discrete) else ", the components' masks concatenated"
        return f"{self.action_space} takes masks of shape ({self.size},){layout}"

    def _where(self) -> str:
        return {"info": f"info[{MASK_KEY!r}]", "method": f"{MASK_METHOD}()",
                "observation": f"observation key {MASK_KEY!r}"}[str(self.source)]

    # ------------------------------------------------------------------ refusals

    def _first_present(self, info: dict[str, Any]) -> int:
        """The first environment whose info holds a mask."""
        present = info.get(f"_{MASK_KEY}")
        return int(np.argmax(present)) if self.vectorized and present is not None and np.any(present) else 0

    def _refuse_unsupported(self, source: str, n: int, call: str, steps: int) -> None:
        where = {"info": f"info[{MASK_KEY!r}]", "method": f"its {MASK_METHOD}() method",
                 "observation": f"its observation key {MASK_KEY!r}"}[source]
        raise ActionMaskError(f"{self.describe(n)} gave an action mask ({where}) at {call}() after {steps} environment "
                              f"steps, but its action space {self.action_space} takes none: action masks need a "
                              "Discrete or MultiDiscrete action space (TRPOConfig.action_masks='off' ignores them)")


def invalid_masks(masks: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Bool [K]: which masks [K, M] (numbers) are not valid: a value other than 0 and 1, or a component
    (of ``sizes`` [C] choices, Σ sizes = M) with no allowed action."""
    with np.errstate(invalid="ignore"):
        binary = ((masks == 0) | (masks == 1)).all(axis=1)
    return ~binary | ~_allowed_per_component(masks != 0, sizes).all(axis=1)


def describe_invalid_mask(mask: np.ndarray, sizes: np.ndarray) -> str:
    """What is wrong with one mask [M] (of components of ``sizes`` [C] choices) that :func:`invalid_masks`
    flags, e.g. ``an action mask [0, 0] that allows no action``."""
    shown = _shown(mask)
    if not np.all(np.isfinite(mask.astype(np.float64))):
        return f"a non-finite action mask {shown}"
    if not ((mask == 0) | (mask == 1)).all():
        return f"an action mask {shown} holding values other than 0 and 1 (or False and True)"
    if len(sizes) == 1:
        return f"an action mask {shown} that allows no action"
    per_component = _allowed_per_component(mask[None] != 0, sizes)[0]
    return (f"an action mask {shown} that allows no action of component {int(np.argmin(per_component))} "
            f"(of {len(sizes)})")


def checked_user_masks(masks: Any, batch_size: int, action_space: gym.Space) -> np.ndarray:
    """Action masks a caller gives for ``batch_size`` observations ([B, M], or [M] for one) of
    ``action_space`` as bool [B, M]; :class:`~trpo_tf.errors.InputError` naming what does not fit (the
    row, for a bad value)."""
    sizes = component_sizes(action_space)
    if sizes is None:
        raise InputError(f"action masks need a Discrete or MultiDiscrete action space, not {action_space}")
    array = np.asarray(masks)
    if array.ndim == 1:
        array = array[None]
    size = int(sizes.sum())
    if array.dtype.kind not in "biuf" or array.shape != (batch_size, size):
        raise InputError(f"action masks {array.dtype.name}{list(array.shape)} do not fit [{batch_size}, {size}] "
                         f"numbers or booleans ({action_space}: one mask of {size} per observation)")
    bad = invalid_masks(array, sizes)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(f"row {row} of the action masks is {describe_invalid_mask(array[row], sizes)}")
    return array != 0


def _allowed_per_component(allowed: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Bool [K, C]: whether each component of masks [K, M] (bool) allows some action."""
    if not allowed.size:
        return np.zeros((len(allowed), len(sizes)), dtype=bool)
    return np.logical_or.reduceat(allowed, np.cumsum(sizes) - sizes, axis=1)


def _has_method(env: Any) -> bool:
    """Whether ``env`` (an Env, or each environment of a VectorEnv that holds them in ``envs``) has ``action_masks()``."""
    if isinstance(env, gym.vector.VectorEnv):
        envs: list[Any] = getattr(env, "envs", None) or []
        return bool(envs) and hasattr(env, "call") and _has_method(envs[0])
    has = getattr(env, "has_wrapper_attr", None)
    return callable(getattr(env, MASK_METHOD, None)) or (has is not None and bool(has(MASK_METHOD))
                                                          and callable(env.get_wrapper_attr(MASK_METHOD)))


def _single_observation_space(env: Any) -> gym.Space:
    return env.single_observation_space if isinstance(env, gym.vector.VectorEnv) else env.observation_space


def _shown(value: Any, limit: int = 16) -> str:
    """A mask as messages show it: its numbers as a list, the first ``limit`` of a long one."""
    try:
        numbers = np.asarray(value).reshape(-1).tolist()
    except (ValueError, TypeError):
        return repr(value)
    return str(numbers) if len(numbers) <= limit else f"{str(numbers[:limit])[:-1]}, ... ({len(numbers)} numbers)]"
