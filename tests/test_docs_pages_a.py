"""The code blocks of the README and the first half of docs/ run as printed (see docs_blocks.py)."""

import pytest

from docs_pages import run_page

PAGES = ["README.md", "docs/getting-started.md", "docs/training.md", "docs/cli.md", "docs/hyperparameters.md"]


@pytest.mark.parametrize("path", PAGES)
def test_page_blocks_run(path, tmp_path):
    run_page(path, str(tmp_path))
