"""Training callbacks: periodic evaluation keeping the best policy, early stops, CSV columns that appear later."""

from __future__ import annotations

import json
import math
import os
import types

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
import tqdm

from trpo_tf import TRPO, TRPOConfig, checkpoint, cli, monitor
from trpo_tf.callbacks import EvalCallback, StopOnNoImprovement, StopOnReward
from trpo_tf.errors import CallbackError, InputError, RunDirError, SpaceMismatchError, UnknownEnvironmentError
from trpo_tf.evaluation import run_episodes
from trpo_tf.export import read_metadata
from trpo_tf.monitor import Callbacks, CSVLogger

TINY = TRPOConfig(steps_per_iteration=64, policy_hidden=(16,), value_hidden=(16,), value_epochs=2)
EVAL_KEYS = ("eval_return_mean", "eval_return_std")
PENDULUM_ITERATIONS, PENDULUM_SEED, EVAL_SEED = 8, 3, 7


def training_part(history):
    """History entries without the evaluation keys and the wall-clock ones (fps, *_seconds)."""
    return [{k: v for k, v in entry.items() if k not in EVAL_KEYS and k != "fps" and not k.endswith("_seconds")}
            for entry in history]


class IndependentEvaluation:
    """A learn callback (placed after EvalCallback) that evaluates the policy of each evaluated iteration
    itself: a fresh gym.make environment, the compiled TensorFlow action (``agent.predict``, not the
    NumPy snapshot EvalCallback acts with), episode i reset with ``seed + i``."""

    def __init__(self, agent, env_id, episodes, seed):
        self.agent, self.env_id, self.episodes, self.seed = agent, env_id, episodes, seed
        self.results: dict[int, list[float]] = {}

    def __call__(self, entry):
        if "eval_return_mean" in entry:
            env = gym.make(self.env_id)
            self.results[entry["iteration"]] = run_episodes(env, self.agent.predict, self.episodes,
                                                            self.seed)["returns"]
            env.close()


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory):
    """One Pendulum agent and a checkpoint of it before training, to rewind to between runs: XLA then
    compiles its policy update once for the whole module (~20 s a compile on 2 busy cores)."""
    start = str(tmp_path_factory.mktemp("start"))
    agent = TRPO("Pendulum-v1", TINY, seed=PENDULUM_SEED)
    checkpoint.save(agent, start)
    yield agent, start
    agent.close()


def train_from_start(pendulum, callback=None):
    """Rewind the agent to its untrained checkpoint, train PENDULUM_ITERATIONS (or until stopped); its history."""
    agent, start = pendulum
    checkpoint.restore(agent, start)
    assert agent.timesteps == 0 and agent.history == []
    agent.learn(PENDULUM_ITERATIONS * 64, callback=callback)
    return list(agent.history)


@pytest.fixture(scope="module")
def reference(pendulum, tmp_path_factory):
    """Pendulum evaluated after each iteration, keeping the best in best_dir and export_best, with an
    independent evaluation alongside."""
    root = tmp_path_factory.mktemp("reference")
    agent = pendulum[0]
    evaluation = EvalCallback(agent, "Pendulum-v1", every=1, episodes=2, seed=EVAL_SEED,
                              best_dir=str(root / "best"), export_best=str(root / "exported"))
    independent = IndependentEvaluation(agent, "Pendulum-v1", episodes=2, seed=EVAL_SEED)
    callbacks = Callbacks([evaluation, independent])
    history = train_from_start(pendulum, callbacks)
    callbacks.close()
    return types.SimpleNamespace(history=history, evaluation=evaluation, independent=independent,
                                 values=means(evaluation), best_dir=str(root / "best"),
                                 exported=str(root / "exported"))


def means(evaluation):
    return [record["mean_return"] for record in evaluation.evaluations]


# --------------------------------------------------------------------------- EvalCallback

def test_evaluations_match_an_independent_evaluation_and_land_in_the_history(reference):
    evaluations = reference.evaluation.evaluations
    assert [r["iteration"] for r in evaluations] == list(range(1, PENDULUM_ITERATIONS + 1))
    assert [r["timesteps"] for r in evaluations] == [64 * i for i in range(1, PENDULUM_ITERATIONS + 1)]
    for record, entry in zip(evaluations, reference.history):
        returns = reference.independent.results[record["iteration"]]
        assert record["returns"] == pytest.approx(returns, rel=1e-6)  # TF float32 graph vs NumPy snapshot
        mean = sum(record["returns"]) / len(returns)
        std = math.sqrt(sum((r - mean) ** 2 for r in record["returns"]) / len(returns))
        assert (record["mean_return"], record["std_return"]) == pytest.approx((mean, std), rel=1e-12)
        assert (entry["eval_return_mean"], entry["eval_return_std"]) == (record["mean_return"], record["std_return"])


def test_evaluations_run_every_n_iterations_only(pendulum):
    evaluation = EvalCallback(pendulum[0], "Pendulum-v1", every=3, episodes=1)
    entries = [{"iteration": i, "timesteps": 64 * i} for i in range(1, 8)]
    answers = [evaluation(entry) for entry in entries]
    evaluation.close()
    assert [entry["iteration"] for entry in entries if "eval_return_mean" in entry] == [3, 6]
    assert answers == [None, None, True, None, None, True, None]
    assert [record["iteration"] for record in evaluation.evaluations] == [3, 6]


def test_training_history_is_the_same_with_and_without_evaluations(pendulum, reference):
    plain = train_from_start(pendulum)
    assert len(plain) == len(reference.history) == PENDULUM_ITERATIONS
    assert training_part(plain) == training_part(reference.history)
    assert not any(key in entry for entry in plain for key in EVAL_KEYS)


def test_best_dir_holds_the_best_policy_and_the_cli_uses_it(reference, capsys, tmp_path):
    best = max(reference.evaluation.evaluations, key=lambda record: record["mean_return"])
    assert reference.evaluation.best == best
    assert checkpoint.latest(reference.best_dir).endswith(f"ckpt-{best['iteration']}")
    with open(os.path.join(reference.best_dir, "run.json"), encoding="utf-8") as handle:
        assert json.load(handle)["best_evaluation"] == best
    reloaded = TRPO.load(reference.best_dir)
    assert reloaded.timesteps == best["timesteps"]
    assert reloaded.evaluate(episodes=2, seed=EVAL_SEED)["mean_return"] == pytest.approx(best["mean_return"],
                                                                                          rel=1e-12)
    reloaded.close()
    assert cli.main(["evaluate", reference.best_dir, "--episodes", "2", "--seed", str(EVAL_SEED), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mean_return"] == pytest.approx(best["mean_return"], rel=1e-12)
    assert cli.main(["export", reference.best_dir, str(tmp_path / "cli-export"), "--eval-episodes", "1"]) == 0
    assert read_metadata(str(tmp_path / "cli-export"))["timesteps"] == best["timesteps"]


def test_export_best_writes_a_version_per_new_best_the_last_one_the_best(reference):
    values = reference.values
    new_bests = [record for i, record in enumerate(reference.evaluation.evaluations)
                 if record["mean_return"] > max(values[:i], default=-math.inf)]
    assert sorted(os.listdir(reference.exported)) == [str(v) for v in range(1, len(new_bests) + 1)]
    for version, record in enumerate(new_bests, start=1):
        metadata = read_metadata(os.path.join(reference.exported, str(version)))
        assert metadata["timesteps"] == record["timesteps"]
        # the export's own graph against the NumPy copy the callback evaluates: float32 rounding apart
        assert metadata["evaluation"]["mean_return"] == pytest.approx(record["mean_return"], rel=1e-5)
    # The last version, served through its signature with TensorFlow alone, scores the best return.
    saved = tf.saved_model.load(os.path.join(reference.exported, str(len(new_bests))))
    serve = saved.signatures["serving_default"]
    env = gym.make("Pendulum-v1")
    served = run_episodes(env, lambda obs: serve(observation=tf.constant(obs, tf.float32))["action"].numpy(), 2,
                          EVAL_SEED)
    env.close()
    assert served["mean_return"] == pytest.approx(max(values), rel=1e-6)


def test_a_resumed_run_continues_from_the_best_recorded_in_best_dir(pendulum, reference):
    agent, start = pendulum
    best = max(reference.evaluation.evaluations, key=lambda record: record["mean_return"])
    checkpoint.restore(agent, reference.best_dir)  # the run resumed at its best iteration
    continued = EvalCallback(agent, "Pendulum-v1", every=1, episodes=2, seed=EVAL_SEED, best_dir=reference.best_dir)
    assert continued.best == best
    continued.close()
    checkpoint.restore(agent, start)  # the same run started again: not its continuation
    with pytest.raises(CallbackError, match=rf"best policy of iteration {best['iteration']}, later than this "
                                            r"agent's iteration 0"):
        EvalCallback(agent, "Pendulum-v1", best_dir=reference.best_dir)
    other_seed = TRPO("Pendulum-v1", TINY, seed=PENDULUM_SEED + 1)
    with pytest.raises(RunDirError, match="holds another run: seed"):
        EvalCallback(other_seed, "Pendulum-v1", best_dir=reference.best_dir)
    other_seed.close()


# --------------------------------------------------------------------------- stopping

def first_reaching(values, threshold):
    """Index of the first value ≥ threshold (None if none)."""
    return next((i for i, value in enumerate(values) if value >= threshold), None)


def first_stale_window(values, patience, min_evaluations=0):
    """Index i of the first value closing ``patience`` values in a row none of which beats the maximum before
    them (NaN values dropped first); None if there is none. Returns an index into ``values``."""
    kept = [i for i, value in enumerate(values) if not math.isnan(value)]
    finite = [values[i] for i in kept]
    for end in range(patience, len(finite)):
        window, before = finite[end - patience + 1: end + 1], finite[: end - patience + 1]
        if max(window) <= max(before) and end + 1 >= min_evaluations:
            return kept[end]
    return None


@pytest.mark.parametrize("values, threshold", [([-5.0, -3.0, -4.0, -1.0, 0.5], -1.0), ([1.0, 2.0], 3.0),
                                               ([math.nan, 2.0, 7.0], 2.0), ([4.0], 4.0)])
def test_stop_on_reward_stops_at_the_first_value_reaching_the_threshold(values, threshold):
    stop = StopOnReward(threshold, key="episode_return_mean")
    answers = []
    for i, value in enumerate(values):
        answers.append(stop({"iteration": i + 1, "episode_return_mean": value}))
        if answers[-1] is False:
            break
    expected = first_reaching(values, threshold)
    assert (len(answers) - 1 if answers[-1] is False else None) == expected
    assert stop.stopped_at == (None if expected is None else expected + 1)


@pytest.mark.parametrize("values, patience, min_evaluations", [
    ([1.0, 3.0, 2.0, 3.0, 2.5, 4.0, 1.0, 1.0, 0.0], 2, 0),   # a tie is no improvement
    ([1.0, 3.0, 2.0, 3.0, 2.5, 4.0, 1.0, 1.0, 0.0], 3, 0),
    ([5.0, 4.0, 3.0, 2.0], 1, 0),
    ([5.0, 4.0, 3.0, 2.0, 1.0], 1, 4),
    ([math.nan, math.nan, 1.0, math.nan, 0.5, 2.0, 1.0, math.nan, 1.5], 2, 0),   # NaN is skipped, not counted
    ([1.0, 2.0, 3.0, 4.0], 1, 0),
])
def test_stop_on_no_improvement_stops_after_patience_values_without_a_new_best(values, patience, min_evaluations):
    stop = StopOnNoImprovement(patience, min_evaluations=min_evaluations, key="episode_return_mean")
    answers = []
    for i, value in enumerate(values):
        answers.append(stop({"iteration": i + 1, "episode_return_mean": value}))
        if answers[-1] is False:
            break
    expected = first_stale_window(values, patience, min_evaluations)
    assert (len(answers) - 1 if answers[-1] is False else None) == expected
    assert stop.stopped_at == (None if expected is None else expected + 1)


def test_training_stops_at_the_evaluation_that_reaches_the_threshold(pendulum, reference):
    values = reference.values
    # The first evaluation after the first that beats every earlier one: reaching its value stops there.
    index = next(i for i in range(1, len(values)) if values[i] > max(values[:i]))
    assert first_reaching(values, values[index]) == index
    stop = StopOnReward(values[index])
    evaluation = EvalCallback(pendulum[0], "Pendulum-v1", every=1, episodes=2, seed=EVAL_SEED, callbacks=[stop])
    history = train_from_start(pendulum, evaluation)
    evaluation.close()
    assert len(history) == index + 1 == stop.stopped_at
    assert means(evaluation) == values[: index + 1]


def test_training_stops_after_patience_evaluations_without_improvement(pendulum, reference):
    values = reference.values
    index = first_stale_window(values, patience=2)
    assert index is not None and index < len(values) - 1, f"the reference run never stalls twice: {values}"
    stop = StopOnNoImprovement(patience=2)
    evaluation = EvalCallback(pendulum[0], "Pendulum-v1", every=1, episodes=2, seed=EVAL_SEED, callbacks=[stop])
    history = train_from_start(pendulum, evaluation)
    evaluation.close()
    assert len(history) == index + 1 == stop.stopped_at
    assert means(evaluation) == values[: index + 1]


# --------------------------------------------------------------------------- logging the new keys

def test_csv_logger_adds_columns_for_keys_that_appear_later(tmp_path):
    path = str(tmp_path / "progress.csv")
    entries = [{"iteration": 1, "kl": 0.5}, {"iteration": 2, "kl": 0.25, "eval_return_mean": -3.5},
               {"iteration": 3, "kl": 0.125}, {"iteration": 4, "kl": 0.0625, "eval_return_mean": -1.5, "extra": 7}]
    logger = CSVLogger(path)
    for entry in entries:
        logger(entry)
    logger.close()
    with open(path, newline="", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines == ["iteration,kl,eval_return_mean,extra", "1,0.5,,", "2,0.25,-3.5,", "3,0.125,,",
                     "4,0.0625,-1.5,7"]
    # Resuming writes the history first: its header covers keys of every entry, not only the first.
    logger = CSVLogger(path, entries[:2])
    logger({"iteration": 3, "kl": 0.125})
    logger.close()
    with open(path, newline="", encoding="utf-8") as handle:
        assert handle.read().splitlines() == ["iteration,kl,eval_return_mean", "1,0.5,", "2,0.25,-3.5", "3,0.125,"]


# --------------------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def cartpole_agent():
    agent = TRPO("CartPole-v1", TINY, seed=0)
    yield agent
    agent.close()


@pytest.mark.parametrize("make, error, message", [
    (lambda a, d: EvalCallback(a, "CartPole-v1", every=0), CallbackError, "every must be an integer ≥ 1, got 0"),
    (lambda a, d: EvalCallback(a, "CartPole-v1", every=2.5), CallbackError, "every must be an integer"),
    (lambda a, d: EvalCallback(a, "CartPole-v1", episodes=0), CallbackError, "episodes must be an integer ≥ 1"),
    (lambda a, d: EvalCallback(a, "CartPole-v1", seed=-1), CallbackError, "seed must be an integer ≥ 0"),
    (lambda a, d: EvalCallback(a, "CartPol-v1"), UnknownEnvironmentError, "CartPol-v1"),
    (lambda a, d: EvalCallback(a, "Acrobot-v1"), SpaceMismatchError, "observation_space"),
    (lambda a, d: EvalCallback(a, gym.make_vec("CartPole-v1", 2)), CallbackError, "one gymnasium Env"),
    (lambda a, d: EvalCallback(a, a.vector_env.envs[0]), CallbackError, "one of the training environments"),
    (lambda a, d: EvalCallback(a, "CartPole-v1", best_dir=d["file"]), CallbackError, "is not a directory"),
    (lambda a, d: EvalCallback(a, "CartPole-v1", export_best=d["file"]), CallbackError, "is not a directory"),
    (lambda a, d: EvalCallback(a, "CartPole-v1", best_dir=d["run"]), CallbackError, "a training run directory"),
    (lambda a, d: StopOnReward(math.nan), CallbackError, "threshold must be a finite number"),
    (lambda a, d: StopOnReward("high"), CallbackError, "threshold must be a finite number"),
    (lambda a, d: StopOnNoImprovement(0), CallbackError, "patience must be an integer ≥ 1"),
    (lambda a, d: StopOnNoImprovement(3, min_evaluations=-1), CallbackError, "min_evaluations must be"),
    (lambda a, d: StopOnReward(1.0)({"iteration": 4, "episode_return_mean": 3.0}), CallbackError,
     "StopOnReward reads 'eval_return_mean' but the entry of iteration 4 has none"),
    (lambda a, d: StopOnNoImprovement(2, key="kl")({"iteration": 1, "kl": "high"}), CallbackError, "not a number"),
])
def test_bad_arguments_raise_one_line_input_errors(cartpole_agent, tmp_path, make, error, message):
    (tmp_path / "file").write_text("not a directory")
    run_dir = str(tmp_path / "run")
    checkpoint.write_run(run_dir, cartpole_agent)
    with pytest.raises(error) as raised:
        make(cartpole_agent, {"file": str(tmp_path / "file"), "run": run_dir})
    assert isinstance(raised.value, InputError)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_an_env_instance_is_evaluated_and_left_open(cartpole_agent):
    env = gym.make("CartPole-v1")
    evaluation = EvalCallback(cartpole_agent, env, every=1, episodes=2, seed=EVAL_SEED)
    entry = {"iteration": 1, "timesteps": 64}
    assert evaluation(entry) is True
    expected = cartpole_agent.evaluate(episodes=2, seed=EVAL_SEED)  # on an environment of its own
    assert entry["eval_return_mean"] == expected["mean_return"]
    evaluation.close()
    env.reset(seed=0)  # still usable: the caller owns it
    env.close()
    assert np.isfinite(entry["eval_return_std"])


def test_the_progress_bars_time_left_leaves_out_the_first_iterations_compilation(monkeypatch):
    """A first iteration of 100 s (compiling), then 100 steps a second: the 700 steps left take 7 s."""
    clock = [0.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])  # the clock a bar reads (as self._time)
    bar = monitor.ProgressBar(total=1000)
    try:
        for iteration, seconds in enumerate([100.0, 1.0, 1.0], start=1):
            clock[0] += seconds
            bar({"timesteps": 100 * iteration, "iteration": iteration, "episode_return_mean": 0.0})
            shown = bar.bar.format_dict
            if iteration == 1:  # no speed yet: tqdm shows "?" left
                assert shown["n"] == 100 and not shown["rate"] and "?" in str(bar.bar)
        assert (shown["total"] - shown["n"]) / shown["rate"] == pytest.approx(7.0, rel=1e-6)
    finally:
        bar.close()
    assert "300/1.00k [01:42" in str(bar.bar) and "2.94step/s" in str(bar.bar)  # the whole run: 300 steps, 102 s
