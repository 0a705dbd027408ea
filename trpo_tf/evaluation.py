"""Evaluation episodes: one loop for the agent, the exports, the command line and the tests.

Episode i is reset with ``seed + i``; by default ``seed`` is :data:`DEFAULT_SEED` whatever
the training seed, so ``agent.evaluate()`` and ``trpo-tf evaluate`` run the same episodes.
:func:`evaluate_saved_model` runs the loop through an export's ``serving_default`` graph, with
TensorFlow alone: what ``trpo-tf evaluate EXPORT`` runs, and what an export's metadata records.
A policy that takes action masks acts on the masks the environment gives (:mod:`trpo_tf.sampling.masks`).
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from trpo_tf.errors import ActionMaskError, ExportError
from trpo_tf.policies.distributions.base import MASK_NAME
from trpo_tf.sampling.masks import MaskReader, find_source

DEFAULT_EPISODES = 10
DEFAULT_SEED = 10_000


def run_episodes(env: gym.Env, act: Callable[..., np.ndarray], episodes: int = DEFAULT_EPISODES,
                 seed: int = DEFAULT_SEED, mask_source: str | None = None) -> dict[str, Any]:
    """Undiscounted returns of ``episodes`` episodes of ``env`` acting with ``act``.

    ``act`` maps a batch of one raw observation [1, *obs_shape] (a dict of them for a Dict
    space) to a batch of one action [1, *A]. With a ``mask_source`` (where ``env`` gives action
    masks: "info", "method", "observation", or "auto" for the first it offers; see
    :mod:`trpo_tf.sampling.masks`) ``act(observations, masks)`` also takes the masks, bool [1, M],
    and the observations lose their ``action_mask`` key when that is the source;
    :class:`~trpo_tf.errors.ActionMaskError` when the environment gives none or a bad one. An ``act``
    that carries a recurrent state (:class:`RecurrentActor`, with a ``reset()`` method) is reset at every
    episode start. Returns ``mean_return``, ``std_return``, ``episodes``, ``returns`` (per episode) and ``seed``.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    returns, reader, masks, steps = [], None, None, 0
    for episode in range(int(episodes)):
        observation, info = env.reset(seed=int(seed) + episode)
        if isinstance(act, RecurrentActor):
            act.reset()
        if mask_source is not None:
            reader = reader or _mask_reader(env, info, mask_source, steps)
            observation, masks = _read_masks(reader, env, observation, info, "reset", steps)
        done, total = False, 0.0
        while not done:
            action = (act(batch_of_one(observation)) if reader is None else act(batch_of_one(observation), masks))[0]
            observation, reward, terminated, truncated, info = env.step(action)
            steps += 1
            total += float(reward)
            done = bool(terminated or truncated)
            if reader is not None and not done:
                observation, masks = _read_masks(reader, env, observation, info, "step", steps)
        returns.append(total)
    return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
            "episodes": int(episodes), "returns": returns, "seed": int(seed)}


class RecurrentActor:
    """``act(observations[, masks]) -> actions`` over a recurrent ``step(observations, states[, masks]) ->
    (actions, states)``, carrying the states [B, S] of ``batch`` environments from call to call;
    :meth:`reset` starts new episodes from ``initial(batch)`` (zeros [batch, S])."""

    def __init__(self, step: Callable[..., tuple[np.ndarray, np.ndarray]], initial: Callable[[int], np.ndarray],
                 batch: int = 1):
        self.step = step
        self.initial = initial
        self.batch = batch
        self.state = initial(batch)

    def reset(self) -> None:
        """Forget the states: the next call starts episodes."""
        self.state = self.initial(self.batch)

    def __call__(self, observations: Any, masks: np.ndarray | None = None) -> np.ndarray:
        actions, self.state = self.step(observations, self.state) if masks is None else self.step(
            observations, self.state, masks)
        return actions


def _mask_reader(env: gym.Env, reset_info: dict[str, Any], source: str, steps: int) -> MaskReader:
    """The reader of ``env`` 's masks from ``source`` ("auto": the first source the environment offers)."""
    name = getattr(env.spec, "id", None) or type(env.unwrapped).__name__
    found = find_source(env, reset_info) if source == "auto" else source
    if found is None:
        raise ActionMaskError(f"the evaluation environment ({name}) gives no action masks (info['action_mask'], "
                              "action_masks() or an 'action_mask' observation key), which the policy takes")
    return MaskReader(found, env.action_space, 1, lambda n: f"the evaluation environment ({name})", vectorized=False)


def _read_masks(reader: MaskReader, env: gym.Env, observation: Any, info: dict[str, Any], call: str,
                steps: int) -> tuple[Any, np.ndarray]:
    """(the observation as the policy reads it, its mask checked, bool [1, M])."""
    observation, masks = reader.read(env, observation, info, call, steps)
    assert masks is not None
    return observation, reader.check_values(masks, lambda k: (0, call, steps))


def batch_of_one(observation: Any) -> Any:
    """One raw observation as a batch [1, *obs_shape]; for a Dict space, each key's array so."""
    if isinstance(observation, dict):
        return {key: np.asarray(value)[None] for key, value in observation.items()}
    return np.asarray(observation)[None]


def saved_model_actor(model_dir: str, dict_observations: bool = False) -> tuple[Callable[..., np.ndarray], Any, bool]:
    """The ``serving_default`` signature of the SavedModel in ``model_dir`` as ``act(observations) -> actions``
    (a batch [B, *obs_shape], or a dict of them by key when ``dict_observations``), its first observation
    input's spec, and whether it takes action masks (an ``action_mask`` input): then it is
    ``act(observations, masks)``, masks [B, M]. A recurrent policy's (a ``state`` input and an ``initial_state``
    signature) is a :class:`RecurrentActor` for one environment, which carries the state.

    Loads the SavedModel with TensorFlow alone. :class:`~trpo_tf.errors.ExportError` when a file of it is
    damaged (naming it), when it has no ``serving_default`` signature or that takes several inputs for an
    observation that is not a Dict.
    """
    import tensorflow as tf

    from trpo_tf.export.saved_model import load_saved_model
    signatures = load_saved_model(model_dir).signatures
    serve = signatures.get("serving_default")
    if serve is None:
        raise ExportError(f"{model_dir} has no serving_default signature")
    inputs = serve.structured_input_signature[1]
    recurrent = "state" in inputs and "initial_state" in signatures
    observation_inputs = {name: spec for name, spec in inputs.items()
                          if name != MASK_NAME and not (recurrent and name == "state")}
    if len(observation_inputs) != 1 and not dict_observations:
        raise ExportError(f"{model_dir}: serving_default takes {sorted(inputs)}; expected one observation input")
    input_name, input_spec = next(iter(observation_inputs.items()))
    output_name = "action" if "action" in serve.structured_outputs else next(iter(serve.structured_outputs))
    if recurrent:  # a recurrent policy: carry the state from call to call, from initial_state at resets
        initial_state = signatures["initial_state"]

        def step(observations: Any, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            fed = dict(observations) if isinstance(observations, dict) else {input_name: observations}
            fed = {key: tf.constant(value, dtype=inputs[key].dtype) for key, value in fed.items()}
            outputs = serve(state=tf.constant(state, tf.float32), **fed)
            return outputs[output_name].numpy(), outputs["state"].numpy()

        return RecurrentActor(step, lambda batch: initial_state(batch_size=tf.constant(batch))["state"].numpy()), \
            input_spec, False

    def act(observations: Any, masks: np.ndarray | None = None) -> np.ndarray:
        fed = dict(observations) if isinstance(observations, dict) else {input_name: observations}
        if masks is not None:
            fed[MASK_NAME] = np.asarray(masks) != 0
        return serve(**{key: tf.constant(value, dtype=inputs[key].dtype) for key, value in fed.items()}
                     )[output_name].numpy()

    return act, input_spec, MASK_NAME in inputs


def evaluate_saved_model(model_dir: str, env: gym.Env, episodes: int = DEFAULT_EPISODES, seed: int = DEFAULT_SEED,
                         dict_observations: bool = False, mask_source: str | None = None) -> dict[str, Any]:
    """:func:`run_episodes` of ``env`` (``episodes`` episodes, episode i reset with ``seed + i``) acting through
    the ``serving_default`` graph of the SavedModel in ``model_dir`` (deterministic actions, as served;
    ``dict_observations``: the observations are dicts, one input per key); the result says so
    (``deterministic``). A graph that takes action masks gets those ``env`` gives from ``mask_source``
    (None: the first source it offers)."""
    act, _, masked = saved_model_actor(model_dir, dict_observations)
    source = (mask_source or "auto") if masked else None
    return dict(run_episodes(env, act, episodes, seed, source), deterministic=True)
