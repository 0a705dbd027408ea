"""The code blocks of the README and half of docs/ run as printed (see docs_blocks.py); the other
half runs in test_docs_pages_b.py, so that the two run side by side."""

import pytest

from docs_pages import run_pages

# Pages in one group share a working directory (the README and Getting started: their Quickstart runs once).
GROUPS = [("README.md", "docs/getting-started.md"), ("docs/cli.md",), ("docs/hyperparameters.md",), ("docs/scaling.md",),
          ("docs/tuning.md",)]
PAGES = [page for group in GROUPS for page in group]


@pytest.mark.parametrize("paths", GROUPS, ids=lambda paths: "+".join(paths))
def test_page_blocks_run(paths, tmp_path):
    run_pages(paths, str(tmp_path))
