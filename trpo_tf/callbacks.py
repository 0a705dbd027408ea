"""Training callbacks for :meth:`TRPO.learn`: periodic evaluation that keeps the best policy, early stops.

Every callback is a plain ``callback(entry)`` on the history entry of an iteration; returning
False stops training. :class:`EvalCallback` evaluates the policy on its own environment every
``every`` iterations, adds ``eval_return_mean`` and ``eval_return_std`` to that iteration's
entry (so loggers placed after it record them) and keeps the best policy. The stop callbacks
read one number from the entries they are given, by default ``eval_return_mean``: hand them
to ``EvalCallback(..., callbacks=[...])``, which calls them after each evaluation::

    evaluation = EvalCallback(agent, "Pendulum-v1", every=5, best_dir="runs/best",
                              callbacks=[StopOnReward(-200), StopOnNoImprovement(patience=10)])
    try:
        agent.learn(500_000, callback=evaluation)
    finally:
        evaluation.close()

``StopOnReward(threshold, key="episode_return_mean")`` passed to ``learn`` directly stops on
the training episodes' return instead, without evaluations.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import TYPE_CHECKING, Any, Callable, Iterable

import gymnasium as gym

from trpo_tf import checkpoint, evaluation
from trpo_tf.checkpoint import CheckpointCallback
from trpo_tf.errors import CallbackError, SpaceMismatchError
from trpo_tf.monitor import Callbacks, Entry
from trpo_tf.sampling import make_env
from trpo_tf.sampling.masks import policy_observation_space

if TYPE_CHECKING:
    from trpo_tf.trpo import TRPO

__all__ = ["CheckpointCallback", "EvalCallback", "StopOnNoImprovement", "StopOnReward", "EVAL_RETURN_MEAN",
           "EVAL_RETURN_STD"]

EVAL_RETURN_MEAN = "eval_return_mean"  # entry keys EvalCallback adds at the iterations it evaluates
EVAL_RETURN_STD = "eval_return_std"
BEST_RECORD = "best_evaluation"  # key of best_dir/run.json: the evaluation of the policy kept there


class EvalCallback:
    """Every ``every`` iterations, evaluate the policy deterministically on a separate environment.

    Args:
        agent: the :class:`TRPO` being trained (read through its public methods only).
        eval_env: an environment id (made with the run's ``env_kwargs`` when it is the training
            id, and closed by :meth:`close`) or a gymnasium ``Env`` (left open) — never one of
            the training environments. Its spaces must be the training spaces.
        every: evaluate after iterations ``every``, ``2·every``, ... (numbered from the start of
            the run, so a resumed run keeps the rhythm).
        episodes: episodes per evaluation, as :meth:`TRPO.evaluate`.
        seed: episode i is reset with ``seed + i``, the same episodes at each evaluation, so
            evaluations compare policies, not luck.
        best_dir: a run directory for the best policy so far: each new best (strictly higher
            mean return) is checkpointed there, so ``TRPO.load(best_dir)``, ``trpo-tf evaluate
            best_dir`` and ``trpo-tf export best_dir`` use it. Its ``run.json`` records the
            evaluation under ``best_evaluation``; given a directory this callback already
            filled for the same run (a resumed run), it continues from that best.
        export_best: a SavedModel directory: each new best is also exported there as the next
            version (``1``, ``2``, ...), its evaluation in the metadata; the highest version,
            the one TF Serving serves, is the best.
        callbacks: called after each evaluation with the entry (``eval_return_mean`` and
            ``eval_return_std`` in it); training stops when one returns False.

    Evaluating draws nothing from the training random streams and steps no training
    environment, so the training history is the same with or without this callback.
    Attributes: ``evaluations`` (one dict per evaluation: iteration, timesteps, mean_return,
    std_return, returns, seed) and ``best`` (the best of them, or the one recorded in
    ``best_dir``; None before the first).
    """

    def __init__(self, agent: TRPO, eval_env: str | gym.Env, every: int = 10,
                 episodes: int = evaluation.DEFAULT_EPISODES, seed: int = evaluation.DEFAULT_SEED,
                 best_dir: str | None = None, export_best: str | None = None,
                 callbacks: Iterable[Callable[[Entry], Any]] = ()):
        self.agent = agent
        self.every = _integer(every, "every", minimum=1)
        self.episodes = _integer(episodes, "episodes", minimum=1)
        self.seed = _integer(seed, "seed", minimum=0)
        self.best_dir, self.export_best = best_dir, export_best
        self.callbacks = Callbacks(callbacks)
        self.evaluations: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        for name, path in (("best_dir", best_dir), ("export_best", export_best)):
            if path is not None and os.path.exists(path) and not os.path.isdir(path):
                raise CallbackError(f"{name} {path} exists and is not a directory")
        self.env, self.owns_env = self._evaluation_env(eval_env), isinstance(eval_env, str)
        try:
            if best_dir is not None:
                self.best = self._claim_best_dir(best_dir)
        except BaseException:
            self.close()
            raise

    def __call__(self, entry: Entry) -> bool | None:
        if entry["iteration"] % self.every:
            return None
        result = self.agent.evaluate(self.episodes, env=self.env, seed=self.seed)
        record = {"iteration": int(entry["iteration"]), "timesteps": int(entry["timesteps"]),
                  "mean_return": result["mean_return"], "std_return": result["std_return"],
                  "returns": result["returns"], "seed": self.seed}
        self.evaluations.append(record)
        entry[EVAL_RETURN_MEAN], entry[EVAL_RETURN_STD] = record["mean_return"], record["std_return"]
        if self.best is None or record["mean_return"] > self.best["mean_return"]:
            self.best = record
            self._keep_best(record)
        return self.callbacks(entry)

    def close(self) -> None:
        """Close the evaluation environment when this callback made it, and the child callbacks."""
        if getattr(self, "owns_env", False):
            self.env.close()
        self.callbacks.close()

    def _evaluation_env(self, eval_env: str | gym.Env) -> gym.Env:
        """The environment to evaluate on, checked: a single Env, not a training one, with the training spaces."""
        if isinstance(eval_env, gym.vector.VectorEnv) or not isinstance(eval_env, (str, gym.Env)):
            raise CallbackError(f"eval_env must be an environment id or one gymnasium Env, got {eval_env!r}")
        if isinstance(eval_env, gym.Env):
            training = [env.unwrapped for env in getattr(self.agent.vector_env, "envs", ())]
            if any(eval_env.unwrapped is env for env in training):
                raise CallbackError("eval_env is one of the training environments; evaluate on a separate one "
                                    "(pass its id, or a new gymnasium Env)")
        env = eval_env if isinstance(eval_env, gym.Env) else make_env(
            eval_env, self.agent.config.env_kwargs if eval_env == self.agent.env_id else None)
        for kind in ("observation_space", "action_space"):
            space = getattr(env, kind)
            if kind == "observation_space":  # as the policy reads it: without the action masks' key, if that is their source
                space = policy_observation_space(space, self.agent.mask_source)
            if space != getattr(self.agent, kind):
                if env is not eval_env:
                    env.close()
                raise SpaceMismatchError(f"eval_env {getattr(env.spec, 'id', env)} has {kind} {getattr(env, kind)} "
                                         f"but the agent was trained on {getattr(self.agent, kind)}")
        return env

    def _claim_best_dir(self, best_dir: str) -> dict[str, Any] | None:
        """Make ``best_dir`` a run directory of this agent's run; the best evaluation it already records."""
        if not os.path.isfile(os.path.join(best_dir, checkpoint.RUN_FILE)):
            checkpoint.write_run(best_dir, self.agent, **{BEST_RECORD: None})
            return None
        checkpoint.check_same_run(self.agent, best_dir)
        info = checkpoint.read_run_info(best_dir)
        if BEST_RECORD not in info:
            raise CallbackError(f"best_dir {best_dir} is a training run directory; give the best policy a "
                                "directory of its own")
        best = info[BEST_RECORD]
        if best is not None and best["iteration"] > len(self.agent.history):
            raise CallbackError(f"best_dir {best_dir} holds the best policy of iteration {best['iteration']}, "
                                f"later than this agent's iteration {len(self.agent.history)}: it belongs to "
                                "another run; remove it or choose another best_dir")
        return best

    def _keep_best(self, record: dict[str, Any]) -> None:
        """Checkpoint the current policy into ``best_dir`` and export it to ``export_best`` (when given)."""
        if self.best_dir is not None:
            checkpoint.save(self.agent, self.best_dir)
            checkpoint.update_run(self.best_dir, **{BEST_RECORD: record})
        if self.export_best is not None:
            self.agent.export(self.export_best, episodes=self.episodes, seed=self.seed, env=self.env)


class StopOnReward:
    """Stops training at the first entry whose ``key`` reaches ``threshold`` (≥).

    With the default key, give it to ``EvalCallback(callbacks=[...])`` so it sees each
    evaluation; with ``key="episode_return_mean"`` pass it to ``learn`` directly. Records the
    iteration it stopped at in ``stopped_at``.
    """

    def __init__(self, threshold: float, key: str = EVAL_RETURN_MEAN):
        self.threshold = _number(threshold, "threshold")
        self.key = key
        self.stopped_at: int | None = None

    def __call__(self, entry: Entry) -> bool:
        if _read(entry, self.key, self) >= self.threshold:
            self.stopped_at = int(entry["iteration"])
            return False
        return True


class StopOnNoImprovement:
    """Stops training after ``patience`` entries in a row that do not beat the best ``key`` so far.

    An entry improves when its value is strictly higher than every earlier one; NaN values
    (no episode finished yet) are skipped, not counted. Never stops before ``min_evaluations``
    values were counted. Give it to ``EvalCallback(callbacks=[...])`` to count evaluations.
    Records the iteration it stopped at in ``stopped_at``.
    """

    def __init__(self, patience: int, min_evaluations: int = 0, key: str = EVAL_RETURN_MEAN):
        self.patience = _integer(patience, "patience", minimum=1)
        self.min_evaluations = _integer(min_evaluations, "min_evaluations", minimum=0)
        self.key = key
        self.best = -math.inf
        self.evaluations = 0
        self.without_improvement = 0
        self.stopped_at: int | None = None

    def __call__(self, entry: Entry) -> bool:
        value = _read(entry, self.key, self)
        if math.isnan(value):
            return True
        self.evaluations += 1
        if value > self.best:
            self.best, self.without_improvement = value, 0
        else:
            self.without_improvement += 1
        if self.without_improvement >= self.patience and self.evaluations >= self.min_evaluations:
            self.stopped_at = int(entry["iteration"])
            return False
        return True


def _read(entry: Entry, key: str, reader: object) -> float:
    """``entry[key]`` as a float; CallbackError saying how to feed ``reader`` when it is missing."""
    name = type(reader).__name__
    if key not in entry:
        raise CallbackError(f"{name} reads {key!r} but the entry of iteration {entry.get('iteration')} has none: "
                            f"give it to EvalCallback(..., callbacks=[...]) to see each evaluation, or choose "
                            f"key='episode_return_mean'")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CallbackError(f"{name} reads {key!r}, which is {value!r}, not a number")
    return float(value)


def _integer(value: Any, name: str, minimum: int) -> int:
    """``value`` when it is an integer ≥ ``minimum``; CallbackError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise CallbackError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _number(value: Any, name: str) -> float:
    """``value`` as a float when it is a finite real number; CallbackError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise CallbackError(f"{name} must be a finite number, got {value!r}")
    return float(value)
