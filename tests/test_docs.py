"""The documentation against the code: every block is run or says why not, every documented name,
argument, option and hyperparameter exists (and every option and hyperparameter is documented),
the Benchmarks page is what benchmarks/report.py makes of the results, and the README's test
command is the one CI runs. The blocks themselves run in test_docs_pages_*.py."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys

import pytest
import yaml

from docs_blocks import OTHER_LANGUAGES, ROOT, RUN_LANGUAGES, blocks, pages

ALL_BLOCKS = [block for page in pages() for block in blocks(page)]
NOT_RUN_LIMIT = 0.10


def _inline_code(text: str) -> list[str]:
    """Inline code spans of a Markdown text, outside fenced blocks."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", text)


def _text(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        return handle.read()


def test_every_block_has_a_known_language():
    unknown = [f"{block.where} ({block.language})" for block in ALL_BLOCKS
               if block.language not in RUN_LANGUAGES + OTHER_LANGUAGES]
    assert not unknown, f"code blocks in a language the docs tests neither run nor read: {unknown}"


def test_not_run_share_is_reported_and_under_ten_percent(capsys):
    code = [block for block in ALL_BLOCKS if block.language in RUN_LANGUAGES]
    not_run = [block for block in code if block.marked]
    share = len(not_run) / len(code)
    with capsys.disabled():
        print(f"\ndocs code blocks: {len(code)} ({len(code) - len(not_run)} run, {len(not_run)} marked not run: "
              f"{share:.1%}): " + ", ".join(block.where for block in not_run))
    assert len(code) >= 30, "the pages hold fewer code blocks than expected: did the parser miss some?"
    assert share < NOT_RUN_LIMIT, f"{len(not_run)} of {len(code)} blocks are not run: {[b.where for b in not_run]}"


def test_a_marker_says_why():
    for block in ALL_BLOCKS:
        if "not run" in block.code.splitlines()[0]:
            assert block.marked, f"{block.where}: a not-run marker must read '# not run by the docs tests: <why>'"


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.language == "yaml"], ids=lambda b: b.where)
def test_yaml_blocks_are_config_files_or_search_spaces(block, tmp_path):
    """A YAML block on the tuning page is a search space (trpo-tf tune --space); any other, a config file."""
    import gymnasium as gym

    from trpo_tf import TRPOConfig, presets
    from trpo_tf.tuning import space

    path = tmp_path / "config.yaml"
    path.write_text(block.code, encoding="utf-8")
    if block.path == os.path.join("docs", "tuning.md"):
        default = space.default_space(gym.spaces.Box(-1.0, 1.0, (3,)), 1)
        assert space.read_space_file(str(path), default)
        return
    fields, _ = presets.read_file(str(path))
    TRPOConfig.from_dict(fields)


def _resolve(dotted: str) -> object:
    """The module or attribute a dotted ``trpo_tf.…`` name denotes; raises when there is none."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            value: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            value = getattr(value, name)
        return value
    raise ModuleNotFoundError(dotted)


def _documented_names() -> set[str]:
    names = set()
    for page in pages():
        text = _text(page)
        names |= set(re.findall(r"\]\[(trpo_tf(?:\.\w+)+)\]", text))  # mkdocstrings cross-references
        names |= set(re.findall(r"^::: (trpo_tf(?:\.\w+)*)", text, flags=re.M))  # API reference pages
        names |= {match for span in _inline_code(text) for match in re.findall(r"\btrpo_tf(?:\.\w+)+", span)}
    return names


@pytest.mark.parametrize("name", sorted(_documented_names()))
def test_documented_names_exist(name):
    _resolve(name)


def _signature_targets() -> dict[str, object]:
    from trpo_tf import TRPO, EvalCallback, StopOnNoImprovement, StopOnReward, monitor
    from trpo_tf.export import litert_runner, rest_predict, to_onnx, to_tflite

    return {"TRPO": TRPO, "learn": TRPO.learn, "evaluate": TRPO.evaluate, "predict": TRPO.predict,
            "export": TRPO.export, "TRPO.load": TRPO.load, "load": TRPO.load, "EvalCallback": EvalCallback,
            "StopOnReward": StopOnReward, "StopOnNoImprovement": StopOnNoImprovement, "to_tflite": to_tflite,
            "to_onnx": to_onnx, "litert_runner": litert_runner, "rest_predict": rest_predict,
            "CSVLogger": monitor.CSVLogger, "ProgressBar": monitor.ProgressBar}


def _documented_calls() -> list[tuple[str, str, str]]:
    """(page, callable name, keyword) for each ``name(..., keyword=...)`` in inline code and Python blocks."""
    found = []
    for page in pages():
        text = _text(page)
        spans = _inline_code(text) + [block.code for block in blocks(page) if block.language == "python"]
        for span in spans:
            for name, arguments in re.findall(r"\b((?:TRPO\.)?\w+)\(([^()]*(?:\([^()]*\)[^()]*)*)\)", span):
                arguments = re.sub(r"\([^()]*\)|\[[^\[\]]*\]|\{[^{}]*\}", "", arguments)  # nested calls' own
                for keyword in re.findall(r"(?:^|,)\s*(\w+)=(?!=)", arguments):
                    found.append((page, name, keyword))
    return found


def test_documented_keyword_arguments_exist():
    from trpo_tf.config import field_names

    targets = _signature_targets()
    missing = []
    for page, name, keyword in _documented_calls():
        if name == "TRPOConfig" or name == "preset":
            if keyword not in field_names():
                missing.append(f"{page}: {name}({keyword}=...)")
        elif name in targets:
            if keyword not in inspect.signature(targets[name]).parameters:
                missing.append(f"{page}: {name}({keyword}=...)")
    assert not missing, f"documented keyword arguments that do not exist: {missing}"


def test_every_hyperparameter_is_documented_and_every_documented_one_exists():
    from trpo_tf.config import field_names

    table = [line for line in _text("docs/hyperparameters.md").splitlines() if line.startswith("| `")]
    documented = {name for line in table for name in re.findall(r"`(\w+)`", line.split("|")[1])}
    assert documented == set(field_names()), (f"undocumented: {sorted(set(field_names()) - documented)}; "
                                              f"no such field: {sorted(documented - set(field_names()))}")


def test_every_command_line_option_is_documented_and_every_documented_one_exists():
    from trpo_tf import cli

    parser = cli.build_parser()
    commands = next(action for action in parser._actions if action.dest == "command").choices
    rows = {re.match(r"\| `trpo-tf (\w+)", line).group(1): line for line in _text("docs/cli.md").splitlines()
            if re.match(r"\| `trpo-tf \w+", line)}
    assert set(rows) == set(commands)
    for name, subparser in commands.items():
        options = {option for action in subparser._actions for option in action.option_strings
                   if option.startswith("--") and option != "--help"}
        documented = set(re.findall(r"(--[\w-]+)", rows[name]))
        assert documented == options, f"trpo-tf {name}: undocumented {sorted(options - documented)}, " \
                                      f"no such option {sorted(documented - options)}"


def test_history_keys_documented_are_the_ones_training_records():
    import trpo_tf.trpo as trpo

    source = inspect.getsource(trpo.TRPO._iterate)
    recorded = set(re.findall(r'^\s+"(\w+)":', source, flags=re.M)) | set(trpo.QUADRATIC_MODEL_KEYS) | {
        "worker_restarts"}
    table = _text("docs/training.md").split("### The history")[1].split("## Presets")[0]
    documented = {name for line in table.splitlines() if line.startswith("| `")
                  for name in re.findall(r"`(\w+)`", line.split("|")[1])}
    assert documented == recorded, f"undocumented: {sorted(recorded - documented)}, not recorded: " \
                                   f"{sorted(documented - recorded)}"


def test_benchmarks_page_is_generated_from_the_results():
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "report.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_report_computes_the_tables_from_the_results(tmp_path):
    """The five-seed table's median and minimum are the results' own, recomputed here with the statistics module."""
    import csv
    import statistics

    with open(os.path.join(ROOT, "benchmarks", "results", "mujoco_five_seeds", "summary.csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    page = _text("docs/benchmarks.md")
    for env in sorted({row["env"] for row in rows}):
        returns = [float(row["eval_mean"]) for row in rows if row["env"] == env]
        line = next(line for line in page.splitlines() if line.startswith(f"| {env} | "))  # the first table
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[1] == f"{statistics.median(returns):,.0f}" and cells[2] == f"{min(returns):,.0f}", line


def test_readme_is_short_and_its_test_command_is_what_ci_runs():
    readme = _text("README.md")
    assert len(readme.splitlines()) <= 200
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b|\b\d\d:\d\d\b", readme), "the README holds a date or a time"
    ci = _text(".ci/run")
    command = next(line for line in ci.splitlines() if line.startswith("python3 -m venv"))
    assert command in readme, f"the README does not show the test command CI runs:\n{command}"
    assert command in _text("docs/getting-started.md")


def test_mkdocs_nav_lists_every_page():
    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as handle:
        config = yaml.load(handle, Loader=yaml.SafeLoader)

    def listed(nav: object) -> set[str]:
        if isinstance(nav, str):
            return {nav}
        if isinstance(nav, dict):
            return set().union(*(listed(value) for value in nav.values()))
        return set().union(*(listed(item) for item in nav)) if isinstance(nav, list) else set()

    in_nav = listed(config["nav"])
    on_disk = {os.path.relpath(page, "docs") for page in pages() if page.startswith("docs/")
               and not page.startswith("docs/generated/")}
    assert on_disk == in_nav, f"not in the nav: {sorted(on_disk - in_nav)}; missing pages: {sorted(in_nav - on_disk)}"


# The API reference is generated from docstrings: every public class, function and method of every module
# under trpo_tf/ says what each of its arguments is.
METHODS_OF_FRAMEWORKS = {"call", "build", "get_config", "serialize", "deserialize"}  # Keras and TF document these


def _docstring_gaps(path: str) -> list[str]:
    import ast

    gaps = []

    def arguments(node: ast.FunctionDef) -> list[str]:
        return [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                if a.arg not in ("self", "cls")]

    def visit(node: ast.AST, prefix: str, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.ClassDef)) or child.name.startswith("_"):
                continue
            doc = ast.get_docstring(child) or ""
            name = prefix + child.name
            if isinstance(child, ast.ClassDef):
                init = next((c for c in child.body if isinstance(c, ast.FunctionDef) and c.name == "__init__"), None)
                text = doc + (ast.get_docstring(init) or "" if init else "")
                if not doc:
                    gaps.append(f"{name}: no docstring")
                elif init is not None:
                    gaps.extend(f"{name}: argument {arg!r} not described" for arg in arguments(init)
                                if arg != "kwargs" and not re.search(rf"\b{arg}\b", text))
                visit(child, name + ".", True)
            elif not (in_class and child.name in METHODS_OF_FRAMEWORKS):
                if not doc:
                    gaps.append(f"{name}: no docstring")
                else:
                    gaps.extend(f"{name}: argument {arg!r} not described" for arg in arguments(child)
                                if not re.search(rf"\b{arg}\b", doc))

    with open(path, encoding="utf-8") as handle:
        visit(ast.parse(handle.read()), "", False)
    return gaps


def _documented_modules() -> list[str]:
    found = []
    for folder, _, names in os.walk(os.path.join(ROOT, "trpo_tf")):
        relative = os.path.relpath(folder, ROOT)
        found += [os.path.join(relative, name) for name in sorted(names) if name.endswith(".py")]
    return sorted(found)


@pytest.mark.parametrize("path", _documented_modules())
def test_public_docstrings_describe_every_argument(path):
    gaps = _docstring_gaps(os.path.join(ROOT, path))
    assert not gaps, f"{path}: " + "; ".join(gaps)
