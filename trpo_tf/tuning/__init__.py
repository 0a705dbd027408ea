"""Hyperparameter search on Optuna: a study in a database, trials that train agents (``trpo-tf tune``).

A trial samples a config from the search space (:mod:`~trpo_tf.tuning.space`; TPE sampler), trains it on
each seed with periodic deterministic evaluations that feed the median pruner
(:mod:`~trpo_tf.tuning.objective`), and scores the mean final evaluation return. The study lives in a
database that survives crashes and is shared by every process and machine given its URL
(:mod:`~trpo_tf.tuning.study`); ``--out`` gets the best config, all trials and plots
(:mod:`~trpo_tf.tuning.results`). The package is called ``tuning`` and not ``tune`` so that the function
``trpo_tf.tune`` is never shadowed by a submodule of that name. User guide: docs/tuning.md.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, Any, Mapping

from trpo_tf import evaluation
from trpo_tf.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from trpo_tf.tuning.results import TuningResult
    from trpo_tf.tuning.settings import Tuning

__all__ = ["tune"]

DEFAULT_HEARTBEAT = 60  # seconds between a running trial's heartbeats; silent for twice that: dead
DEFAULT_EVALUATIONS = 10  # evaluations per training run, the pruner's checkpoints
STORAGE_FILE = "study.db"  # the default storage: an SQLite file in --out


def tune(env_id: str, trials: int, timesteps: int, *, storage: str | None = None, study: str | None = None,
         out: str | None = None, jobs: int = 1, seeds: int = 1, space: str | Mapping[str, Any] | None = None,
         fixed: Mapping[str, Any] | None = None, workers: int | None = None, heartbeat: int = DEFAULT_HEARTBEAT,
         evaluations: int = DEFAULT_EVALUATIONS, eval_episodes: int = evaluation.DEFAULT_EPISODES) -> TuningResult:
    """Tune TRPO's hyperparameters on ``env_id`` until the study has ``trials`` finished trials.

    Args:
        env_id: a gymnasium environment id.
        trials: finished (complete or pruned) trials the study should have in total; a study that has
            them already runs none (the results are written again).
        timesteps: environment steps each trial trains for, per seed.
        storage: an Optuna RDB storage URL (``sqlite:///path.db``, ``postgresql://user@host/db``);
            default an SQLite file ``study.db`` in ``out``. Every process given the same URL and
            ``study`` works on the same study.
        study: the study's name (default: ``env_id``); an existing study is continued.
        out: directory for the results (default ``runs/tune-<env_id>``).
        jobs: trials run at once, each in its own process.
        seeds: each trial trains on seeds 0 … seeds-1; its value is the mean of their final evaluations.
        space: the search space: a YAML file or its mapping (see :mod:`trpo_tf.tuning.space`); default
            the documented default space.
        fixed: TRPOConfig fields fixed for every trial (``--set``), taken out of the space.
        workers: sample each trial's environments in this many worker processes (``n_workers``); the
            default space's ``n_envs`` choices are multiplied by it.
        heartbeat: seconds between heartbeats of a running trial; a trial silent for twice that is
            taken as dead (its process killed), failed and run again.
        evaluations: evaluations per training run, evenly spaced; each is reported to the pruner.
        eval_episodes: deterministic episodes per evaluation.

    Bad input (unknown environment, a space with an unknown key or an empty range, values TRPOConfig
    refuses, a storage that cannot be opened, a study that measures another environment or budget)
    raises an :class:`~trpo_tf.errors.InputError` before any trial starts, leaving the study as it was.
    Returns a :class:`~trpo_tf.tuning.results.TuningResult`.
    """
    for name, value, minimum in (("trials", trials, 1), ("timesteps", timesteps, 1), ("jobs", jobs, 1),
                                 ("seeds", seeds, 1), ("workers", 1 if workers is None else workers, 1),
                                 ("heartbeat", heartbeat, 1), ("evaluations", evaluations, 1),
                                 ("eval_episodes", eval_episodes, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if importlib.util.find_spec("optuna") is None:
        raise MissingDependencyError("trpo-tf tune needs Optuna, which is not installed: pip install 'trpo_tf[tune]'")
    from trpo_tf.tuning import results
    from trpo_tf.tuning import study as studies

    tuning = resolve(env_id, trials, timesteps, storage=storage, study=study, out=out, seeds=seeds, space=space,
                     fixed=dict(fixed or {}), workers=workers, heartbeat=heartbeat, evaluations=evaluations,
                     eval_episodes=eval_episodes)
    if storage is None:
        os.makedirs(tuning.out, exist_ok=True)
    studies.prepare(tuning)  # refuses a study that measures something else, before anything is written
    os.makedirs(tuning.out, exist_ok=True)
    studies.run(tuning, jobs)
    return results.write_results(studies.load(tuning), tuning)


def resolve(env_id: str, trials: int, timesteps: int, *, storage: str | None, study: str | None, out: str | None,
            seeds: int, space: str | Mapping[str, Any] | None, fixed: dict[str, Any], workers: int | None,
            heartbeat: int, evaluations: int, eval_episodes: int) -> Tuning:
    """The :class:`~trpo_tf.tuning.settings.Tuning` the arguments of :func:`tune` describe, checked: the
    environment exists, the space parses and TRPOConfig accepts its values with ``fixed``.

    ``env_id``, ``trials``, ``timesteps``, ``storage``, ``study``, ``out``, ``seeds``, ``space``, ``fixed``,
    ``workers``, ``heartbeat``, ``evaluations`` and ``eval_episodes`` are :func:`tune`'s arguments (``fixed``
    as a dict); raises :class:`~trpo_tf.errors.InputError` as :func:`tune` says.
    """
    from trpo_tf import presets
    from trpo_tf.sampling import check_env_id, make_env
    from trpo_tf.tuning import space as spaces
    from trpo_tf.tuning.settings import Tuning

    check_env_id(env_id)
    preset = presets.load(env_id)
    base = preset[0] if preset is not None else {}
    probe = make_env(env_id, {**base, **fixed}.get("env_kwargs"))
    action_space = probe.action_space
    probe.close()
    default = spaces.default_space(action_space, workers or 1)
    if space is None:
        chosen, source = default, "the default search space"
    elif isinstance(space, str):
        chosen, source = spaces.read_space_file(space, default), space
    else:
        chosen, source = spaces.parse_space(dict(space), "space", default), "space"
    searched = spaces.without(chosen, fixed)
    if not searched:
        raise ConfigError(f"--set fixes every key of {source}: nothing left to tune")
    given = {**fixed, **({} if workers is None else {"n_workers": workers})}
    spaces.check_space(searched, base, given, source + "".join(
        f"{' with' if index == 0 else ','} {key}={value!r}" for index, (key, value) in enumerate(given.items())))
    out = out or os.path.join("runs", "tune-" + env_id.replace("/", "_").replace(":", "_"))
    return Tuning(env_id=env_id, trials=trials, timesteps=timesteps,
                  storage=storage or f"sqlite:///{os.path.abspath(os.path.join(out, STORAGE_FILE))}",
                  study=study or env_id, out=out, seeds=seeds, space=searched, base=base, fixed=fixed, workers=workers,
                  heartbeat=heartbeat, evaluations=evaluations, eval_episodes=eval_episodes)
