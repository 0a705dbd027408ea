"""The package as an index would carry it: `python -m build` makes a wheel and an sdist that `twine check`
accepts; the wheel holds the package and its presets (not benchmark results, shipped policies or tests);
and installed into a fresh virtual environment it answers `trpo-tf --help` and trains CartPole for two
iterations.

The fresh environment resolves the wheel's dependencies against the packages this test runs with, which
a path file puts on its sys.path (pip sees them as installed, so nothing is downloaded and
`--no-index` keeps it so): installing TensorFlow, Ray and the rest again would take minutes and
gigabytes in CI. The trpo_tf it imports is the wheel's own, which the test checks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = sorted(name for name in os.listdir(os.path.join(ROOT, "trpo_tf", "presets")) if name.endswith(".yaml"))
LEFT_OUT = ("benchmarks/", "savedmodels/", "tests/", "docs/", "examples/")


def _run(command: list[str], cwd: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), ROOT], cwd=str(out))
    files = {name.rsplit(".", 1)[-1] if name.endswith(".whl") else "sdist": str(out / name) for name in os.listdir(out)}
    assert set(files) == {"whl", "sdist"}, files
    return files


def test_twine_check_passes(dist):
    done = _run([sys.executable, "-m", "twine", "check", "--strict", dist["whl"], dist["sdist"]], cwd=ROOT)
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_wheel_carries_the_package_and_its_presets_only(dist):
    names = zipfile.ZipFile(dist["whl"]).namelist()
    assert [f"trpo_tf/presets/{name}" for name in PRESETS] == sorted(n for n in names if n.endswith(".yaml"))
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "trpo_tf/trpo.py" in names and "trpo_tf/export/saved_model.py" in names
    assert not [name for name in names if name.startswith(LEFT_OUT) or name.endswith((".pb", ".csv", ".png"))]


def test_sdist_carries_license_changelog_and_presets_not_results(dist):
    with tarfile.open(dist["sdist"]) as archive:
        names = ["/".join(name.split("/")[1:]) for name in archive.getnames()]
    assert {"LICENSE", "CHANGELOG.md", "README.md", "setup.cfg", "pyproject.toml"} <= set(names)
    assert all(f"trpo_tf/presets/{name}" in names for name in PRESETS)
    assert not [name for name in names if name.startswith(LEFT_OUT)]


def test_wheel_installs_into_a_fresh_venv_and_trains(dist, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=str(tmp_path))
    python = str(venv / "bin" / "python")
    fresh_site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                      cwd=str(tmp_path)).stdout.strip()
    with open(os.path.join(fresh_site, "test-environment-packages.pth"), "w", encoding="utf-8") as handle:
        handle.write(sysconfig.get_paths()["purelib"] + "\n")  # only a path: its .pth files (the editable trpo_tf) stay unread
    _run([python, "-m", "pip", "install", "--no-index", "--no-cache-dir", "--quiet", dist["whl"]], cwd=str(tmp_path))

    where = _run([python, "-c", "import trpo_tf; print(trpo_tf.__file__)"], cwd=str(tmp_path)).stdout.strip()
    assert where.startswith(fresh_site), f"imported trpo_tf from {where}, not from the wheel installed in {fresh_site}"
    trpo_tf = str(venv / "bin" / "trpo-tf")
    assert "train" in _run([trpo_tf, "--help"], cwd=str(tmp_path)).stdout
    done = _run([trpo_tf, "train", "CartPole-v1", "--timesteps", "4096", "--logdir", "run"], cwd=str(tmp_path))
    first, *_, last = done.stdout.strip().splitlines()
    assert "(config: preset CartPole-v1)" in first, first  # the preset, read from the installed package
    assert last.startswith("CartPole-v1: 4,096 timesteps, 2 iterations"), last
