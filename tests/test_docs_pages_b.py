"""The code blocks of the other half of docs/ run as printed (see docs_blocks.py); together with
test_docs_pages_a.py every page with code is covered."""

import pytest

from docs_blocks import RUN_LANGUAGES, blocks, pages
from docs_pages import run_page
from test_docs_pages_a import PAGES as FIRST_HALF

PAGES = ["docs/training.md", "docs/observations.md", "docs/masking.md", "docs/recurrent.md", "docs/exporting.md", "docs/reliability.md", "docs/algorithm.md"]


def test_every_page_with_code_is_run_by_one_of_the_two_files():
    with_code = {page for page in pages() if any(block.language in RUN_LANGUAGES for block in blocks(page))}
    assert with_code == set(FIRST_HALF) | set(PAGES)


@pytest.mark.parametrize("path", PAGES)
def test_page_blocks_run(path, tmp_path):
    run_page(path, str(tmp_path))
