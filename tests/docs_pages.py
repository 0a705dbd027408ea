"""Shared by test_docs_pages_a.py and test_docs_pages_b.py: run a page's blocks and check what it says they print."""

from __future__ import annotations

import gc
import re

from docs_blocks import RUN_LANGUAGES, PageRun, blocks, summary_pattern

TRAIN_SUMMARY = re.compile(r"^\S+: [\d,]+ timesteps, ")  # the line `trpo-tf train` ends with


def run_pages(paths: tuple[str, ...], workdir: str) -> int:
    """Run the pages one after another in one working directory (see :class:`PageRun`); the number of blocks run."""
    ran: dict[str, str] = {}
    return sum(run_page(path, workdir, ran) for path in paths)


def run_page(path: str, workdir: str, ran: dict[str, str] | None = None) -> int:
    """Run every unmarked block of ``path`` in order; check each documented `trpo-tf train` summary line
    against the output of the training command before it. Returns the number of blocks run."""
    page = PageRun(path, workdir, ran)
    ran = 0
    try:
        for block in blocks(path):
            if block.language == "text" and TRAIN_SUMMARY.match(block.code):
                trainings = [(command, out) for command, out in page.outputs if " train " in f" {command} "]
                assert trainings, f"{block.where}: documents a training's output, but no training ran before it"
                command, out = trainings[-1]
                last = out.strip().splitlines()[-1]
                assert summary_pattern(block.code).match(last), (
                    f"{block.where}: `{command}` printed\n{last}\nwhich is not the documented\n{block.code}")
            if block.language in RUN_LANGUAGES and not block.marked:
                page.run(block)
                ran += 1
    finally:
        page.close()
        gc.collect()
    return ran
