"""What a tuning run leaves in ``--out``: the best config, a table of all trials and two plots."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import warnings
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from trpo_tf.files import atomic_write
from trpo_tf.presets import TIMESTEPS_KEY
from trpo_tf.tuning.settings import CONFIG_ATTR, SEED_RETURNS_ATTR, WORKER_ATTR, Tuning
from trpo_tf.tuning.study import shown_url

BEST_FILE = "best.yaml"
TRIALS_FILE = "trials.csv"
HISTORY_PLOT = "optimization_history.png"
IMPORTANCES_PLOT = "param_importances.png"
MIN_TRIALS_FOR_IMPORTANCES = 2  # complete trials Optuna's importance evaluators need
TRIAL_COLUMNS = ("number", "state", "value", "seed_returns", "retry_of", "worker", "datetime_start",
                 "datetime_complete", "seconds")


@dataclasses.dataclass(frozen=True)
class TuningResult:
    """What :func:`trpo_tf.tune` returns: the study's state and the files written to ``--out``.

    ``best_value`` is the best complete trial's objective (the mean over seeds of the final mean
    evaluation return), ``best_trial`` its number and ``best_config`` its full TRPOConfig fields
    (None, None, None while no trial is complete); ``states`` counts the trials by state.
    """

    env_id: str
    study: str
    storage: str
    trials: int
    states: dict[str, int]
    best_trial: int | None
    best_value: float | None
    best_config: dict[str, Any] | None
    files: dict[str, str]
    notes: list[str]

    @property
    def finished(self) -> int:
        """Trials that count toward ``--trials``: complete or pruned."""
        return self.states.get("COMPLETE", 0) + self.states.get("PRUNED", 0)

    def summary(self) -> str:
        """One line: the best value, its trial and the file with its config."""
        counted = (f"{self.finished} of {self.trials} trials finished: {self.states.get('COMPLETE', 0)} complete, "
                   f"{self.states.get('PRUNED', 0)} pruned")
        if self.best_trial is None:
            return f"no trial complete yet ({counted}); no {BEST_FILE} written; trials: {self.files[TRIALS_FILE]}"
        return (f"best value {self.best_value:.2f} in trial {self.best_trial} ({counted}): "
                f"{self.files[BEST_FILE]}")


def write_results(study: optuna.Study, tuning: Tuning) -> TuningResult:
    """Write best.yaml (when a trial is complete), trials.csv and the plots of ``study``'s trials to
    ``tuning.out``; returns what the command prints."""
    trials = study.get_trials()
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    files = {TRIALS_FILE: os.path.join(tuning.out, TRIALS_FILE)}
    atomic_write(files[TRIALS_FILE], trials_csv(trials))
    notes = []
    if best is not None:
        files[BEST_FILE] = os.path.join(tuning.out, BEST_FILE)
        atomic_write(files[BEST_FILE], best_yaml(best, tuning, files[BEST_FILE]))
    files[HISTORY_PLOT] = _plot(optuna.visualization.matplotlib.plot_optimization_history, study,
                                os.path.join(tuning.out, HISTORY_PLOT))
    if len(complete) >= MIN_TRIALS_FOR_IMPORTANCES:
        files[IMPORTANCES_PLOT] = _plot(optuna.visualization.matplotlib.plot_param_importances, study,
                                        os.path.join(tuning.out, IMPORTANCES_PLOT))
    else:
        notes.append(f"{IMPORTANCES_PLOT} not drawn: parameter importances need {MIN_TRIALS_FOR_IMPORTANCES} "
                     f"complete trials, the study has {len(complete)}")
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return TuningResult(env_id=tuning.env_id, study=tuning.study, storage=shown_url(tuning.storage),
                        trials=tuning.trials, states=states, best_trial=None if best is None else best.number,
                        best_value=None if best is None else best.value,
                        best_config=None if best is None else best.user_attrs[CONFIG_ATTR], files=files, notes=notes)


def best_yaml(trial: FrozenTrial, tuning: Tuning, path: str) -> str:
    """``trial``'s full config as a ``--config`` file (``timesteps``: the trials' budget of ``tuning``), with a
    header saying where it comes from (``path``: the file it is written to, named in the header)."""
    header = (f"# The best trial of trpo-tf tune: trial {trial.number} of study {tuning.study!r} in "
              f"{shown_url(tuning.storage)},\n"
              f"# mean evaluation return {trial.value:.2f} over {_seeds(tuning.seeds)} "
              f"({tuning.eval_episodes} deterministic episodes each) after {tuning.timesteps:,} steps.\n"
              f"# Train with: trpo-tf train {tuning.env_id} --config {path}\n")
    fields = {TIMESTEPS_KEY: tuning.timesteps, **trial.user_attrs[CONFIG_ATTR]}
    return header + yaml.safe_dump(fields, sort_keys=False, default_flow_style=None)


def _seeds(count: int) -> str:
    return "seed 0" if count == 1 else f"seeds 0-{count - 1}"


def trials_csv(trials: list[FrozenTrial]) -> str:
    """The CSV text of ``trials``, one row per trial: number, state, value (a pruned trial's: its last report),
    each seed's final evaluation, the trial it retries, the process that ran it, times, then one column
    per parameter."""
    params = sorted({name for trial in trials for name in trial.params})
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(TRIAL_COLUMNS + tuple(params))
    for trial in trials:
        seconds = trial.duration.total_seconds() if trial.duration is not None else ""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry_of = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
        writer.writerow([trial.number, trial.state.name, _cell(trial.value),
                         " ".join(repr(value) for value in trial.user_attrs.get(SEED_RETURNS_ATTR, [])),
                         _cell(retry_of), trial.user_attrs.get(WORKER_ATTR, ""), _cell(trial.datetime_start),
                         _cell(trial.datetime_complete), seconds]
                        + [_cell(trial.params.get(name)) for name in params])
    return text.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value)


def _plot(draw: Any, study: optuna.Study, path: str) -> str:
    """Draw ``draw(study)`` (an Optuna matplotlib visualization) to the PNG ``path``, replacing it whole.

    Optuna's plots set Matplotlib's ggplot style globally: the caller's settings are restored afterwards.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    temporary = f"{path}.{os.getpid()}.tmp"
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        figure = draw(study).figure
        try:
            figure.savefig(temporary, format="png", bbox_inches="tight")
            os.replace(temporary, path)
        finally:
            plt.close(figure)
            if os.path.exists(temporary):
                os.unlink(temporary)
    return path
