"""The package's layering, read from its source: no import cycle, and each layer imports only those below it."""

from __future__ import annotations

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "trpo_tf")


def module_imports() -> dict[str, set[str]]:
    """trpo_tf module → the modules it imports anywhere in its file (``if TYPE_CHECKING:`` blocks left out)."""
    modules = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                modules[dotted.removesuffix(".__init__")] = path
    imports: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(open(path, encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        imports[module] = found
    return imports


IMPORTS = module_imports()


def top_level_imports(module: str) -> set[str]:
    """The modules ``module`` imports when it is imported: outside function bodies (and TYPE_CHECKING blocks)."""
    path = os.path.join(os.path.dirname(PACKAGE), *module.split(".")) + ".py"
    if not os.path.exists(path):
        path = os.path.join(path[:-3], "__init__.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                found.add(child.module)
            visit(child)

    visit(tree)
    return found


def ours(module: str) -> set[str]:
    """The trpo_tf modules ``module`` imports (a package counts as its __init__)."""
    return {name for name in IMPORTS[module] if name in IMPORTS and name != module}


def test_no_import_cycle():
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for other in sorted(ours(module)):
            assert state.get(other) != 1, f"import cycle: {' → '.join(path[path.index(other):] + [other])}"
            if other not in state:
                visit(other, path + [other])
        state[module] = 2

    for module in sorted(IMPORTS):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("module, forbidden", [
    ("trpo_tf.trust_region", "trpo_tf"),            # the maths imports nothing of ours
    ("trpo_tf.advantages", "trpo_tf"),
    ("trpo_tf.policies", "trpo_tf.update"),         # policies know no algorithm
    ("trpo_tf.policies", "trpo_tf.trpo"),
    ("trpo_tf.policies", "trpo_tf.sampling"),
    ("trpo_tf.policies.acting", "tensorflow"),      # a snapshot acts in any process with NumPy alone
    ("trpo_tf.policies.acting", "keras"),
    ("trpo_tf.sampling", "tensorflow"),             # sampling knows no TensorFlow
    ("trpo_tf.sampling", "trpo_tf.policies"),
    ("trpo_tf.export", "trpo_tf.trpo"),             # export knows only trained models
    ("trpo_tf.checkpoint", "pickle"),               # checkpoints serialize; only the sampler unpickles
    ("trpo_tf.callbacks", "trpo_tf.trpo"),          # callbacks use the agent's public methods only
    ("trpo_tf", "trpo_tf.cli"),                     # nothing imports the CLI
    ("trpo_tf.trpo", "trpo_tf.sampling.workers"),   # the loop knows the sampler protocol, not its backends
    ("trpo_tf.trpo", "trpo_tf.sampling.in_process"),
    ("trpo_tf.trpo", "trpo_tf.sampling.processes"),
    ("trpo_tf.trpo", "trpo_tf.sampling.ray_actors"),
])
def test_layers_import_only_what_is_below_them(module, forbidden):
    offenders = sorted(name for name, imported in IMPORTS.items()
                       if (name == module or name.startswith(module + ".")) and name != "trpo_tf.cli"
                       and any(i == forbidden or i.startswith(forbidden + ".") for i in imported - {name}))
    assert offenders == [], f"{offenders} import {forbidden}"


@pytest.mark.parametrize("package", ["trpo_tf.policies.distributions", "trpo_tf.policies.encoders"])
def test_distributions_and_encoders_import_tensorflow_only_inside_their_tensorflow_side(package):
    """Each module is imported by acting processes (unpickled snapshots), which must stay TensorFlow-free."""
    modules = sorted(name for name in IMPORTS if name == package or name.startswith(package + "."))
    assert len(modules) >= 5
    for module in modules:
        heavy = {name for name in top_level_imports(module)
                 if name.split(".")[0] in {"tensorflow", "tensorflow_probability", "keras"}}
        assert heavy == set(), f"{module} imports {sorted(heavy)} when imported"
