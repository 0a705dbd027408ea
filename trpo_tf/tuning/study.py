"""The study in its database: opening it, refusing one that measures something else, and the loop each
process runs until the study has its trials.

Counting: a study has its ``trials`` when that many trials are finished (COMPLETE or PRUNED), whoever ran
them. A process starts a trial only while finished + running + waiting trials are fewer, and a trial
that finds, once created, that the trials numbered before it already make up the count is not run
(it is marked FAIL with :class:`SurplusTrial`), so processes racing for the last trial do not overshoot.

Crashes: every running trial writes a heartbeat every ``heartbeat`` seconds; one silent for twice that
(a process killed with kill -9, a machine lost) is marked FAIL by the next process that looks, and
Optuna's :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback` queues a copy with the same
parameters (WAITING), which the next free process runs. A process with nothing to start waits while
other trials run, so a trial of a dead process is retried before the command returns.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import time
import warnings
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from trpo_tf.errors import ConfigError, InputError
from trpo_tf.tuning.settings import Tuning

RECORD_ATTR = "trpo_tf_tune"  # the study's user attribute: Tuning.record()
SPACE_ATTR = "trpo_tf_space"  # ... and the space of the command that created it, described
MAX_RETRIES = 2  # a trial whose process died is run again at most this often (a config that kills its process)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
CLAIMED = FINISHED + (TrialState.RUNNING, TrialState.WAITING)
SQLITE_TIMEOUT = 60  # seconds a process waits for another's write lock on an SQLite study


class StorageError(InputError):
    """A storage URL that cannot be opened, or a study in it that this command must not continue."""


class SurplusTrial(Exception):
    """A trial created when the study already had its trials (another process started the last one)."""


def open_storage(url: str, heartbeat: int) -> optuna.storages.RDBStorage:
    """The Optuna RDB storage at ``url``, with heartbeats every ``heartbeat`` s and retries of dead trials."""
    import sqlalchemy

    engine = {"connect_args": {"timeout": SQLITE_TIMEOUT}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES))
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, RuntimeError, ValueError) as error:
            reason = " ".join(str(error.__cause__ or error).split()).split(" (Background on this error")[0]
            hint = " (install the database driver the URL names)" if isinstance(error, ImportError) else ""
            raise StorageError(f"cannot open storage {shown_url(url)}: {type(error).__name__}: {reason}{hint}") from None


def shown_url(url: str) -> str:
    """``url`` with its password hidden (as messages and files show it)."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return repr(url)


def prepare(tuning: Tuning) -> None:
    """Create the study, or check that the existing one measures what ``tuning`` measures and that its
    trials' parameters fit ``tuning.space``; StorageError or ConfigError (nothing written) otherwise."""
    storage = open_storage(tuning.storage, tuning.heartbeat)
    try:
        study = optuna.load_study(study_name=tuning.study, storage=storage)
    except KeyError:
        study = optuna.create_study(storage=storage, study_name=tuning.study, direction="maximize",
                                    load_if_exists=True)
        if RECORD_ATTR not in study.user_attrs and not study.get_trials(deepcopy=False):
            study.set_user_attr(RECORD_ATTR, tuning.record())
            study.set_user_attr(SPACE_ATTR, tuning.describe_space())
    _check_record(study, tuning)
    _check_space(study, tuning)


def _check_record(study: optuna.Study, tuning: Tuning) -> None:
    where = f"study {tuning.study!r} in {shown_url(tuning.storage)}"
    record = study.user_attrs.get(RECORD_ATTR)
    if record is None:
        raise StorageError(f"{where} was not made by trpo-tf tune; choose another --study")
    if record["env_id"] != tuning.env_id:
        raise StorageError(f"{where} tunes {record['env_id']}, not {tuning.env_id}; choose another --study "
                           f"(or --storage)")
    ours = tuning.record()
    changed = [f"{key} {ours[key]!r} (the study's: {record.get(key)!r})" for key in ours if record.get(key) != ours[key]]
    if changed:
        raise StorageError(f"{where} measures its trials otherwise: this command has {'; '.join(changed)}; "
                           f"continue it with the same settings, or choose another --study")


def _check_space(study: optuna.Study, tuning: Tuning) -> None:
    """ConfigError naming the key when a parameter of ``tuning.space`` cannot share the study with its
    trials (another kind of distribution, other choices, log scale changed); ranges may change."""
    recorded = {}
    for trial in study.get_trials(deepcopy=False):
        recorded.update(trial.distributions)
    for key, param in tuning.space.items():
        if key in recorded:
            try:
                optuna.distributions.check_distribution_compatibility(recorded[key], param.distribution())
            except ValueError as error:
                raise ConfigError(f"search space: {key} ({param.describe()}) does not fit the study's trials, which "
                                  f"sampled it from {recorded[key]}: {error}") from None


def counts(study: optuna.Study) -> collections.Counter[TrialState]:
    """How many of the study's trials are in each state."""
    return collections.Counter(trial.state for trial in study.get_trials(deepcopy=False))


def load(tuning: Tuning) -> optuna.Study:
    """The study of ``tuning``, with the TPE sampler and the median pruner, for one process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(multivariate=True, constant_liar=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=tuning.evaluations // 3)
    return optuna.load_study(study_name=tuning.study, storage=open_storage(tuning.storage, tuning.heartbeat),
                             sampler=sampler, pruner=pruner)


def work(tuning: Tuning) -> None:
    """Run trials until the study has ``tuning.trials`` finished ones (run here or elsewhere)."""
    from trpo_tf import startup

    if startup.quiet_requested():  # by trpo-tf tune, in this process or the one that started it
        startup.quiet()  # before anything imports TensorFlow
    from trpo_tf.tuning.objective import Objective

    study = load(tuning)
    _fail_stale_trials(study)  # a process killed in an earlier run left its trial running: retry or fail it
    objective = guarded(Objective(tuning), tuning.trials)
    while True:
        states = counts(study)
        done = sum(states[state] for state in FINISHED)
        if done >= tuning.trials:
            return
        if done + states[TrialState.RUNNING] + states[TrialState.WAITING] < tuning.trials or states[TrialState.WAITING]:
            study.optimize(objective, n_trials=1, catch=(SurplusTrial,), gc_after_trial=True)
        else:  # the last trials run elsewhere: wait for them, or for their heartbeats to stop
            time.sleep(min(tuning.heartbeat, 5))
            _fail_stale_trials(study)


def _fail_stale_trials(study: optuna.Study) -> None:
    """Mark FAIL the running trials of ``study`` whose heartbeat stopped (their process died); the storage's
    callback queues a retry of each (at most MAX_RETRIES times)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def guarded(objective: Callable[[optuna.trial.Trial], float], trials: int) -> Callable[[optuna.trial.Trial], float]:
    """``objective``, not run (SurplusTrial) for a trial created once the study had ``trials`` claimed
    (finished, running or waiting) trials numbered before it."""

    def run(trial: optuna.trial.Trial) -> float:
        earlier = [other for other in trial.study.get_trials(deepcopy=False, states=CLAIMED)
                   if other.number < trial.number]
        if len(earlier) >= trials:
            raise SurplusTrial(f"trial {trial.number} not run: the study already had its {trials} trials")
        return objective(trial)

    return run


def run(tuning: Tuning, jobs: int) -> None:
    """:func:`work` on ``tuning`` in this process (``jobs`` = 1) or in ``jobs`` new processes at once, until
    the study is done."""
    if jobs == 1:
        work(tuning)
        return
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures: list[concurrent.futures.Future[Any]] = [pool.submit(work, tuning) for _ in range(jobs)]
        for future in futures:
            future.result()
