"""Evaluation episodes: one loop for the agent, the exports, the command line and the tests.

Episode i is reset with ``seed + i``; by default ``seed`` is :data:`DEFAULT_SEED` whatever
the training seed, so ``agent.evaluate()`` and ``trpo-tf evaluate`` run the same episodes.
:func:`evaluate_saved_model` runs the loop through an export's ``serving_default`` graph, with
TensorFlow alone: what ``trpo-tf evaluate EXPORT`` runs, and what an export's metadata records.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from trpo_tf.errors import ExportError

DEFAULT_EPISODES = 10
DEFAULT_SEED = 10_000


def run_episodes(env: gym.Env, act: Callable[[np.ndarray], np.ndarray], episodes: int = DEFAULT_EPISODES,
                 seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Undiscounted returns of ``episodes`` episodes of ``env`` acting with ``act``.

    ``act`` maps a batch of one raw observation [1, *obs_shape] (a dict of them for a Dict
    space) to a batch of one action [1, *A]. Returns ``mean_return``, ``std_return``,
    ``episodes``, ``returns`` (per episode) and ``seed``.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    returns = []
    for episode in range(int(episodes)):
        observation, _ = env.reset(seed=int(seed) + episode)
        done, total = False, 0.0
        while not done:
            action = act(batch_of_one(observation))[0]
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = bool(terminated or truncated)
        returns.append(total)
    return {"mean_return": float(np.mean(returns)), "std_return": float(np.std(returns)),
            "episodes": int(episodes), "returns": returns, "seed": int(seed)}


def batch_of_one(observation: Any) -> Any:
    """One raw observation as a batch [1, *obs_shape]; for a Dict space, each key's array so."""
    if isinstance(observation, dict):
        return {key: np.asarray(value)[None] for key, value in observation.items()}
    return np.asarray(observation)[None]


def saved_model_actor(model_dir: str, dict_observations: bool = False) -> tuple[Callable[[Any], np.ndarray], Any]:
    """The ``serving_default`` signature of the SavedModel in ``model_dir`` as ``act(observations) -> actions``
    (a batch [B, *obs_shape], or a dict of them by key when ``dict_observations``), and its first input's spec.

    Loads the SavedModel with TensorFlow alone. :class:`~trpo_tf.errors.ExportError` when a file of it is
    damaged (naming it), when it has no ``serving_default`` signature or that takes several inputs for an
    observation that is not a Dict.
    """
    import tensorflow as tf

    from trpo_tf.export.saved_model import load_saved_model
    serve = load_saved_model(model_dir).signatures.get("serving_default")
    if serve is None:
        raise ExportError(f"{model_dir} has no serving_default signature")
    inputs = serve.structured_input_signature[1]
    if len(inputs) != 1 and not dict_observations:
        raise ExportError(f"{model_dir}: serving_default takes {sorted(inputs)}; expected one observation input")
    input_name, input_spec = next(iter(inputs.items()))
    output_name = "action" if "action" in serve.structured_outputs else next(iter(serve.structured_outputs))

    def act(observations: Any) -> np.ndarray:
        fed = observations if isinstance(observations, dict) else {input_name: observations}
        return serve(**{key: tf.constant(value, dtype=inputs[key].dtype) for key, value in fed.items()}
                     )[output_name].numpy()

    return act, input_spec


def evaluate_saved_model(model_dir: str, env: gym.Env, episodes: int = DEFAULT_EPISODES, seed: int = DEFAULT_SEED,
                         dict_observations: bool = False) -> dict[str, Any]:
    """:func:`run_episodes` of ``env`` (``episodes`` episodes, episode i reset with ``seed + i``) acting through
    the ``serving_default`` graph of the SavedModel in ``model_dir`` (deterministic actions, as served;
    ``dict_observations``: the observations are dicts, one input per key); the result says so
    (``deterministic``)."""
    act, _ = saved_model_actor(model_dir, dict_observations)
    return dict(run_episodes(env, act, episodes, seed), deterministic=True)
