"""Run directories under fault: damaged checkpoints, two trainings at once, crafted pickles.

Every damaged run either resumes from its newest intact checkpoint (with a warning naming
what was skipped) or is refused with one line naming the problem, leaving every file as it
was. Most cases run in this process (``cli.main``, ``TRPO.load``); a few go through the
installed command in a subprocess, as a user would.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import hmac
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tensorflow as tf

from trpo_tf import TRPO, EvalCallback, TRPOConfig, checkpoint, cli, files, rundir, signing
from trpo_tf.errors import RunDirError, RunDirInUseError, RunKeyError, UntrustedModuleError, UntrustedRunError

from killing import kill_9_after_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 64  # per iteration
TRAIN = ["train", "CartPole-v1", "--no-preset", "--set", f"steps_per_iteration={STEPS}", "--set", "value_epochs=1",
         "--checkpoint-every", "1", "--quiet"]
RESUME = ["train", "CartPole-v1", "--resume", "--checkpoint-every", "1", "--quiet"]  # with the recorded config
STATE_KEY = "state/.ATTRIBUTES/py_state"
ENVIRONMENT_KEY = "environment/.ATTRIBUTES/py_state"


# --------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-iteration CartPole run checkpointed every iteration: ckpt-2, ckpt-3 and ckpt-4 are kept."""
    run = tmp_path_factory.mktemp("base") / "run"
    assert cli.main(TRAIN + ["--timesteps", str(4 * STEPS), "--logdir", str(run)]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.suffix == ".index") == \
        ["ckpt-2.index", "ckpt-3.index", "ckpt-4.index"]
    return run


@pytest.fixture
def run(base_run: Path, tmp_path: Path) -> Path:
    """A fresh copy of :func:`base_run` for one test to damage."""
    return Path(shutil.copytree(base_run, tmp_path / "run"))


def tree(directory: Path) -> dict[str, str]:
    """Every file and folder under ``directory``: relative path → SHA-256 of its bytes ("dir" for folders)."""
    entries = {}
    for root, folders, files in os.walk(directory):
        for name in folders:
            entries[os.path.relpath(os.path.join(root, name), directory)] = "dir"
        for name in files:
            path = os.path.join(root, name)
            entries[os.path.relpath(path, directory)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return entries


def ours(stderr: str) -> list[str]:
    """The lines trpo-tf itself wrote to stderr (TensorFlow's own log lines aside)."""
    return [line for line in stderr.splitlines() if line.startswith("trpo-tf")]


def progress_iterations(run: Path) -> list[int]:
    with open(run / "progress.csv", newline="") as handle:
        return [int(row["iteration"]) for row in csv.DictReader(handle)]


def stored(run: Path, number: int) -> tuple[bytes, bytes]:
    """(JSON state, environment bytes) of ckpt-<number>, read with TensorFlow's reader alone."""
    reader = tf.train.load_checkpoint(str(run / "checkpoints" / f"ckpt-{number}"))
    return reader.get_tensor(STATE_KEY), reader.get_tensor(ENVIRONMENT_KEY)


class _Bytes(tf.train.experimental.PythonState):
    """Fixed bytes in a checkpoint, standing for the agent state or the environment state."""

    def __init__(self, data: bytes):
        self.data = data

    def serialize(self) -> bytes:
        return self.data

    def deserialize(self, string_value: bytes) -> None:
        pass


def rewrite(run: Path, number: int, state: bytes | None, environment: bytes) -> None:
    """Write ckpt-<number> anew with the run's weights and the given state (None: no state at all)."""
    with TRPO.load(str(run)) as agent:
        parts = {"state": _Bytes(state)} if state is not None else {}
        written = tf.train.Checkpoint(**agent.trackables(), **parts, environment=_Bytes(environment))
        written.save_counter.assign(number)  # created on first use; CheckpointManager's saves hold it
        written.write(str(run / "checkpoints" / f"ckpt-{number}"))


def edit_state(run: Path, number: int, change: Callable[[dict], object]) -> None:
    """Rewrite ckpt-<number> with ``change(its JSON state document)`` as its state."""
    state, environment = stored(run, number)
    document = json.loads(state)
    rewrite(run, number, json.dumps(change(document)).encode(), environment)


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def garble(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def half_written_ckpt_5(run: Path) -> None:
    """Files of ckpt-5 cut short, as a kill during its save could leave them; ckpt-4 stays current."""
    for kind in ("index", "data"):
        ckpt(run, 5, kind).write_bytes(ckpt(run, 4, kind).read_bytes()[:100])


def ckpt(run: Path, number: int, kind: str) -> Path:
    suffix = "index" if kind == "index" else "data-00000-of-00001"
    return run / "checkpoints" / f"ckpt-{number}.{suffix}"


def state_file(run: Path) -> Path:
    return run / "checkpoints" / "checkpoint"


# --------------------------------------------------------------------------- damaged runs that resume

RESUMABLE: dict[str, tuple[Callable[[Path], None], int, str | None]] = {
    # id: (damage, iteration resumed from, what the warning names; None: no warning)
    "index truncated": (lambda r: cut(ckpt(r, 4, "index")), 3, "ckpt-4 cannot be restored: its files are damaged"),
    "index garbage": (lambda r: garble(ckpt(r, 4, "index")), 3, "ckpt-4 cannot be restored: its files are damaged"),
    "index empty": (lambda r: cut(ckpt(r, 4, "index"), 0), 3, "ckpt-4 cannot be restored: its files are damaged"),
    "index missing": (lambda r: ckpt(r, 4, "index").unlink(), 3, "ckpt-4 cannot be restored: its files are damaged"),
    "data truncated": (lambda r: cut(ckpt(r, 4, "data")), 3, "ckpt-4 cannot be restored: its files are damaged"),
    "data byte flipped": (lambda r: flip_byte(ckpt(r, 4, "data")), 3, "ckpt-4 cannot be restored: its files"),
    "data missing": (lambda r: ckpt(r, 4, "data").unlink(), 3, "ckpt-4 cannot be restored: its files are damaged"),
    "state not JSON": (lambda r: rewrite(r, 4, b"{not json", stored(r, 4)[1]), 3,
                       "ckpt-4 cannot be restored: its agent state is unreadable"),
    "state not an object": (lambda r: edit_state(r, 4, lambda d: [d]), 3,
                            "ckpt-4 cannot be restored: its agent state is unreadable"),
    "state of another format": (lambda r: edit_state(r, 4, lambda d: {**d, "format": 2}), 3,
                                "its agent state is unreadable (state format 2"),
    "state of another iteration": (lambda r: edit_state(r, 4, lambda d: {**d, "agent": {**d["agent"], "iteration": 9}}),
                                   3, "ckpt-4 cannot be restored: it is inconsistent (it holds iteration 9)"),
    "state missing": (lambda r: rewrite(r, 4, None, stored(r, 4)[1]), 3,
                      "ckpt-4 cannot be restored: it has no agent state"),
    "two newest damaged": (lambda r: (cut(ckpt(r, 4, "data")), garble(ckpt(r, 3, "index"))), 2,
                           "ckpt-4 cannot be restored: its files are damaged"),
    "checkpoint file garbage": (lambda r: garble(state_file(r)), 4, "checkpoints/checkpoint is damaged"),
    "checkpoint file truncated": (lambda r: cut(state_file(r), 0.3), 4, "checkpoints/checkpoint is damaged"),
    "checkpoint file empty": (lambda r: cut(state_file(r), 0), 4, "checkpoints/checkpoint is damaged"),
    "checkpoint file missing": (lambda r: state_file(r).unlink(), 4, "checkpoints/checkpoint is missing"),
    "checkpoint file names a missing checkpoint": (
        lambda r: state_file(r).write_text('model_checkpoint_path: "ckpt-9"\n'), 4,
        "checkpoints/checkpoint names ckpt-9, which has no files"),
    "checkpoint file names a foreign file": (
        lambda r: state_file(r).write_text('model_checkpoint_path: "model.ckpt"\n'), 4,
        "model.ckpt is not a trpo_tf checkpoint path"),
    "checkpoint file lists only the damaged newest": (
        lambda r: (state_file(r).write_text('model_checkpoint_path: "ckpt-4"\n'), cut(ckpt(r, 4, "index"))), 3,
        "ckpt-4 cannot be restored: its files are damaged"),
    "checkpoint file garbage and newest data truncated": (
        lambda r: (garble(state_file(r)), cut(ckpt(r, 4, "data"))), 3, "checkpoints/checkpoint is damaged"),
    "interrupted save of ckpt-5 (not current)": (half_written_ckpt_5, 4, None),
}


@pytest.mark.parametrize("damage, resumed_from, warning", RESUMABLE.values(), ids=RESUMABLE.keys())
def test_a_damaged_run_resumes_from_its_newest_intact_checkpoint(run, damage, resumed_from, warning):
    damage(run)
    before = tree(run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with TRPO.load(str(run), resume=True) as agent:
            assert agent.timesteps == STEPS * resumed_from and len(agent.history) == resumed_from
            assert agent.sampler.observations is not None  # the environments' state came back too
    messages = [str(w.message) for w in caught if issubclass(w.category, checkpoint.CheckpointWarning)]
    if warning is None:
        assert messages == []
    else:
        [message] = messages
        assert warning in message and message.endswith(f"using {run}/checkpoints/ckpt-{resumed_from}, the newest "
                                                       f"intact checkpoint")
    assert tree(run) == before  # restoring writes nothing


def test_resuming_a_damaged_run_continues_and_repairs_it(run, capsys):
    """With the checkpoint state file garbled and ckpt-4 truncated, the command resumes from
    ckpt-3 (saying so), drops progress.csv's row of the lost iteration 4, trains it again and
    writes ckpt-4 anew: the run is whole again."""
    garble(state_file(run))
    cut(ckpt(run, 4, "data"))
    assert progress_iterations(run) == [1, 2, 3, 4]
    with pytest.warns(checkpoint.CheckpointWarning) as caught:  # printed as "trpo-tf: warning: ..." outside pytest
        assert cli.main(TRAIN + ["--resume", "--logdir", str(run), "--timesteps", str(4 * STEPS)]) == 0
    [warning] = [str(w.message) for w in caught]
    assert "checkpoints/checkpoint is damaged" in warning and "ckpt-4 cannot be restored" in warning
    assert warning.endswith(f"using {run}/checkpoints/ckpt-3, the newest intact checkpoint")
    assert "4 iterations" in capsys.readouterr().out
    assert progress_iterations(run) == [1, 2, 3, 4]
    assert checkpoint.latest(str(run)).endswith("ckpt-4")
    assert checkpoint.checkpoint_state(str(ckpt(run, 4, "index"))[: -len(".index")])["timesteps"] == 4 * STEPS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing damaged is current any more
        with TRPO.load(str(run), resume=True) as agent:
            assert [entry["iteration"] for entry in agent.history] == [1, 2, 3, 4]
    assert not (run / rundir.LOCK_FILE).exists()


# --------------------------------------------------------------------------- damaged runs that are refused

def _all_checkpoints(run: Path, change: Callable[[Path], None]) -> None:
    for path in (run / "checkpoints").glob("ckpt-*.data-*"):
        change(path)


REFUSED: dict[str, tuple[Callable[[Path], None], str]] = {
    # id: (damage, what the one error line says)
    "every checkpoint damaged": (lambda r: _all_checkpoints(r, cut), "has no intact checkpoint: checkpoint"),
    "no checkpoint files": (lambda r: [p.unlink() for p in (r / "checkpoints").glob("ckpt-*")],
                            "has no checkpoint to resume from"),
    "no checkpoints folder": (lambda r: shutil.rmtree(r / "checkpoints"), "has no checkpoint to resume from"),
    "run.json garbage": (lambda r: garble(r / "run.json"), "run.json is unreadable or corrupted"),
    "run.json empty": (lambda r: cut(r / "run.json", 0), "run.json is unreadable or corrupted"),
    "run.json not an object": (lambda r: (r / "run.json").write_text("[1, 2]"),
                               "run.json is corrupted: it must be a JSON object with env_id and seed"),
    "run.json without a seed": (lambda r: (r / "run.json").write_text('{"env_id": "CartPole-v1"}'),
                                "run.json is corrupted: it must be a JSON object with env_id and seed"),
    "run.json missing": (lambda r: (r / "run.json").unlink(), "is not a trpo_tf run directory (it has no run.json)"),
    "run.json of another environment": (
        lambda r: (r / "run.json").write_text('{"env_id": "Pendulum-v1", "seed": 0}'),
        "is a run of Pendulum-v1, not CartPole-v1"),
    "config.yaml garbage": (lambda r: (r / "config.yaml").write_text("max_kl: [unclosed\n"), "config.yaml"),
    "config.yaml not a mapping": (lambda r: (r / "config.yaml").write_text("- 1\n- 2\n"),
                                  "config.yaml is corrupted: it must be a mapping of TRPOConfig fields"),
    "config.yaml unknown field": (lambda r: (r / "config.yaml").write_text("max_kll: 0.01\n"), "max_kll"),
    "config.yaml invalid value": (lambda r: (r / "config.yaml").write_text("max_kl: -1\n"), "TRPOConfig.max_kl"),
    "config.yaml missing": (lambda r: (r / "config.yaml").unlink(), "cannot read"),
    "config.yaml of another network": (
        lambda r: (r / "config.yaml").write_text(f"steps_per_iteration: {STEPS}\nvalue_epochs: 1\n"
                                                 "policy_hidden: [8]\n"),
        "ckpt-4 cannot be restored (written with another config or trpo_tf version)"),
    "agent state of another shape": (
        lambda r: edit_state(r, 4, lambda d: {**d, "agent": {"iteration": 4}}),
        "ckpt-4 holds an agent state that does not fit this agent"),
    "environment state not signed": (lambda r: edit_state(r, 4, lambda d: {k: v for k, v in d.items()
                                                                           if k != "environment_signature"}),
                                     "ckpt-4: its pickled environment state carries no signature"),
    "run directory is a file": (lambda r: (shutil.rmtree(r), r.write_text("not a run")), "exists and is not a directory"),
}


@pytest.mark.parametrize("damage, message", REFUSED.values(), ids=REFUSED.keys())
def test_a_run_that_cannot_resume_is_refused_in_one_line_and_left_unchanged(run, capsys, damage, message):
    damage(run)
    before = tree(run) if run.is_dir() else run.read_bytes()
    assert cli.main(RESUME + ["--logdir", str(run), "--timesteps", str(6 * STEPS)]) == 2
    [line] = ours(capsys.readouterr().err)
    assert line.startswith("trpo-tf: error: ") and message in line, line
    assert (tree(run) if run.is_dir() else run.read_bytes()) == before


def test_refusals_name_every_damaged_checkpoint(run):
    _all_checkpoints(run, cut)
    with pytest.raises(checkpoint.RunDirError) as refused:
        TRPO.load(str(run))
    text = str(refused.value)
    assert all(f"ckpt-{n} cannot be restored" in text for n in (4, 3, 2))


# --------------------------------------------------------------------------- new runs over old ones

@pytest.mark.parametrize("keep, named", [("run.json", "run.json"), ("progress.csv", "progress.csv"),
                                         ("checkpoints/ckpt-3.index", "checkpoints/ckpt-3")])
def test_a_new_run_refuses_a_directory_holding_any_part_of_a_run(run, capsys, keep, named):
    """With a damaged checkpoint state the old command took the run for empty and overwrote it."""
    for path in sorted(run.rglob("*"), reverse=True):
        if str(path.relative_to(run)) != keep and not keep.startswith(str(path.relative_to(run)) + "/"):
            path.rmdir() if path.is_dir() else path.unlink()
    before = tree(run)
    assert cli.main(TRAIN + ["--timesteps", str(STEPS), "--logdir", str(run)]) == 2
    [line] = ours(capsys.readouterr().err)
    assert f"{run} already holds a run ({named}); continue it with --resume" in line
    assert tree(run) == before


def test_a_new_run_refuses_a_run_whose_checkpoint_state_is_damaged(run, capsys):
    garble(state_file(run))
    before = tree(run)
    assert cli.main(TRAIN + ["--timesteps", str(STEPS), "--logdir", str(run)]) == 2
    assert "already holds a run (run.json, progress.csv, checkpoints/ckpt-4)" in capsys.readouterr().err
    assert tree(run) == before


# --------------------------------------------------------------------------- two trainings at once

@contextlib.contextmanager
def locked_as_another_process_locks(run):
    """What another process's lock_run_dir holds: an flock on RUN_DIR/.lock, its pid written in it
    (a separate open file, so this process's own nested blocks do not count it as theirs)."""
    path = os.path.join(run, rundir.LOCK_FILE)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise
    os.write(descriptor, f"{os.getpid()}\n".encode())
    try:
        yield
    finally:
        os.unlink(path)
        os.close(descriptor)


def test_a_lock_is_reentrant_within_the_process_that_holds_it(tmp_path):
    """trpo-tf train holds the lock and calls TRPO.learn(log_dir=...), which takes it again."""
    with rundir.lock_run_dir(str(tmp_path)):
        with rundir.lock_run_dir(str(tmp_path)):
            pass
        assert (tmp_path / rundir.LOCK_FILE).read_text() == f"{os.getpid()}\n"  # still held
        with pytest.raises(BlockingIOError):  # another process could not take it
            with locked_as_another_process_locks(str(tmp_path)):
                pass
    assert not (tmp_path / rundir.LOCK_FILE).exists()


def test_a_locked_run_directory_is_refused_at_once(run, tmp_path, capsys):
    before = tree(run)
    with locked_as_another_process_locks(str(run)):
        assert (run / rundir.LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(RunDirInUseError, match=f"in use by another training \\(process {os.getpid()}"):
            with rundir.lock_run_dir(str(run)):
                pass
        for argv in (["--resume", "--timesteps", str(6 * STEPS)], ["--timesteps", str(STEPS)]):
            start = time.perf_counter()
            assert cli.main(TRAIN + ["--logdir", str(run)] + argv) == 2
            assert time.perf_counter() - start < 2  # refused before any agent is built
            [line] = ours(capsys.readouterr().err)
            assert f"is in use by another training (process {os.getpid()}" in line
    assert tree(run) == before  # the lock file is gone with the lock
    with rundir.lock_run_dir(str(run)):  # and can be taken again
        pass
    assert not (tmp_path / "new").exists()
    with rundir.lock_run_dir(str(tmp_path / "new")):
        assert (tmp_path / "new").is_dir()
    assert not (tmp_path / "new").exists()  # a directory it made and nobody used is removed again


def test_a_second_training_is_refused_and_a_killed_one_leaves_no_lock(tmp_path):
    """A real training in a subprocess holds the lock; a second is refused naming its pid; after
    kill -9 its stale lock file blocks nothing and the run resumes."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "trpo_tf.cli"] + TRAIN + ["--logdir", str(run), "--timesteps", str(500 * STEPS)]
    process = subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while checkpoint.latest(str(run)) is None:
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()
            time.sleep(0.05)
        with pytest.raises(RunDirInUseError, match=f"process {process.pid}"):
            with rundir.lock_run_dir(str(run)):
                pass
    finally:
        kill_9_after_checkpoint(process, str(run), iteration=1, delay=0)
    assert (run / rundir.LOCK_FILE).read_text() == f"{process.pid}\n"  # left behind by the killed process
    resumed_from = checkpoint.iteration_of(checkpoint.latest(str(run)))
    assert cli.main(TRAIN + ["--resume", "--logdir", str(run), "--timesteps", str(resumed_from * STEPS)]) == 0
    assert progress_iterations(run) == list(range(1, resumed_from + 1))  # rows after the checkpoint dropped
    assert not (run / rundir.LOCK_FILE).exists()


# --------------------------------------------------------------------------- symbolic links

LINKED = [".lock", "run.json", "config.yaml", "progress.csv", "checkpoints", "checkpoints/checkpoint",
          "checkpoints/ckpt-4.index", "checkpoints/ckpt-5_temp"]  # the last: where TensorFlow writes ckpt-5 first


def link_out(run: Path, entry: str, outside: Path) -> Path:
    """Make ``run/entry`` a symbolic link to ``outside/<name>``: to what the entry held (moved there), else to
    a 95-byte file (a folder for ckpt-5_temp); returns the link."""
    link, target = run / entry, outside / Path(entry).name
    if link.exists():
        shutil.move(str(link), str(target))
    elif entry.endswith("_temp"):
        target.mkdir()
    else:
        target.write_bytes(b"x" * 95)
    link.symlink_to(target)
    return link


@pytest.mark.parametrize("entry", LINKED)
def test_a_symlinked_entry_is_refused_before_anything_is_written(run, tmp_path, capsys, entry):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = link_out(run, entry, outside)
    before, outside_before = tree(run), tree(outside)
    for argv in (RESUME + ["--logdir", str(run), "--timesteps", str(6 * STEPS)],
                 RESUME + ["--logdir", str(run), "--timesteps", str(6 * STEPS), "--trust-run"]):
        assert cli.main(argv) == 2
        [line] = ours(capsys.readouterr().err)
        assert line == (f"trpo-tf: error: {link} is a symbolic link (to {outside / link.name}); trpo_tf writes "
                        f"nothing through a link, so that no file outside {link.parent} changes: remove the link")
    with TRPO.load(str(run)) as agent:  # reading through a link is fine; writing is not
        with pytest.raises(RunDirError, match=f"{link} is a symbolic link"):
            agent.learn(STEPS, log_dir=str(run))
        with pytest.raises(RunDirError, match=f"{link} is a symbolic link"):
            agent.save(str(run))
    assert tree(run) == before and tree(outside) == outside_before


def test_a_new_run_refuses_a_symlinked_lock(tmp_path, capsys):
    """The lock is the first file a training writes: through a link it would truncate the file linked to."""
    (tmp_path / "run").mkdir()
    (tmp_path / "victim").write_bytes(b"x" * 95)
    (tmp_path / "run" / ".lock").symlink_to(tmp_path / "victim")
    assert cli.main(TRAIN + ["--logdir", str(tmp_path / "run"), "--timesteps", str(STEPS)]) == 2
    assert f"{tmp_path / 'run' / '.lock'} is a symbolic link" in capsys.readouterr().err
    assert (tmp_path / "victim").read_bytes() == b"x" * 95 and os.listdir(tmp_path / "run") == [".lock"]


def test_files_are_never_written_through_a_link(tmp_path):
    """What progress.csv, run.json and TensorBoard's new event files are written with."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "link"
    link.symlink_to(victim)
    for write in (lambda: files.atomic_write(str(link), "new"), lambda: files.open_append(str(link)),
                  lambda: files.create_new(str(link))):
        with pytest.raises(RunDirError, match=f"{link} is a symbolic link"):
            write()
    (tmp_path / f"run.json.{os.getpid()}.tmp").symlink_to(victim)  # where atomic_write writes first
    with pytest.raises(RunDirError, match=f"run.json.{os.getpid()}.tmp is a symbolic link"):
        files.atomic_write(str(tmp_path / "run.json"), "new")
    assert victim.read_text() == "precious" and not (tmp_path / "run.json").exists()


def test_a_best_model_folder_with_a_symlinked_entry_is_refused_before_anything_is_written(run, tmp_path):
    best, victim = tmp_path / "best", tmp_path / "victim"
    best.mkdir()
    victim.write_text("precious")
    (best / "config.yaml").symlink_to(victim)  # written after run.json: refused before run.json is
    with TRPO.load(str(run)) as agent:
        with pytest.raises(RunDirError, match=f"{best / 'config.yaml'} is a symbolic link"):
            EvalCallback(agent, "CartPole-v1", every=1, episodes=1, best_dir=str(best))
    assert os.listdir(best) == ["config.yaml"] and victim.read_text() == "precious"


def test_export_refuses_a_symlinked_version_folder(run, tmp_path, capsys):
    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / "1").symlink_to(tmp_path / "elsewhere")  # dangling: the export would create it
    assert cli.main(["export", str(run), str(tmp_path / "exported"), "--eval-episodes", "1"]) == 2
    assert f"{tmp_path / 'exported' / '1'} is a symbolic link" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists() and os.listdir(tmp_path / "exported") == ["1"]


# --------------------------------------------------------------------------- crafted run directories

class _Marker:
    """Unpickling this creates the file ``path``: what a crafted pickle could do instead."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self) -> tuple:
        return open, (self.path, "w")


def plant(run: Path, number: int, marker: Path, signature: str | None) -> None:
    """Replace ckpt-<number>'s environment state with a pickle that creates ``marker`` when unpickled."""
    state, _ = stored(run, number)
    document = json.loads(state)
    document.pop("environment_signature")
    if signature is not None:
        document["environment_signature"] = signature
    rewrite(run, number, json.dumps(document).encode(), pickle.dumps(_Marker(str(marker))))


NAMED = {"run_id": "a", "checkpoint": "ckpt-4", "env_id": "CartPole-v1"}  # what a signature binds its bytes to
CRAFTED = {  # signatures a crafted or damaged checkpoint could hold
    "none": None,
    "zeros, old form": "hmac-sha256:" + "0" * 64,
    "non-ASCII, old form": "hmac-sha256:" + "é" * 64,
    "too short, old form": "hmac-sha256:abc",
    "a number": 7,
    "a list": ["hmac-sha256:" + "0" * 64],
    "an empty object": {},
    "no hmac": NAMED,
    "non-ASCII hmac": {**NAMED, "hmac": "hmac-sha256:" + "é" * 64},
    "hmac too long": {**NAMED, "hmac": "hmac-sha256:" + "0" * 65},
    "run id not a string": {**NAMED, "run_id": 1, "hmac": "hmac-sha256:" + "0" * 64},
    "an extra key": {**NAMED, "hmac": "hmac-sha256:" + "0" * 64, "trusted": True},
}


@pytest.mark.parametrize("signature", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_pickle_is_never_unpickled_without_trust(run, tmp_path, capsys, signature):
    """Whatever the signature holds (non-ASCII, the wrong length, the wrong type), one line, never a traceback."""
    marker = tmp_path / "marker"
    plant(run, 4, marker, signature)
    before = tree(run)
    assert cli.main(RESUME + ["--logdir", str(run), "--timesteps", str(6 * STEPS)]) == 2
    [line] = ours(capsys.readouterr().err)
    assert line.startswith(f"trpo-tf: error: checkpoint {run}/checkpoints/ckpt-4: its pickled environment state "
                           "carries ") and "--trust-run" in line and "--fresh-episodes" in line
    with pytest.raises(UntrustedRunError):
        TRPO.load(str(run), resume=True)
    with TRPO.load(str(run)) as agent:  # evaluation and export read no pickle
        agent.evaluate(episodes=1)
    assert not marker.exists() and tree(run) == before


def test_a_crafted_run_resumes_with_fresh_episodes_without_unpickling(run, tmp_path, capsys):
    marker = tmp_path / "marker"
    plant(run, 4, marker, None)
    argv = ["--resume", "--fresh-episodes", "--logdir", str(run), "--timesteps", str(4 * STEPS)]
    assert cli.main([arg for arg in TRAIN if arg != "--quiet"] + argv) == 0
    assert f"resuming {run} from iteration 4 at 256 timesteps" in capsys.readouterr().out
    assert not marker.exists()


def test_trust_is_what_unpickles(run, tmp_path):
    """With trust=True the crafted pickle does run: the signature check is the only thing in its way."""
    marker = tmp_path / "marker"
    plant(run, 4, marker, None)
    with pytest.warns(checkpoint.CheckpointWarning, match="differs from this one"):  # an open file is no env
        TRPO.load(str(run), resume=True, trust=True).close()
    assert marker.exists()


def test_evaluate_and_export_of_a_crafted_run_never_unpickle(run, tmp_path):
    """Through the installed command, as a user runs it on a downloaded run directory."""
    marker = tmp_path / "marker"
    plant(run, 4, marker, None)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    for argv in (["evaluate", str(run), "--episodes", "1"],
                 ["export", str(run), str(tmp_path / "exported"), "--eval-episodes", "1"]):
        process = subprocess.run([sys.executable, "-m", "trpo_tf.cli"] + argv, env=env, capture_output=True,
                                 text=True, timeout=300)
        assert process.returncode == 0, process.stderr
        assert not marker.exists(), argv
    assert (tmp_path / "exported" / "1" / "saved_model.pb").is_file()


def plant_module(directory: Path, marker: Path) -> str:
    """A module in ``directory`` (put on sys.path) that creates ``marker`` when imported; returns its name."""
    name = f"planted_{os.urandom(4).hex()}"
    (directory / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    return name


def set_env_id(path: Path, key: str, env_id: str) -> None:
    """Make the JSON file ``path`` (run.json, metadata.json) record ``env_id`` under ``key``."""
    recorded = json.loads(path.read_text())
    path.write_text(json.dumps({**recorded, key: env_id}))


def test_an_env_id_in_a_run_directory_never_chooses_a_module_to_import(run, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.syspath_prepend(str(tmp_path))
    module = plant_module(tmp_path, marker)
    set_env_id(run / "run.json", "env_id", f"{module}:CartPole-v1")
    before = tree(run)
    refusal = f"run.json names the environment '{module}:CartPole-v1', which would import the module '{module}'"
    for load in (lambda: TRPO.load(str(run)), lambda: TRPO.load(str(run), resume=True)):
        with pytest.raises(UntrustedModuleError, match=refusal + ".*env=.*trust=True") as refused:
            load()
        assert "--" not in str(refused.value)
    for argv in (["evaluate", str(run), "--episodes", "1"], ["export", str(run), str(tmp_path / "exported")]):
        assert cli.main(argv) == 2
        [line] = ours(capsys.readouterr().err)
        assert refusal in line and line.endswith("pass the environment yourself (--env ENV_ID) if you know that "
                                                 "module, or pass --trust-run if you trust whoever wrote it")
    # train --resume follows the rule of its pickles: this user's signature for this env id, or --trust-run.
    assert cli.main(["train", f"{module}:CartPole-v1", "--resume", "--logdir", str(run), "--quiet"]) == 2
    [line] = ours(capsys.readouterr().err)
    assert refusal in line and "--trust-run" in line and "--env" not in line
    assert not marker.exists() and module not in sys.modules and tree(run) == before

    with TRPO.load(str(run), env="CartPole-v1") as agent:  # the user names the environment
        assert agent.env_id == "CartPole-v1"
    assert cli.main(["evaluate", str(run), "--episodes", "1", "--env", "CartPole-v1"]) == 0
    assert not marker.exists()
    TRPO.load(str(run), trust=True).close()  # trust is what imports it
    assert marker.exists()


def test_the_zen_of_python_is_not_printed_by_evaluating_a_run(run, capsys):
    """What the issue saw: env_id "this:CartPole-v1" printed the Zen of Python on trpo-tf evaluate RUN."""
    set_env_id(run / "run.json", "env_id", "this:CartPole-v1")
    assert "this" not in sys.modules
    assert cli.main(["evaluate", str(run), "--episodes", "1"]) == 2
    captured = capsys.readouterr()
    assert "Beautiful is better than ugly" not in captured.out
    assert "which would import the module 'this'" in captured.err


def test_an_export_never_chooses_a_module_to_import(run, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.syspath_prepend(str(tmp_path))
    module = plant_module(tmp_path, marker)
    assert cli.main(["export", str(run), str(tmp_path / "exported"), "--eval-episodes", "1"]) == 0
    set_env_id(tmp_path / "exported" / "1" / "assets" / "metadata.json", "env_id", f"{module}:CartPole-v1")
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "exported"), "--episodes", "1"]) == 2
    assert f"metadata.json names the environment '{module}:CartPole-v1'" in capsys.readouterr().err
    assert cli.main(["evaluate", str(tmp_path / "exported"), "--episodes", "1", "--env", "CartPole-v1"]) == 0
    assert not marker.exists()


def test_a_signed_run_of_a_module_environment_resumes(tmp_path, monkeypatch):
    """This user's own run: its signature names the env id, so resuming imports the module as training did."""
    monkeypatch.syspath_prepend(str(tmp_path))
    module = plant_module(tmp_path, tmp_path / "marker")
    run = str(tmp_path / "own")
    with TRPO(f"{module}:CartPole-v1", TRPOConfig(steps_per_iteration=STEPS, value_epochs=1), seed=0) as agent:
        agent.learn(STEPS, log_dir=run)
    TRPO.load(run, resume=True).close()
    with pytest.raises(UntrustedModuleError):  # evaluating or exporting: only env= or trust=True
        TRPO.load(run)


def test_an_unsigned_old_run_resumes_exactly_with_trust(run):
    """A checkpoint without a signature (as trpo_tf wrote before signing) is refused, then resumed
    with trust=True, environments included: they step exactly like those of the signed original."""
    with TRPO.load(str(run), resume=True) as signed:
        expected = signed.sampler.observations.copy()
    edit_state(run, 4, lambda d: {k: v for k, v in d.items() if k != "environment_signature"})
    with pytest.raises(UntrustedRunError, match="carries no signature"):
        TRPO.load(str(run), resume=True)
    with TRPO.load(str(run), resume=True, trust=True) as unsigned:
        np.testing.assert_array_equal(unsigned.sampler.observations, expected)


def test_a_run_signed_with_another_key_is_refused(run, tmp_path, monkeypatch):
    """Another user's (or machine's) key: the run is not ours, whatever it holds."""
    monkeypatch.setenv(signing.KEY_FILE_VARIABLE, str(tmp_path / "other-key"))
    with pytest.raises(UntrustedRunError, match="is signed with another key"):
        TRPO.load(str(run), resume=True)




def run_id(run: Path) -> str:
    return json.loads((run / "run.json").read_text())["run_id"]


def test_signed_state_spliced_from_another_run_or_checkpoint_is_refused_naming_both(run, tmp_path):
    """The user's own signed state, in the wrong place: another of their runs, or another checkpoint."""
    other = Path(shutil.copytree(run, tmp_path / "other"))
    info = json.loads((other / "run.json").read_text())
    (other / "run.json").write_text(json.dumps({**info, "run_id": "0" * 32}))  # a run of its own, holding run's ckpts
    with pytest.raises(UntrustedRunError, match=(
            f"ckpt-4: its pickled environment state is signed for ckpt-4 of run {run_id(run)} .CartPole-v1., but it "
            f"is in ckpt-4 of run {'0' * 32} .CartPole-v1.: it was copied from another run or checkpoint")):
        TRPO.load(str(other), resume=True)

    state_3, environment_3 = stored(run, 3)  # ckpt-3's environment state and its signature, into ckpt-4
    signature_3 = json.loads(state_3)["environment_signature"]
    edit_state(run, 4, lambda d: {**d, "environment_signature": signature_3})
    rewrite(run, 4, stored(run, 4)[0], environment_3)
    with pytest.raises(UntrustedRunError, match=f"is signed for ckpt-3 of run {run_id(run)} .CartPole-v1., but it is "
                                                f"in ckpt-4 of run {run_id(run)}"):
        TRPO.load(str(run), resume=True)


def test_a_run_signed_before_signatures_named_their_run_resumes_with_trust_then_signs_anew(run):
    """What happens to runs signed by an earlier trpo_tf: HMAC-SHA256 of the pickle alone, as it wrote them."""
    key = bytes.fromhex(Path(signing.key_file()).read_text())
    _, environment = stored(run, 4)
    earlier = "hmac-sha256:" + hmac.new(key, b"trpo_tf environment state\x00" + environment, hashlib.sha256).hexdigest()
    edit_state(run, 4, lambda d: {**d, "environment_signature": earlier})
    info = json.loads((run / "run.json").read_text())
    del info["run_id"]  # nor did run.json hold a run id
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(UntrustedRunError, match="carries a signature of an earlier trpo_tf, which did not name the "
                                                "run and checkpoint it belongs to"):
        TRPO.load(str(run), resume=True)
    with TRPO.load(str(run), resume=True, trust=True) as agent:
        agent.learn(STEPS, log_dir=str(run), checkpoint_every=0)
    new_id = run_id(run)  # made at the first save
    assert len(new_id) == 32 and json.loads(stored(run, 5)[0])["environment_signature"]["run_id"] == new_id
    TRPO.load(str(run), resume=True).close()  # ckpt-5 is signed the new way


# --------------------------------------------------------------------------- the run key

def test_the_run_key_is_private_random_and_signs_with_hmac_sha256(tmp_path, monkeypatch):
    path = tmp_path / "config" / "run-key"
    monkeypatch.setenv(signing.KEY_FILE_VARIABLE, str(path))
    key = signing.run_key()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) == 32
    assert signing.run_key() == key == bytes.fromhex(path.read_text())  # made once, then read
    data = b"\x80\x05some pickle"
    bound = {"run_id": "ab12", "checkpoint": "ckpt-7", "env_id": "Pendulum-v1"}
    expected = hmac.new(key, b'trpo_tf environment state, bound\x00["ab12", "ckpt-7", "Pendulum-v1"]\x00' + data,
                        hashlib.sha256).hexdigest()
    signature = signing.sign(data, bound)
    assert signature == {**bound, "hmac": f"hmac-sha256:{expected}"}
    assert signing.vouched_for(data, signature) == bound
    for changed in ({**signature, "checkpoint": "ckpt-8"}, {**signature, "env_id": None}):
        with pytest.raises(signing.InvalidSignature, match="is signed with another key"):
            signing.vouched_for(data, changed)
    with pytest.raises(signing.InvalidSignature, match="is signed with another key"):
        signing.vouched_for(data + b"x", signature)

    monkeypatch.setenv(signing.KEY_FILE_VARIABLE, str(tmp_path / "other"))
    assert signing.run_key() != key


def test_a_bad_run_key_is_refused_before_training(tmp_path, monkeypatch, capsys):
    path = tmp_path / "run-key"
    monkeypatch.setenv(signing.KEY_FILE_VARIABLE, str(path))
    path.write_text("not hex")
    path.chmod(0o600)
    with pytest.raises(RunKeyError, match="is corrupted"):
        signing.run_key()
    path.write_text("ab" * 32)
    path.chmod(0o644)
    with pytest.raises(RunKeyError, match="chmod 600"):
        signing.run_key()
    assert cli.main(TRAIN + ["--timesteps", str(STEPS), "--logdir", str(tmp_path / "run")]) == 2
    assert "is open to other users (mode 0644)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", [
    (["--trust-run"], "--trust-run applies to --resume only"),
    (["--fresh-episodes"], "--fresh-episodes applies to --resume only"),
    (["--resume", "--trust-run", "--fresh-episodes"], "--trust-run and --fresh-episodes exclude each other"),
])
def test_trust_flags_need_resume_and_exclude_each_other(tmp_path, capsys, argv, message):
    assert cli.main(TRAIN + ["--logdir", str(tmp_path / "run")] + argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
