"""Shipping recbatch to a cluster: the wheel, the `--py-files` zip and a packed executor environment.

    python -m recbatch.ops.ship --out dist        (what `make dist` runs)

    dist/recbatch-<version>-py3-none-any.whl   the package, with jobs/ and conf/ as shared data
                                               (installed under <prefix>/share/recbatch/; `recbatch paths`)
    dist/recbatch.zip                          the package only, for --py-files (importable from the zip)
    dist/recbatch-env.tar.gz                   a small venv for executors, for --archives ...#env

Executors only run what scoring and the pre-flight check import in Python workers
(recbatch.score.blocks/engine/user_files/fallback/candidates, recbatch.core, recbatch.storage):
numpy, pyarrow, pandas (pyspark's Arrow serializers) and recbatch itself, plus the redis
client where the driver has it (the Redis export writes from executors). TensorFlow trains
on the driver, so the executor environment leaves it out: a fresh venv gets the worker
packages at the driver's exact versions (the pre-flight check compares them) and the wheel
with --no-deps, and venv-pack packs it. venv-pack links the venv to its base interpreter,
so executors need the same Python at the same path (or use an image that has it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

# What Python workers import (see the module docstring); pinned to the driver's versions.
WORKER_PACKAGES = ("numpy", "pyarrow", "pandas")
# Shipped too where installed beside the driver: export.formats = ["redis"] writes from executors.
OPTIONAL_WORKER_PACKAGES = ("redis",)
ENV_NAME = "recbatch-env.tar.gz"
ZIP_NAME = "recbatch.zip"
# A fixed timestamp keeps the zip's bytes the same for the same sources.
_ZIP_TIME = (2026, 1, 1, 0, 0, 0)
# Test suites and C headers are never imported on executors: 55 MB of the 336 MB unpacked.
_EXCLUDE = [("exclude", "*/tests/*"), ("exclude", "*/pyarrow/include/*")]


def package_dir() -> Path:
    """The folder of the recbatch package this process imports."""
    import recbatch

    return Path(recbatch.__file__).resolve().parent


def resource_dirs() -> dict[str, Path]:
    """Where the spark-submit entry points (`jobs`) and the shipped configs (`conf`) live.

    A checkout (or an editable install) has them beside the package; an installed wheel
    has them as shared data under `<prefix>/share/recbatch/`, found through the wheel's
    RECORD so --user and --prefix installs resolve too.
    """
    checkout = package_dir().parent
    if (checkout / "jobs" / "pipeline.py").is_file() and (checkout / "conf" / "default.toml").is_file():
        return {"package": package_dir(), "jobs": checkout / "jobs", "conf": checkout / "conf"}
    found = {"package": package_dir()}
    try:
        files = metadata.distribution("recbatch").files or []
    except metadata.PackageNotFoundError:
        files = []
    for file in files:
        parts = Path(str(file)).parts
        if "share" in parts and parts[-2] in ("jobs", "conf") and parts[-3:-2] == ("recbatch",):
            found.setdefault(parts[-2], Path(str(file.locate())).resolve().parent)
    return found


def worker_requirements() -> list[str]:
    """`name==version` of each worker package, as installed beside this interpreter."""
    pins = [f"{name}=={metadata.version(name)}" for name in WORKER_PACKAGES]
    for name in OPTIONAL_WORKER_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            pins.append(f"{name}=={metadata.version(name)}")
    return pins


def build_wheel(source: Path, out: Path) -> Path:
    """Build recbatch's wheel from the checkout at `source` into `out`; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("recbatch-*.whl"):
        old.unlink()
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(source), "-w", str(out)])
    wheels = sorted(out.glob("recbatch-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one recbatch wheel in {out}, found {[w.name for w in wheels]}")
    return wheels[0]


def build_zip(out: Path) -> Path:
    """`out/recbatch.zip`: the package's Python sources only, importable from the zip."""
    root = package_dir()
    out.mkdir(parents=True, exist_ok=True)
    target = out / ZIP_NAME
    sources = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for source in sources:
            info = zipfile.ZipInfo(str(source.relative_to(root.parent)), _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, source.read_bytes())
    os.replace(tmp, target)
    return target


def build_executor_env(wheel: Path | None, out: Path, requirements: list[str] | None = None) -> Path:
    """Pack a fresh venv with the worker packages (and the wheel, --no-deps) into `out`.

    `wheel` None packs the dependencies only (recbatch then travels as --py-files alone).
    Pip's cache is used as usual, so a rebuild downloads nothing new.
    """
    import venv_pack

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="recbatch-env-") as tmp:
        env = Path(tmp) / "env"
        # No pip inside: this interpreter's pip installs into it (--python), so executors
        # get no installer they do not need and the build skips ensurepip.
        _run([_base_python(), "-m", "venv", "--without-pip", str(env)])
        pip = [sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install"]
        pip += ["--quiet", "--disable-pip-version-check"]
        _run([*pip, *(requirements or worker_requirements())])
        if wheel is not None:
            _run([*pip, "--no-deps", str(wheel)])
        venv_pack.pack(prefix=str(env), output=str(out), force=True, compress_level=1, filters=_EXCLUDE)
    out.chmod(0o644)  # venv-pack writes 0600; a cluster's upload step may run as another user
    return out


def _base_python() -> str:
    """The interpreter this venv was made from: the packed venv links to it, as executors will."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return str(Path(base).resolve())


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    """Build the wheel, the zip and (unless --no-env) the executor environment; print their sizes."""
    parser = argparse.ArgumentParser(prog="python -m recbatch.ops.ship", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("dist"), help="output folder (default: dist)")
    parser.add_argument("--source", type=Path, default=package_dir().parent, help="the checkout to build")
    parser.add_argument("--no-env", action="store_true", help="skip the packed executor environment")
    args = parser.parse_args(argv)
    built = [build_wheel(args.source, args.out), build_zip(args.out)]
    if not args.no_env:
        built.append(build_executor_env(built[0], args.out / ENV_NAME))
    for path in built:
        print(f"{path}  {path.stat().st_size / 2**20:,.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
