"""Shared by all tests: the run key that signs checkpoints lives in a temporary directory.

Set before any test runs, so no test reads or creates the user's own key
(~/.config/trpo_tf/run-key); subprocesses inherit it through the environment.
"""

import os

import pytest

from trpo_tf.signing import KEY_FILE_VARIABLE


@pytest.fixture(autouse=True, scope="session")
def _test_run_key(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ[KEY_FILE_VARIABLE] = str(tmp_path_factory.mktemp("run-key") / "run-key")
