"""Shared by all tests: the run key that signs checkpoints lives in a temporary directory, and
XLA's persistent cache is off.

Set before any test runs, so no test reads or creates the user's own key
(~/.config/trpo_tf/run-key) or fills ~/.cache/trpo_tf/xla; subprocesses inherit both through
the environment.
"""

import os

import pytest

os.environ.setdefault("TRPO_TF_XLA_CACHE", "")  # read when an agent is created (and by trpo_tf.quiet())

from trpo_tf.signing import KEY_FILE_VARIABLE


@pytest.fixture(autouse=True, scope="session")
def _test_run_key(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ[KEY_FILE_VARIABLE] = str(tmp_path_factory.mktemp("run-key") / "run-key")
