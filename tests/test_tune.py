"""``trpo-tf tune``: the search space, the objective and its pruner reports, a study that survives kill -9 and
is shared by concurrent commands, the files in --out, and one-line errors that leave the study alone.

The study database is read here with the standard library's sqlite3 (Optuna's tables), not through Optuna or
trpo_tf, so what the tests count is what is stored.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import sqlite3
import subprocess
import sys
import time

import gymnasium as gym
import matplotlib
import numpy as np
import optuna
import pytest
import yaml

from trpo_tf import TRPO, TRPOConfig, cli, evaluation, presets
from trpo_tf.errors import ConfigError
from trpo_tf.tuning import resolve
from trpo_tf.tuning import space as spaces
from trpo_tf.tuning import study as studies
from trpo_tf.tuning.objective import Objective
from trpo_tf.tuning.results import write_results
from trpo_tf.tuning.settings import CONFIG_ATTR, SEED_RETURNS_ATTR

from killing import kill_9_when

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = {"steps_per_iteration": 256, "value_epochs": 2, "policy_hidden": [8], "value_hidden": [8]}
TINY_SET = [argument for key, value in TINY.items() for argument in ("--set", f"{key}={json.dumps(value)}")]


def _tuning(tmp_path, env_id="CartPole-v1", space=None, **changes):
    """A resolved Tuning with tiny settings, its SQLite study in ``tmp_path``."""
    arguments = dict(storage=f"sqlite:///{tmp_path}/study.db", study=None, out=str(tmp_path), seeds=1, space=space,
                     fixed=dict(TINY), workers=None, heartbeat=60, evaluations=2, eval_episodes=2)
    arguments.update(changes)
    return resolve(env_id, 2, 512, **arguments)


def _rows(database: str, query: str, *parameters) -> list[tuple]:
    with sqlite3.connect(database) as connection:
        return connection.execute(query, parameters).fetchall()


def _trial_states(database: str) -> dict[int, str]:
    return dict(_rows(database, "SELECT number, state FROM trials ORDER BY number"))


def _digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


# --------------------------------------------------------------------------- the search space

def test_default_space_follows_the_action_space():
    discrete = spaces.default_space(gym.spaces.Discrete(2))
    bounded = spaces.default_space(gym.spaces.Box(-2.0, 2.0, (1,)))
    unbounded = spaces.default_space(gym.spaces.Box(-np.inf, np.inf, (3,)))
    assert "init_log_std" not in discrete and "action_distribution" not in discrete
    assert bounded["action_distribution"].values == ("gaussian", "beta") and "init_log_std" in bounded
    assert "init_log_std" in unbounded and "action_distribution" not in unbounded  # Beta needs finite bounds
    assert spaces.default_space(gym.spaces.Discrete(2), workers=2)["n_envs"].values == (2, 4, 8)
    for env_id in ("CartPole-v1", "Pendulum-v1", "Hopper-v5"):  # TRPOConfig accepts every corner with each preset
        action_space = gym.spaces.Box(-1.0, 1.0, (3,)) if env_id != "CartPole-v1" else gym.spaces.Discrete(2)
        spaces.check_space(spaces.default_space(action_space), presets.load(env_id)[0], {}, env_id)


def test_docs_table_lists_the_default_space():
    """docs/tuning.md's table has one row per key of the default space, with its values as the code has them."""
    with open(os.path.join(REPO, "docs", "tuning.md"), encoding="utf-8") as handle:
        section = handle.read().split("## The default search space")[1].split("\n## ")[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| `")]
    documented = {cells[0].strip().strip("`"): cells[1].strip().replace("`", "") for cells in rows}
    everything = {**spaces.DEFAULT_SPACE, **spaces.BOX_SPACE, **spaces.BOUNDED_BOX_SPACE}
    assert documented == {key: param.describe() for key, param in everything.items()}


def test_space_file_replaces_or_extends_the_default(tmp_path):
    default = spaces.default_space(gym.spaces.Discrete(2))
    replacing = spaces.parse_space({"max_kl": {"low": 0.005, "high": 0.02, "log": True},
                                    "value_epochs": {"low": 5, "high": 9}, "gamma": {"low": 0.9, "high": 1}},
                                   "file", default)
    assert replacing == {"max_kl": spaces.Range(0.005, 0.02, log=True), "value_epochs": spaces.Range(5, 9),
                         "gamma": spaces.Range(0.9, 1.0)}
    assert replacing["value_epochs"].integer and not replacing["gamma"].integer  # from the field's type
    path = tmp_path / "space.yaml"
    path.write_text("extends: default\nmax_kl: [0.01, 0.02]\nentropy_coef: null\npolicy_hidden: [[32], [32, 32]]\n")
    extended = spaces.read_space_file(str(path), default)
    assert set(extended) == set(default) - {"entropy_coef"}
    assert extended["max_kl"] == spaces.Choices((0.01, 0.02))
    assert extended["gamma"] == default["gamma"]
    assert spaces.without(extended, {"gamma": 0.9}).keys() == set(extended) - {"gamma"}


def test_sampled_values_stay_in_the_space_and_decode_lists():
    """1,000 random samples: each value within its range (integers for integer fields), every choice drawn,
    a log range's median near the geometric mean of its bounds."""
    space = {"max_kl": spaces.Range(0.001, 0.1, log=True), "value_epochs": spaces.Range(5, 30),
             "policy_hidden": spaces.Choices(([64, 64], [128], "x"))}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    samples = []
    for _ in range(1000):
        trial = study.ask()
        samples.append(spaces.suggest(trial, space))
        study.tell(trial, 0.0)
    kls = np.array([sample["max_kl"] for sample in samples])
    assert kls.min() >= 0.001 and kls.max() <= 0.1
    assert abs(np.log(np.median(kls)) - np.log(math.sqrt(0.001 * 0.1))) < 0.2
    assert {sample["value_epochs"] for sample in samples} == set(range(5, 31))
    assert all(isinstance(sample["value_epochs"], int) for sample in samples)
    widths = [sample["policy_hidden"] for sample in samples]
    assert {json.dumps(width) for width in widths} == {"[64, 64]", "[128]", '"x"'}
    assert spaces.Choices(([64, 64], [128])).suggest(optuna.trial.FixedTrial({"w": "[128]"}), "w") == [128]


@pytest.mark.parametrize("text, message", [
    ("maxkl: [0.01]", "unknown key 'maxkl'"),
    ("gamma: []", "gamma: empty range (no choices)"),
    ("max_kl: {low: 0.05, high: 0.01}", "max_kl: empty range: low 0.05 > high 0.01"),
    ("max_kl: {low: 0, high: 0.01, log: true}", "max_kl: a log range needs low > 0"),
    ("activation: {low: 1, high: 2}", "activation is not a number: give a list of choices"),
    ("value_epochs: {low: 1.5, high: 3}", "value_epochs: low must be an integer"),
    ("max_kl: 0.01", "max_kl: expected a list of choices or {low: …, high: …}"),
    ("max_kl: [-0.01, 0.01]", "max_kl -0.01: TRPOConfig.max_kl must be a number in (0.0, inf)"),
    ("gamma: {low: 0.5, high: 1.5}", "gamma 1.5: TRPOConfig.gamma must be a number in [0.0, 1.0]"),
    ("steps_per_iteration: [512, 1000]\nn_envs: [1, 16]",
     "steps_per_iteration 1000 with n_envs 16: TRPOConfig.steps_per_iteration (1000) must be a multiple of n_envs"),
    ("extends: mine", "'extends' can only be 'default'"),
    ("", "must be a mapping of TRPOConfig fields"),
])
def test_bad_space_files_are_refused_naming_the_key(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as raised:
        _tuning(tmp_path, space=str(path), fixed={})
    assert message in str(raised.value) and str(path) in str(raised.value)
    assert "\n" not in str(raised.value)
    assert not os.path.exists(tmp_path / "study.db")


# --------------------------------------------------------------------------- the objective and the pruner

@pytest.fixture(scope="module")
def by_hand():
    """Seeds 0 and 1 of TINY with max_kl 0.02, trained 256 + 256 steps without any tuning code, each
    evaluated (2 deterministic episodes) after 256 and after 512 steps."""
    config = TRPOConfig.from_dict({**presets.load("CartPole-v1")[0], **TINY, "max_kl": 0.02})
    evaluations = {}
    for seed in (0, 1):
        with TRPO("CartPole-v1", config, seed=seed) as agent:
            for half in (1, 2):
                agent.learn(256)
                evaluations[seed, half] = agent.evaluate(2, seed=evaluation.DEFAULT_SEED)["mean_return"]
    return evaluations


def test_objective_reports_each_evaluation_and_scores_the_mean_over_seeds(tmp_path, by_hand):
    tuning = _tuning(tmp_path, space={"max_kl": [0.02]}, seeds=2)
    study = optuna.create_study(direction="maximize")
    study.optimize(Objective(tuning), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    # seed s, evaluation k (k/2 of the run) is reported at step 2s + k
    assert trial.intermediate_values == {1: by_hand[0, 1], 2: by_hand[0, 2], 3: by_hand[1, 1], 4: by_hand[1, 2]}
    assert trial.user_attrs[SEED_RETURNS_ATTR] == [by_hand[0, 2], by_hand[1, 2]]
    assert trial.value == pytest.approx((by_hand[0, 2] + by_hand[1, 2]) / 2)
    assert TRPOConfig.from_dict(trial.user_attrs[CONFIG_ATTR]).max_kl == 0.02


def test_a_trial_below_the_median_is_pruned_at_its_first_evaluation(tmp_path, by_hand):
    tuning = _tuning(tmp_path, space={"max_kl": [0.02]}, seeds=2)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    distributions = {"max_kl": spaces.Choices((0.02,)).distribution()}
    study.add_trial(optuna.trial.create_trial(value=1e6, params={"max_kl": 0.02}, distributions=distributions,
                                              intermediate_values={step: 1e6 for step in range(1, 5)}))
    study.optimize(Objective(tuning), n_trials=1)
    pruned = study.trials[1]
    assert pruned.state == optuna.trial.TrialState.PRUNED
    assert pruned.intermediate_values == {1: by_hand[0, 1]}  # stopped there: no second evaluation, no seed 1
    assert pruned.value == by_hand[0, 1]


def test_a_trial_created_once_the_study_has_its_trials_is_not_run():
    study = optuna.create_study(direction="maximize")
    calls = []
    objective = studies.guarded(lambda trial: calls.append(trial.number) or 1.0, trials=2)
    study.optimize(objective, n_trials=2, catch=(studies.SurplusTrial,))
    study.enqueue_trial({})  # a waiting trial is claimed too
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))  # a failed one is not
    study.optimize(objective, n_trials=2, catch=(studies.SurplusTrial,))
    assert calls == [0, 1]
    assert [trial.state.name for trial in study.trials] == ["COMPLETE", "COMPLETE", "FAIL", "FAIL", "FAIL"]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")  # study.ask()
def test_starting_a_finished_study_again_leaves_no_dead_trial_running(tmp_path):
    """A process killed after the study had its trials left one RUNNING: the next command fails it (its heartbeat
    stopped) even though it has no trial left to run."""
    tuning = _tuning(tmp_path, heartbeat=1)
    studies.prepare(tuning)
    study = studies.load(tuning)
    for value in (1.0, 2.0):
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=value))
    dead = study.ask()  # a process that claimed a trial and died: one heartbeat, then none
    study._storage.record_heartbeat(dead._trial_id)
    time.sleep(3.5)  # past the grace period (two heartbeats; SQLite counts whole seconds)
    studies.work(tuning)
    states = {trial.number: trial.state.name for trial in studies.load(tuning).trials}
    assert states[dead.number] == "FAIL"
    assert "RUNNING" not in states.values()


# --------------------------------------------------------------------------- results

def test_results_with_one_complete_trial_skip_the_importances(tmp_path):
    tuning = _tuning(tmp_path, space={"max_kl": {"low": 0.01, "high": 0.03}})
    studies.prepare(tuning)
    study = studies.load(tuning)
    config = tuning.config({"max_kl": 0.015}).to_dict()
    distribution = tuning.space["max_kl"].distribution()
    study.add_trial(optuna.trial.create_trial(value=42.5, params={"max_kl": 0.015}, user_attrs={CONFIG_ATTR: config},
                                              distributions={"max_kl": distribution}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, value=7.0, params={"max_kl": 0.02},
                                              distributions={"max_kl": distribution}, intermediate_values={1: 7.0}))
    style = dict(matplotlib.rcParams)
    result = write_results(study, tuning)
    assert dict(matplotlib.rcParams) == style  # Optuna's plots switch to ggplot; the caller's style comes back
    assert result.best_trial == 0 and result.best_value == 42.5 and result.finished == 2
    assert result.summary() == (f"best value 42.50 in trial 0 (2 of 2 trials finished: 1 complete, 1 pruned): "
                                f"{tmp_path}/best.yaml")
    assert result.notes == ["param_importances.png not drawn: parameter importances need 2 complete trials, "
                            "the study has 1"]
    assert not os.path.exists(tmp_path / "param_importances.png")
    with open(tmp_path / "optimization_history.png", "rb") as handle:
        assert handle.read(8) == PNG_SIGNATURE
    with open(tmp_path / "best.yaml") as handle:
        best = yaml.safe_load(handle)
    assert best == {"timesteps": 512, **config}
    with open(tmp_path / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["number"], row["state"], row["value"], row["max_kl"]) for row in rows] == \
        [("0", "COMPLETE", "42.5", "0.015"), ("1", "PRUNED", "7.0", "0.02")]


# --------------------------------------------------------------------------- bad input: one line, exit 2, nothing changed

def _tune_cli(capsys, *arguments: str) -> tuple[int, list[str]]:
    status = cli.main(["tune", *arguments])
    return status, capsys.readouterr().err.splitlines()


@pytest.fixture
def pendulum_study(tmp_path):
    """A prepared (trial-less) Pendulum-v1 study with 512-step trials in tmp_path/study.db."""
    studies.prepare(_tuning(tmp_path, env_id="Pendulum-v1"))
    return str(tmp_path / "study.db")


@pytest.mark.parametrize("arguments, message", [
    (["CartPol-v1"], "unknown environment id 'CartPol-v1'; did you mean CartPole-v1"),
    (["CartPole-v1", "--storage", "sqlite:////no/such/directory/study.db"],
     "cannot open storage sqlite:////no/such/directory/study.db: OperationalError: unable to open database file"),
    (["CartPole-v1", "--storage", "postgresql://me:secret@127.0.0.1:1/db"], "cannot open storage postgresql://me:***@"),
    (["CartPole-v1", "--storage", "nosuch://x"], "cannot open storage nosuch://x: NoSuchModuleError"),
    (["CartPole-v1", "--set", "max_kl=-1"], "TRPOConfig.max_kl must be a number in (0.0, inf), got -1"),
    (["CartPole-v1", "--set", "n_envs=3"], "TRPOConfig.steps_per_iteration (512) must be a multiple of n_envs (3)"),
    (["CartPole-v1", "--set", "maxkl=0.1"], "unknown TRPOConfig field maxkl (did you mean max_kl?)"),
])
def test_bad_input_is_one_line_and_creates_nothing(tmp_path, capsys, arguments, message):
    out = tmp_path / "out"
    status, errors = _tune_cli(capsys, *arguments, "--trials", "2", "--timesteps", "512", "--out", str(out))
    assert status == 2 and len(errors) == 1 and errors[0].startswith("trpo-tf: error: ")
    assert message in errors[0]
    assert "secret" not in errors[0]
    assert not out.exists()


@pytest.mark.parametrize("arguments, message", [
    (["CartPole-v1", "--study", "Pendulum-v1"], "tunes Pendulum-v1, not CartPole-v1; choose another --study"),
    (["Pendulum-v1", "--timesteps", "1024"], "this command has timesteps 1024 (the study's: 512)"),
    (["Pendulum-v1", "--seeds", "2"], "seeds 2 (the study's: 1)"),
    (["Pendulum-v1", "--set", "value_epochs=3"], "fixed {"),
])
def test_a_study_that_measures_something_else_is_left_alone(tmp_path, capsys, pendulum_study, arguments, message):
    before = _digest(pendulum_study)
    status, errors = _tune_cli(capsys, "--trials", "2", "--timesteps", "512", "--storage", f"sqlite:///{pendulum_study}",
                               "--out", str(tmp_path / "out"), "--evaluations", "2", "--eval-episodes", "2", *TINY_SET,
                               *arguments)  # the case's arguments last: they win
    assert status == 2 and len(errors) == 1 and message in errors[0], errors
    assert _digest(pendulum_study) == before


def test_a_space_that_cannot_share_the_study_is_refused_naming_the_key(tmp_path):
    tuning = _tuning(tmp_path, space={"max_kl": {"low": 0.01, "high": 0.03}})
    studies.prepare(tuning)
    study = studies.load(tuning)
    study.add_trial(optuna.trial.create_trial(value=1.0, params={"max_kl": 0.02},
                                              distributions={"max_kl": tuning.space["max_kl"].distribution()}))
    before = _digest(str(tmp_path / "study.db"))
    studies.prepare(_tuning(tmp_path, space={"max_kl": {"low": 0.005, "high": 0.05}}))  # a wider range: fine
    with pytest.raises(ConfigError, match=r"search space: max_kl \(0.01 / 0.02\) does not fit the study's trials"):
        studies.prepare(_tuning(tmp_path, space={"max_kl": [0.01, 0.02]}))
    assert _digest(str(tmp_path / "study.db")) == before


def test_importing_trpo_tf_imports_neither_optuna_nor_tensorflow():
    """Nor does the tuning code a --jobs parent runs (it waits and writes results: the trials import TensorFlow),
    and importing it does not hide the function trpo_tf.tune behind a module."""
    code = ("import sys, trpo_tf; tune = trpo_tf.tune; "
            "print(sorted(m for m in ('optuna', 'tensorflow', 'sqlalchemy') if m in sys.modules)); "
            "import trpo_tf.tuning.study, trpo_tf.tuning.results; "
            "assert trpo_tf.tune is tune and tune.__module__ == 'trpo_tf.tuning', trpo_tf.tune; "
            "print('tensorflow' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert output.returncode == 0, output.stderr
    assert output.stdout.split() == ["[]", "False"]


# --------------------------------------------------------------------------- kill -9, then two commands at once

@pytest.fixture(scope="module")
def shared_study(tmp_path_factory):
    """``trpo-tf tune CartPole-v1 --trials 4`` killed with SIGKILL inside its second trial, then the same command
    twice at once on the same SQLite storage, one of them with --jobs 2. Returns the directory, the database,
    the number of the killed trial and the two commands' outputs."""
    directory = tmp_path_factory.mktemp("tune")
    database = str(directory / "study.db")
    (directory / "space.yaml").write_text("max_kl: {low: 0.005, high: 0.05, log: true}\n")
    command = [os.path.join(os.path.dirname(sys.executable), "trpo-tf"), "tune", "CartPole-v1", "--trials", "4",
               "--timesteps", "1024", "--space", "space.yaml", "--out", "out", "--storage", f"sqlite:///{database}",
               "--heartbeat", "2", "--evaluations", "2", "--eval-episodes", "2", *TINY_SET]
    environment = dict(os.environ, PYTHONPATH=REPO, TRPO_TF_XLA_CACHE=str(directory / "xla"))
    first = subprocess.Popen(command, cwd=directory, env=environment, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    kill_9_when(first, lambda: {"COMPLETE", "RUNNING"} <= set(_states_or_none(database).values()), delay=1.0,
                timeout=300, never="no second trial started")  # the kill lands inside the second trial's training
    killed_states = _trial_states(database)
    (killed,) = [number for number, state in killed_states.items() if state == "RUNNING"]
    both = [subprocess.Popen(command + extra, cwd=directory, env=environment, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for extra in (["--jobs", "2"], [])]
    outputs = [process.communicate(timeout=600) for process in both]
    return {"directory": directory, "database": database, "killed": killed, "killed_states": killed_states,
            "statuses": [process.returncode for process in both], "outputs": outputs}


def _states_or_none(database: str) -> dict[int, str]:
    if not os.path.exists(database):  # sqlite3.connect would create it
        return {}
    try:
        return _trial_states(database)
    except sqlite3.OperationalError:  # no tables yet
        return {}


def test_kill_9_leaves_no_trial_running_and_none_counted_twice(shared_study):
    database, killed = shared_study["database"], shared_study["killed"]
    assert shared_study["statuses"] == [0, 0], shared_study["outputs"]
    assert shared_study["killed_states"][killed] == "RUNNING"
    states = _trial_states(database)
    assert states[killed] == "FAIL"
    assert sum(state in ("COMPLETE", "PRUNED") for state in states.values()) == 4
    assert not [state for state in states.values() if state in ("RUNNING", "WAITING")]
    # the killed trial ran again once, as a new trial with its parameters
    retries = _rows(database, "SELECT t.number FROM trials t JOIN trial_system_attributes a USING (trial_id) "
                              "WHERE a.key = 'failed_trial' AND a.value_json = ?", json.dumps(killed))
    assert len(retries) == 1
    params = "SELECT p.param_name, p.param_value FROM trials t JOIN trial_params p USING (trial_id) WHERE t.number = ?"
    assert _rows(database, params, retries[0][0]) == _rows(database, params, killed)
    assert states[retries[0][0]] in ("COMPLETE", "PRUNED")
    # every other failed trial is one a racing process created after the study had its trials (not run)
    for number, state in states.items():
        if state == "FAIL" and number != killed:
            assert not _rows(database, "SELECT 1 FROM trials t JOIN trial_values v USING (trial_id) "
                                       "WHERE t.number = ?", number)


def test_two_commands_share_the_study_and_agree_on_the_best(shared_study):
    database = shared_study["database"]
    workers = _rows(database, "SELECT a.value_json FROM trials t JOIN trial_user_attributes a USING (trial_id) "
                              "WHERE a.key = 'worker' AND t.state IN ('COMPLETE', 'PRUNED') AND t.number > ?",
                    shared_study["killed"])
    assert len({worker for (worker,) in workers}) >= 2  # the trials after the kill ran in several processes
    values = _rows(database, "SELECT t.number, v.value FROM trials t JOIN trial_values v USING (trial_id) "
                             "WHERE t.state = 'COMPLETE'")
    best_number, best_value = max(values, key=lambda row: row[1])
    best_file = os.path.join("out", "best.yaml")
    for stdout, _ in shared_study["outputs"]:
        assert stdout.splitlines()[-1].startswith(f"best value {best_value:.2f} in trial {best_number} (4 of 4 "
                                                  f"trials finished: ")
        assert stdout.splitlines()[-1].endswith(f"): {best_file}")


def test_out_holds_a_best_yaml_that_train_uses_a_csv_of_all_trials_and_plots(shared_study, monkeypatch):
    directory, database = shared_study["directory"], shared_study["database"]
    monkeypatch.chdir(directory)
    values = _rows(database, "SELECT t.number, v.value FROM trials t JOIN trial_values v USING (trial_id) "
                             "WHERE t.state = 'COMPLETE'")
    best_number = max(values, key=lambda row: row[1])[0]
    (recorded,) = _rows(database, "SELECT a.value_json FROM trials t JOIN trial_user_attributes a USING (trial_id) "
                                  "WHERE a.key = 'config' AND t.number = ?", best_number)
    arguments = cli.build_parser().parse_args(["train", "CartPole-v1", "--config", "out/best.yaml"])
    config, timesteps, _ = cli._resolve_config(arguments)  # what `trpo-tf train` trains with
    assert config == TRPOConfig.from_dict(json.loads(recorded[0])) and timesteps == 1024
    with open("out/trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    stored = dict(_rows(database, "SELECT t.number, v.value FROM trials t LEFT JOIN trial_values v USING (trial_id)"))
    assert {int(row["number"]): row["state"] for row in rows} == _trial_states(database)
    assert {int(row["number"]): (float(row["value"]) if row["value"] else None) for row in rows} == stored
    for plot in ("optimization_history.png", "param_importances.png"):
        with open(os.path.join("out", plot), "rb") as handle:
            assert handle.read(8) == PNG_SIGNATURE
    # the same command again: the study has its trials, so none runs; the results are written again
    before = _trial_states(database)
    os.remove("out/best.yaml")
    assert cli.main(["tune", "CartPole-v1", "--trials", "4", "--timesteps", "1024", "--space", "space.yaml",
                     "--out", "out", "--storage", f"sqlite:///{database}", "--heartbeat", "2", "--evaluations", "2",
                     "--eval-episodes", "2", *TINY_SET]) == 0
    assert _trial_states(database) == before and os.path.isfile("out/best.yaml")
