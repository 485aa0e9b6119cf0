"""The embedded driver JVM: its tuning profile and the class-data archive it starts from.

The archive is checked on real JVMs: classes do load from it (the JVM's own class-load log
says so), a session without it loads none from it, and a truncated archive, which would crash
every JVM that maps it, is never installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recbatch.ops import jvm_cache
from recbatch.session_settings import (
    SHORT_RUN_MAX_INPUT_BYTES,
    driver_java_options,
    jvm_profile,
)


def test_auto_picks_short_run_only_for_a_small_local_input_on_a_local_master():
    small, big = 10 << 20, SHORT_RUN_MAX_INPUT_BYTES + 1
    assert jvm_profile("auto", "local[*]", small) == "short-run"
    assert jvm_profile("auto", "local[*]", big) == "long-run"
    assert jvm_profile("auto", "local[2]", None) == "long-run"  # remote input: size unknown
    assert jvm_profile("auto", "spark://h:7077", small) == "long-run"
    assert jvm_profile("long-run", "local[1]", small) == "long-run"
    assert jvm_profile("short-run", "yarn", big) == "short-run"


def test_driver_options_put_the_users_own_last_and_never_read_and_write_an_archive_at_once():
    options = driver_java_options("short-run", "/c/a.jsa", None, "-XX:+UseG1GC -Dx=1")
    assert options is not None
    assert options.startswith("-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:SharedArchiveFile=/c/a.jsa")
    assert options.endswith("-XX:+UseG1GC -Dx=1")  # the JVM takes the last of a repeated flag
    dumping = driver_java_options("long-run", "/c/a.jsa", "/tmp/new.jsa", None)
    assert dumping == "-XX:ArchiveClassesAtExit=/tmp/new.jsa"
    assert driver_java_options("long-run", None, None, None) is None


PROBE = """
import sys
from recbatch.config import SparkConfig
from recbatch.session import build_session
spark = build_session(SparkConfig(
    master="local[1]", class_cache=sys.argv[2] == "on",
    conf={"spark.driver.extraJavaOptions": f"-Xlog:class+load=info:file={sys.argv[1]} "
          f"-Xlog:cds=info,class+path=info:file={sys.argv[1]}.cds"},
), input_bytes=1000)
assert spark.range(100).selectExpr("sum(id)").first()[0] == 4950
"""


def _classes_from_archive(tmp_path: Path, cache: str) -> int:
    log = tmp_path / f"classes-{cache}.log"
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    done = subprocess.run(
        [sys.executable, str(probe), str(log), cache], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return sum("shared objects file (top)" in line for line in log.read_text().splitlines())


def _why_unmapped(tmp_path: Path) -> str:
    """The JVM's own account of why it did not map the archive (its cds and class+path log)."""
    lines = (tmp_path / "classes-on.log.cds").read_text().splitlines()
    return "\n".join(line[:400] for line in lines if "mismatch" in line or "rror" in line or "fail" in line)


@pytest.mark.e2e
def test_sessions_load_their_classes_from_the_archive_and_a_truncated_one_is_never_installed(
    tmp_path, monkeypatch
):
    archive = jvm_cache.usable_archive()
    if archive is None:  # `make test` builds it first (make jvm-cache); a bare pytest builds it here
        archive = str(jvm_cache.build_archive()[0])
    assert _classes_from_archive(tmp_path, "on") > 2000, _why_unmapped(tmp_path)
    assert _classes_from_archive(tmp_path, "off") == 0

    monkeypatch.setenv(jvm_cache.CACHE_ENV, str(tmp_path / "cache"))
    truncated = tmp_path / "truncated.jsa"
    with open(archive, "rb") as whole, open(truncated, "wb") as part:
        part.write(whole.read(2 << 20))
    dead = subprocess.Popen(["true"])
    dead.wait()
    with pytest.raises(RuntimeError, match="unreadable"):
        jvm_cache.install_archive(truncated, dead.pid)
    assert list(Path.cwd().glob("hs_err_pid*.log")) == []  # the crash report stays beside the archive
    assert jvm_cache.usable_archive() is None and not os.path.exists(tmp_path / "cache" / "jvm")


def test_the_archive_is_keyed_by_the_classpath_and_none_is_built_beside_a_folder_with_files(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(jvm_cache.CACHE_ENV, str(tmp_path / "cache"))
    conf = tmp_path / "spark-conf"
    monkeypatch.setenv("SPARK_CONF_DIR", str(conf))
    absent = jvm_cache.archive_path()
    conf.mkdir()
    empty = jvm_cache.archive_path()
    assert absent != empty  # the JVM drops an absent entry from the classpath it records
    assert jvm_cache.archive_path("/opt/extra.jar") != empty
    empty.parent.mkdir(parents=True)
    empty.write_bytes(b"an archive")
    assert jvm_cache.usable_archive() == str(empty)

    (conf / "spark-defaults.conf").write_text("spark.ui.enabled false\n")
    assert jvm_cache.unarchivable_folder() == str(conf) and jvm_cache.usable_archive() is None
    with pytest.raises(RuntimeError, match="spark-conf is on Spark's classpath and holds files"):
        jvm_cache.build_archive()
