"""Reading and running the code blocks of the README and docs/ (used by the test_docs*.py files).

A block is fenced with three backticks and a language. ``python`` and ``bash`` blocks run, in order,
page by page, in a fresh working directory that links the repository's ``savedmodels/`` and
``examples/``, with ``TRPO_TF_MAX_TIMESTEPS`` set so that training examples train a few iterations:

- a page's Python blocks share one namespace, as a reader running them one after another would;
- a bash block runs command by command (``&&`` chains and lines; ``VAR=value`` prefixes apply to
  their command). ``trpo-tf`` (also as ``.venv/bin/trpo-tf``) runs in this process through
  :func:`trpo_tf.cli.main` with the same arguments, and ``python SCRIPT.py ARGS`` through ``runpy``,
  so TensorFlow is imported once; other programs run as subprocesses with the virtual environment's
  ``bin`` first on ``PATH``. Each must succeed (exit status 0);
- a command that already ran in the same working directory is not run again: its output is reused
  (the README and Getting started show the same Quickstart, which trains for a minute even capped);
- setting up the environment is what the tests run in: ``python3 -m venv .venv``, ``pip install``
  (whose extras must exist in setup.cfg) and ``source .venv/bin/activate`` are checked, not run;
  tests/test_packaging.py installs the package into a fresh virtual environment.

A block whose first line is a comment starting with :data:`MARKER` is not run; the rest of that
comment says why, visibly on the page. ``text`` and ``yaml`` blocks are output and files, not code
(YAML blocks are read as config files by the tests).
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import io
import os
import re
import runpy
import shlex
import subprocess
import sys
from typing import Any, Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
MARKER = "not run by the docs tests:"
RUN_LANGUAGES = ("python", "bash")
OTHER_LANGUAGES = ("text", "yaml")
BUDGET = "4096"  # TRPO_TF_MAX_TIMESTEPS while the blocks run: two iterations of 2,048 steps
LINKED = ("savedmodels", "examples")  # repository folders the blocks read, linked into their working directory

_FENCE = re.compile(r"^(\s*)```([\w+-]*)\s*$")


@dataclasses.dataclass
class Block:
    path: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    language: str
    code: str

    @property
    def marked(self) -> bool:
        """Whether the block says it is not run (and why)."""
        first = next((line.strip() for line in self.code.splitlines() if line.strip()), "")
        return first.startswith("#") and first.lstrip("# ").startswith(MARKER) and \
            len(first.lstrip("# ")[len(MARKER):].strip()) > 3

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def pages() -> list[str]:
    """README.md and every Markdown page of docs/ (relative paths), the generated ones included."""
    found = ["README.md"]
    for folder, _, names in os.walk(DOCS):
        found += [os.path.relpath(os.path.join(folder, name), ROOT) for name in names if name.endswith(".md")]
    return sorted(found, key=lambda path: (path != "README.md", path))


def blocks(path: str) -> list[Block]:
    """The fenced code blocks of a page, in order."""
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    found, index = [], 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match and match.group(2):
            indent, start = match.group(1), index
            index += 1
            body = []
            while index < len(lines) and lines[index].strip() != "```":
                body.append(lines[index][len(indent):] if lines[index].startswith(indent) else lines[index])
                index += 1
            found.append(Block(path, start + 1, match.group(2), "\n".join(body) + "\n"))
        index += 1
    return found


def extras() -> set[str]:
    """The optional-dependency extras setup.cfg declares."""
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "setup.cfg"), encoding="utf-8")
    return set(parser["options.extras_require"])


def commands(code: str) -> list[str]:
    """A bash block's commands: continuation lines joined, comments and blank lines dropped, ``&&`` split."""
    joined = re.sub(r"\\\n\s*", " ", code)
    found = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        current: list[str] = []
        for word in words:
            if word == "&&":
                found.append(shlex.join(current))
                current = []
            else:
                current.append(word)
        if current:
            found.append(shlex.join(current))
    return found


@contextlib.contextmanager
def working_directory(path: str) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class PageRun:
    """Runs one page's blocks in order in ``workdir``; ``outputs`` keeps each command's stdout."""

    def __init__(self, path: str, workdir: str, ran: dict[str, str] | None = None):
        self.path, self.workdir = path, workdir
        self.namespace: dict[str, Any] = {"__name__": "__docs__"}
        self.outputs: list[tuple[str, str]] = []  # (command, stdout)
        self.ran = {} if ran is None else ran  # command → stdout, shared by the pages of one working directory
        for name in LINKED:
            if not os.path.lexists(os.path.join(workdir, name)):
                os.symlink(os.path.join(ROOT, name), os.path.join(workdir, name))

    def run(self, block: Block) -> None:
        with working_directory(self.workdir), environment(TRPO_TF_MAX_TIMESTEPS=BUDGET):
            if block.language == "python":
                code = compile(block.code, block.where, "exec")
                exec(code, self.namespace)  # noqa: S102 - the documentation's own examples
            else:
                for command in commands(block.code):
                    if command not in self.ran:
                        self.ran[command] = self._shell(command, block)
                    self.outputs.append((command, self.ran[command]))

    def close(self) -> None:
        """Close the agents the page's Python blocks left open (their environments and workers)."""
        from trpo_tf import TRPO

        for value in self.namespace.values():
            if isinstance(value, TRPO):
                value.close()

    def _shell(self, command: str, block: Block) -> str:
        words = shlex.split(command)
        assignments = {}
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            key, _, value = words.pop(0).partition("=")
            assignments[key] = value
        program = os.path.basename(words[0])
        with environment(**assignments):
            if program in ("python", "python3") and words[1:3] == ["-m", "venv"]:
                return ""
            if program == "pip" and words[1] == "install":
                for word in words[2:]:
                    named = re.match(r"^\.\[([\w,]+)\]$", word)
                    if named:
                        unknown = set(named.group(1).split(",")) - extras()
                        assert not unknown, f"{block.where}: {command}: no extra {sorted(unknown)} in setup.cfg"
                return ""
            if program == "source":
                return ""
            if program == "trpo-tf":
                return self._in_process(command, block, lambda: _cli(words[1:]))
            if program in ("python", "python3") and words[1].endswith(".py"):
                return self._in_process(command, block, lambda: _script(words[1], words[2:]))
            env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
            if words[0].startswith(".venv/bin/"):  # the virtual environment the tests run in
                words[0] = os.path.join(os.path.dirname(sys.executable), program)
            done = subprocess.run(words, capture_output=True, text=True, env=env, timeout=300)
            assert done.returncode == 0, f"{block.where}: `{command}` exited with {done.returncode}:\n{done.stderr[-3000:]}"
            return done.stdout

    def _in_process(self, command: str, block: Block, call: Any) -> str:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = call()
            except SystemExit as exit_:
                status = exit_.code
        assert status in (0, None), f"{block.where}: `{command}` exited with {status}:\n{err.getvalue()[-3000:]}"
        return out.getvalue()


def _cli(argv: list[str]) -> int:
    from trpo_tf import cli

    return cli.main(argv)


def _script(path: str, argv: list[str]) -> None:
    saved = sys.argv
    sys.argv = [path] + argv
    try:
        runpy.run_path(path, run_name="__main__")
    finally:
        sys.argv = saved


def summary_pattern(template: str) -> re.Pattern[str]:
    """A regular expression for a documented output line: ``<...>`` placeholders and numbers match any number."""
    parts = re.split(r"(<[^>]+>|-?\d[\d,]*(?:\.\d+)?)", template.strip())
    regex = "".join(r"-?[\d,]+(?:\.\d+)?|nan" if index % 2 else re.escape(part) for index, part in enumerate(parts))
    return re.compile(f"^{regex}$")
