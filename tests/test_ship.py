"""Shipping: the --py-files zip imports on a Python without recbatch, the wheel carries jobs/ and conf/.

The packed executor environment is built and used by tests/cluster/test_standalone.py.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recbatch.cli import app
from recbatch.ops import ship
from tests.conftest import REPO


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A venv of the base interpreter with no packages at all (no recbatch, no pip)."""
    env = tmp_path_factory.mktemp("bare") / "env"
    subprocess.run([ship._base_python(), "-m", "venv", "--without-pip", str(env)], check=True)
    return env / "bin" / "python"


def _python(python: Path, code: str, *path: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-c", f"import sys; sys.path[:0] = {list(path)!r}\n{code}"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd=python.parent,  # not the checkout: its recbatch/ would be importable from the cwd
        check=False,
    )


def test_the_zip_holds_the_package_only_and_imports_where_recbatch_is_not_installed(tmp_path, bare_python):
    zipped = ship.build_zip(tmp_path)
    names = zipfile.ZipFile(zipped).namelist()
    assert "recbatch/__init__.py" in names and "recbatch/score/blocks.py" in names
    assert all(n.startswith("recbatch/") and n.endswith(".py") for n in names)
    assert _python(bare_python, "import recbatch").returncode != 0  # nothing installed there
    # What executors import without numpy present: the storage seam's module and the pre-flight probe.
    done = _python(
        bare_python, "import recbatch.ops.preflight, recbatch; print(recbatch.__file__)", str(zipped)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{zipped}/recbatch/__init__.py"


def test_the_zip_is_the_same_bytes_for_the_same_sources(tmp_path):
    first = ship.build_zip(tmp_path / "a").read_bytes()
    assert ship.build_zip(tmp_path / "b").read_bytes() == first


@pytest.mark.slow
def test_the_wheel_installs_jobs_and_conf_where_recbatch_paths_finds_them(tmp_path, bare_python):
    wheel = ship.build_wheel(REPO, tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    data = f"recbatch-{wheel.name.split('-')[1]}.data/data/share/recbatch"
    assert f"{data}/jobs/pipeline.py" in names and f"{data}/conf/default.toml" in names
    target = tmp_path / "prefix"
    subprocess.run([ship._base_python(), "-m", "venv", "--without-pip", str(target)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install", "--quiet"]
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, capture_output=True)
    code = "from recbatch.ops.ship import resource_dirs; print(sorted(resource_dirs().items()))"
    done = _python(target / "bin" / "python", code)
    assert done.returncode == 0, done.stderr
    found = dict(eval(done.stdout, {"PosixPath": Path}))
    assert found["jobs"] == target.resolve() / "share" / "recbatch" / "jobs"
    assert (found["jobs"] / "pipeline.py").is_file() and (found["conf"] / "default.toml").is_file()


def test_recbatch_paths_prints_the_checkout_folders():
    result = CliRunner().invoke(app, ["paths"])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.output.splitlines()[1:])
    assert Path(lines["jobs"]) == REPO / "jobs" and Path(lines["conf"]) == REPO / "conf"


def test_executor_requirements_pin_the_drivers_versions():
    from importlib.metadata import version

    pins = ship.worker_requirements()
    assert pins[:3] == [f"{n}=={version(n)}" for n in ("numpy", "pyarrow", "pandas")]
    assert not any(p.startswith(("tensorflow", "keras", "pyspark")) for p in pins)
