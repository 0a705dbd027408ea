"""Start-up: ``import trpo_tf`` changes nothing in the host; ``trpo-tf train --quiet`` (and ``trpo_tf.quiet()``)
print nothing of TensorFlow's start-up yet keep its errors; a log level the user set is kept; the XLA cache is
configured (and pruned) when an agent is created, unless the user set XLA flags; MuJoCo's known deprecation
is dropped and its other warnings are Python warnings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings

import pytest

from trpo_tf import startup
from trpo_tf.sampling import make_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUMMARY = re.compile(r"^CartPole-v1: 256 timesteps, 2 iterations, episode_return_mean [\d.]+ \([\d.]+s\); "
                     r"run: quiet-run$")


def _env_without_log_level(**extra: str) -> dict[str, str]:
    """This process's environment with PYTHONPATH set and TF_CPP_MIN_LOG_LEVEL as a user would leave it."""
    env = {key: value for key, value in os.environ.items() if key != startup.LOG_LEVEL_VARIABLE}
    return dict(env, PYTHONPATH=REPO, **extra)


def _command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "trpo-tf")
    return [script] if os.path.isfile(script) else [sys.executable, "-m", "trpo_tf.cli"]


def test_train_quiet_prints_exactly_the_final_line(tmp_path):
    process = subprocess.run(_command() + ["train", "CartPole-v1", "--timesteps", "256", "--quiet",
                                           "--set", "steps_per_iteration=128", "--logdir", "quiet-run"],
                             cwd=tmp_path, env=_env_without_log_level(), capture_output=True, text=True,
                             timeout=300)
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""
    assert SUMMARY.match(process.stdout.rstrip("\n")) and process.stdout.count("\n") == 1, process.stdout


def test_a_log_level_the_user_set_keeps_tensorflows_logging():
    """With TF_CPP_MIN_LOG_LEVEL=0, XLA's INFO line on compiling a function still reaches stderr."""
    script = ("import os, trpo_tf\n"
              "trpo_tf.quiet()\n"
              "import tensorflow as tf\n"
              "tf.function(lambda x: x + 1.0, jit_compile=True)(tf.constant(1.0))\n"
              "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])\n")
    process = subprocess.run([sys.executable, "-c", script], env=_env_without_log_level(TF_CPP_MIN_LOG_LEVEL="0"),
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    assert process.stdout == "0\n"
    assert re.search(r"^I\d{4} .*\] XLA service .* initialized", process.stderr, re.MULTILINE), process.stderr


@pytest.mark.parametrize("level, hidden", [(0, ""), (1, "I"), (2, "IW"), (3, "IWE")])
def test_a_level_hides_the_absl_lines_below_it(level, hidden):
    lines = {"I": "I0000 00:00:1795901793.096627   23090 cudart_stub.cc:31] Could not find cuda drivers\n",
             "W": "W0000 00:00:1795901658.526544   21569 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.\n",
             "E": "E0000 00:00:1795901442.176337   20456 cuda_platform.cc:52] failed call to cuInit\n",
             "F": "F0000 00:00:1795901442.176337   20456 a.cc:1] fatal\n"}
    assert {severity for severity, line in lines.items() if startup.hidden_by_level(line, level)} == set(hidden)
    preamble = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    assert startup.hidden_by_level(preamble, level) == (level >= 1)
    for other in ("Traceback (most recent call last):\n", "trpo-tf: warning: I0000 is not a log line\n",
                  "To enable the following instructions: AVX2 FMA\n"):
        assert not startup.hidden_by_level(other, level)


def test_mujoco_settotalmass_deprecation_is_dropped(capfd):
    capfd.readouterr()
    make_env("HalfCheetah-v5").close()  # gymnasium's half_cheetah.xml sets settotalmass
    out, err = capfd.readouterr()
    assert "settotalmass" not in out + err


def test_other_mujoco_warnings_become_python_warnings_and_never_raise(capfd):
    make_env("Hopper-v5").close()  # imports MuJoCo and installs the handler
    import mujoco
    handler = mujoco.get_mju_user_warning()
    assert handler is not None
    with pytest.warns(RuntimeWarning, match="MuJoCo: Nan, Inf or huge value in QACC"):
        handler("Nan, Inf or huge value in QACC at DOF 0")
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        handler("Nan, Inf or huge value in QACC at DOF 1")  # an exception here would abort MuJoCo's caller
    assert "MuJoCo warning: Nan, Inf or huge value in QACC at DOF 1" in capfd.readouterr().err


@pytest.mark.parametrize("environment, expected", [
    ({"TRPO_TF_XLA_CACHE": "/c"}, "--tf_xla_persistent_cache_directory=/c"),
    ({"TRPO_TF_XLA_CACHE": "/c", "TF_XLA_FLAGS": "--tf_xla_auto_jit=2"}, "--tf_xla_auto_jit=2"),  # the user chose
    ({"TRPO_TF_XLA_CACHE": "/c", "TF_XLA_FLAGS": "--tf_xla_persistent_cache_directory=/mine"},
     "--tf_xla_persistent_cache_directory=/mine"),  # the user's cache wins
    ({"TRPO_TF_XLA_CACHE": ""}, None),  # off
    ({"XDG_CACHE_HOME": "/xdg"}, "--tf_xla_persistent_cache_directory=/xdg/trpo_tf/xla"),
])
def test_the_xla_cache_flag_is_set_unless_the_user_set_xla_flags(monkeypatch, environment, expected):
    for name in ("TRPO_TF_XLA_CACHE", "TF_XLA_FLAGS", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, "")  # recorded, so that the flag set below is undone after the test
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(os, "makedirs", lambda *args, **kwargs: None)
    monkeypatch.setattr(startup, "prune_xla_cache", lambda *args: [])
    startup.configure_xla_cache()
    assert os.environ.get("TF_XLA_FLAGS") == expected


def test_a_second_run_loads_the_compiled_steps_from_the_xla_cache(tmp_path):
    """TensorFlow honours the flag: the first run writes compiled programs, the second writes none."""
    cache = tmp_path / "xla"
    command = _command() + ["train", "CartPole-v1", "--timesteps", "128", "--set", "steps_per_iteration=128",
                            "--logdir", str(tmp_path / "run1"), "--quiet"]
    environment = dict(_env_without_log_level(TRPO_TF_XLA_CACHE=str(cache)))
    environment.pop("TF_XLA_FLAGS", None)
    subprocess.run(command, env=environment, check=True, capture_output=True, timeout=600)
    written = sorted(p.name for p in cache.iterdir())
    assert len(written) >= 2 and all(name.startswith("xla_compile_cache__") for name in written)  # step, value fit
    command[command.index(str(tmp_path / "run1"))] = str(tmp_path / "run2")
    warm = subprocess.run(command, env=environment, check=True, capture_output=True, text=True, timeout=600)
    assert sorted(p.name for p in cache.iterdir()) == written
    assert warm.stderr == ""  # TensorFlow's ERROR lines on loading its own cache entries are dropped (--quiet)


def test_the_xla_cache_is_pruned_oldest_first_to_its_size_limit(tmp_path):
    sizes = {"a": 300, "b": 200, "c": 400, "d": 100}  # written in this order, a the oldest
    for age, (key, size) in enumerate(sizes.items()):
        path = tmp_path / f"xla_compile_cache__{key}__1__XLA_CPU_JIT.pb"
        path.write_bytes(b"x" * size)
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    (tmp_path / "notes.txt").write_bytes(b"y" * 5000)  # not XLA's: never deleted, not counted
    (tmp_path / "xla_compile_cache__e.tmp").write_bytes(b"z" * 5000)
    # 1,000 bytes in all; a limit of 600 must drop a (300) and b (200), leaving c + d = 500
    deleted = startup.prune_xla_cache(str(tmp_path), 600)
    assert deleted == ["xla_compile_cache__a__1__XLA_CPU_JIT.pb", "xla_compile_cache__b__1__XLA_CPU_JIT.pb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt", "xla_compile_cache__c__1__XLA_CPU_JIT.pb", "xla_compile_cache__d__1__XLA_CPU_JIT.pb",
        "xla_compile_cache__e.tmp"]
    assert startup.prune_xla_cache(str(tmp_path), 500) == []  # at the limit: nothing to do
    assert startup.prune_xla_cache(str(tmp_path / "missing"), 0) == []


@pytest.mark.parametrize("value, expected", [(None, 512 * 2**20), ("", 512 * 2**20), ("1.5", 1_572_864), ("0", 0)])
def test_the_xla_cache_limit_comes_from_the_environment(monkeypatch, value, expected):
    monkeypatch.delenv("TRPO_TF_XLA_CACHE_MB", raising=False)
    if value is not None:
        monkeypatch.setenv("TRPO_TF_XLA_CACHE_MB", value)
    assert startup.xla_cache_limit_bytes() == expected


@pytest.mark.parametrize("value", ["-1", "lots", "nan", "inf"])
def test_a_bad_xla_cache_limit_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("TRPO_TF_XLA_CACHE_MB", value)
    with pytest.raises(ValueError, match="TRPO_TF_XLA_CACHE_MB"):
        startup.xla_cache_limit_bytes()


def test_creating_an_agent_prunes_the_cache_it_uses_and_importing_does_not(tmp_path):
    cache = tmp_path / "xla"
    cache.mkdir()
    for age, key in enumerate("abc"):
        path = cache / f"xla_compile_cache__{key}.pb"
        path.write_bytes(b"x" * 2**20)
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    environment = dict(_env_without_log_level(TRPO_TF_XLA_CACHE=str(cache), TRPO_TF_XLA_CACHE_MB="2"))
    environment.pop("TF_XLA_FLAGS", None)
    subprocess.run([sys.executable, "-c", "import trpo_tf; from trpo_tf import TRPO, TRPOConfig"], env=environment,
                   check=True, timeout=600)
    assert len(list(cache.iterdir())) == 3  # importing changed nothing
    script = ("import os; from trpo_tf import TRPO, TRPOConfig\n"
              "TRPO('CartPole-v1', TRPOConfig(steps_per_iteration=64), seed=0).close()\n"
              "print(os.environ['TF_XLA_FLAGS'])\n")
    process = subprocess.run([sys.executable, "-c", script], env=environment, check=True, timeout=600,
                             capture_output=True, text=True)
    assert process.stdout == f"--tf_xla_persistent_cache_directory={cache}\n"
    assert sorted(p.name for p in cache.iterdir()) == ["xla_compile_cache__b.pb", "xla_compile_cache__c.pb"]


IMPORT_PROBE = """
import json, logging, os, sys
before = dict(os.environ)
levels = lambda: {name: logging.getLogger(name).level for name in ("", "tensorflow", "absl", "keras", "trpo_tf")}
levels_before = levels()
import trpo_tf
import trpo_tf.cli, trpo_tf.config, trpo_tf.policies.distributions, trpo_tf.policies.encoders, trpo_tf.sampling
imported = {"tensorflow": "tensorflow" in sys.modules, "environ": dict(os.environ) == before,
            "levels": levels() == levels_before}
print(json.dumps(imported))
"""


def test_importing_trpo_tf_changes_nothing_in_the_host(tmp_path):
    """No environment variable, no logging level, no file; and no TensorFlow until an agent's names are used."""
    home = tmp_path / "home"
    home.mkdir()
    environment = dict(_env_without_log_level(HOME=str(home), XDG_CACHE_HOME=str(home / "cache")))
    for name in ("TRPO_TF_XLA_CACHE", "TF_XLA_FLAGS"):
        environment.pop(name, None)
    process = subprocess.run([sys.executable, "-c", IMPORT_PROBE], env=environment, cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout) == {"tensorflow": False, "environ": True, "levels": True}
    assert process.stderr == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["home"]  # nothing written, not even a cache directory


def test_quiet_keeps_tensorflow_quiet_but_its_errors_visible():
    """trpo_tf.quiet() hides INFO and WARNING (level 2), not ERROR; a level the user set stays."""
    script = ("import os, trpo_tf\ntrpo_tf.quiet()\nimport tensorflow as tf\n"
              "tf.function(lambda x: x + 1.0, jit_compile=True)(tf.constant(1.0))\n"
              "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])\n")  # the test's XLA cache is off (conftest)
    process = subprocess.run([sys.executable, "-c", script], env=_env_without_log_level(), capture_output=True,
                             text=True, timeout=300)
    assert process.returncode == 0, process.stderr
    assert process.stdout == "2\n" and process.stderr == ""
    assert not startup.hidden_by_level("E0000 00:00:1795901442.176337   20456 a.cc:1] an error\n", 2)
    kept = subprocess.run([sys.executable, "-c", script], env=_env_without_log_level(TF_CPP_MIN_LOG_LEVEL="1"),
                          capture_output=True, text=True, timeout=300)
    assert kept.returncode == 0 and kept.stdout == "1\n"
