"""One trial: sample a config, train it on each seed with periodic evaluations that feed the pruner, and
return the mean of the final evaluations."""

from __future__ import annotations

import os
import socket
from typing import Any

import optuna

from trpo_tf.callbacks import EVAL_RETURN_MEAN, EvalCallback
from trpo_tf.config import TRPOConfig
from trpo_tf.errors import ConfigError
from trpo_tf.tuning.settings import CONFIG_ATTR, SEED_RETURNS_ATTR, WORKER_ATTR, Tuning
from trpo_tf.tuning.space import suggest


class Objective:
    """``objective(trial)`` → the mean, over seeds 0 … seeds-1, of the final deterministic evaluation
    (mean return of ``eval_episodes`` episodes) of an agent trained ``timesteps`` steps with the trial's config.

    Each run is evaluated (:class:`~trpo_tf.EvalCallback`) at the first iteration that reaches each
    k/evaluations of its iterations, k = 1 … evaluations (the last at the last iteration: that is the
    final evaluation); the mean return is reported to the trial at step seed·evaluations + k, so
    trials are compared at the same fractions of their budget whatever their steps per iteration.
    When the pruner says so, training stops and the trial is pruned. ``tuning``: the tuning run
    (:class:`~trpo_tf.tuning.settings.Tuning`) whose trials it measures.
    """

    def __init__(self, tuning: Tuning):
        self.tuning = tuning

    def __call__(self, trial: optuna.trial.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        sampled = suggest(trial, self.tuning.space)
        try:
            config = self.tuning.config(sampled)
        except ConfigError as error:  # inside an integer range, where check_space looks at the bounds only
            raise ConfigError(f"trial {trial.number} sampled {sampled}: {error}") from None
        trial.set_user_attr(CONFIG_ATTR, config.to_dict())
        returns = [self._train(trial, config, seed) for seed in range(self.tuning.seeds)]
        trial.set_user_attr(SEED_RETURNS_ATTR, returns)
        return sum(returns) / len(returns)

    def _train(self, trial: optuna.trial.Trial, config: TRPOConfig, seed: int) -> float:
        """Train on ``seed``, reporting to ``trial``; the final evaluation's mean return (TrialPruned if pruned)."""
        from trpo_tf.trpo import TRPO

        tuning = self.tuning
        with TRPO(tuning.env_id, config, seed=seed) as agent:
            evaluation = EvalCallback(agent, tuning.env_id, every=1, episodes=tuning.eval_episodes)
            report = ReportToTrial(trial, evaluation, iterations=-(-tuning.timesteps // config.steps_per_iteration),
                                   evaluations=tuning.evaluations, first_step=seed * tuning.evaluations)
            try:
                agent.learn(tuning.timesteps, callback=report)
            finally:
                evaluation.close()
        if report.pruned is not None:
            raise optuna.TrialPruned(f"seed {seed}, evaluation {report.pruned[0]}: mean return "
                                     f"{report.pruned[1]:.2f}")
        return float(evaluation.evaluations[-1]["mean_return"])


class ReportToTrial:
    """Training callback: at the first iteration past each k/``evaluations`` of ``iterations``, evaluate
    with ``evaluation`` (an EvalCallback with ``every=1``), report the mean return to ``trial`` at step
    ``first_step`` + k and stop training when the trial should be pruned (``pruned``: (k, return))."""

    def __init__(self, trial: optuna.trial.Trial, evaluation: EvalCallback, iterations: int, evaluations: int,
                 first_step: int):
        self.trial, self.evaluation = trial, evaluation
        self.iterations, self.evaluations, self.first_step = iterations, evaluations, first_step
        self.pruned: tuple[int, float] | None = None

    def __call__(self, entry: dict[str, Any]) -> bool | None:
        iteration = int(entry["iteration"])
        point = iteration * self.evaluations // self.iterations  # evaluation points reached so far
        if point == (iteration - 1) * self.evaluations // self.iterations:
            return None
        self.evaluation(entry)
        value = float(entry[EVAL_RETURN_MEAN])
        self.trial.report(value, self.first_step + point)
        if self.trial.should_prune():
            self.pruned = (point, value)
            return False
        return None
