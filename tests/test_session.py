"""How the session is built: which source wins each setting, and the Hive catalog's metastore.

The precedence rules are pure functions (no Spark); one test runs them under a real
spark-submit, where the running SparkConf is spark-submit's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recbatch.config import Config, SparkConfig, load_config
from recbatch.errors import ConfigError
from recbatch.session import build_session, catalog_dir
from recbatch.session_settings import (
    by_precedence,
    hive_settings,
    overridden_keys,
    override_message,
    recbatch_defaults,
)


def test_spark_submit_settings_win_over_recbatch_except_the_required_ones():
    wanted = {"spark.sql.shuffle.partitions": "8", "spark.sql.execution.arrow.pyspark.enabled": "true"}
    running = {"spark.sql.shuffle.partitions": "200", "spark.sql.session.timeZone": "Europe/Paris"}
    apply, forced = by_precedence(wanted, {"spark.sql.session.timeZone": "UTC"}, running)
    assert apply == {"spark.sql.execution.arrow.pyspark.enabled": "true", "spark.sql.session.timeZone": "UTC"}
    assert forced == {"spark.sql.session.timeZone": ("Europe/Paris", "UTC")}
    assert by_precedence(wanted, {"spark.sql.session.timeZone": "UTC"}, {})[1] == {}


def test_only_keys_the_config_sets_are_reported_when_spark_submit_overrides_them():
    config = SparkConfig.model_validate(
        {
            "master": "local[2]",
            "driver_memory": "4g",
            "shuffle_partitions": 8,
            "conf": {"spark.a": "1", "spark.b": "2"},
        }
    )
    running = {
        "spark.master": "yarn",
        "spark.sql.shuffle.partitions": "8",  # the same value: nothing lost
        "spark.a": "9",
        "spark.app.name": "pipeline.py",  # app_name is not set by this config: its default losing is no news
    }
    lost = overridden_keys(config, running)
    assert lost == [
        "master = 'local[2]' (spark-submit: 'yarn')",
        "driver_memory = '4g' (spark-submit: '1g')",  # Spark's default: no --driver-memory given
        "conf.'spark.a' = '1' (spark-submit: '9')",
    ]
    message = override_message(lost, {})
    assert message is not None and "\n" not in message and "--driver-memory" in message
    assert overridden_keys(SparkConfig(), running) == [] and override_message([], {}) is None


def test_conf_entries_override_recbatch_defaults_in_embedded_runs():
    settings = recbatch_defaults(
        SparkConfig(shuffle_partitions=3, conf={"spark.sql.parquet.compression.codec": "zstd"})
    )
    assert settings["spark.sql.shuffle.partitions"] == "3"
    assert settings["spark.sql.parquet.compression.codec"] == "zstd"


def test_the_embedded_metastore_goes_under_the_catalog_folder_unless_one_is_named(tmp_path):
    home = str(tmp_path / "catalog")
    derby = hive_settings(home, {})
    assert derby["spark.sql.catalogImplementation"] == "hive"
    assert derby["spark.hadoop.javax.jdo.option.ConnectionURL"] == (
        f"jdbc:derby:;databaseName={home}/metastore_db;create=true"
    )
    assert derby["spark.sql.warehouse.dir"] == f"{home}/warehouse"
    assert hive_settings(home, {"spark.sql.warehouse.dir": "/w"}).get("spark.sql.warehouse.dir") is None
    named = hive_settings(None, {"spark.hadoop.hive.metastore.uris": "thrift://ms:9083"})
    assert named == {"spark.sql.catalogImplementation": "hive"}


def test_a_catalog_table_turns_the_hive_catalog_on_under_the_workdir(tmp_path):
    workdir = str(tmp_path / "w")
    plain = load_config(None, [f'paths.workdir="{workdir}"'])
    assert catalog_dir(plain) is None
    with_table = load_config(None, [f'paths.workdir="{workdir}"', "publish.catalog_table=db.recs"])
    assert catalog_dir(with_table) == f"{workdir}/catalog"
    forced = load_config(None, [f'paths.workdir="{workdir}"', "spark.catalog=hive"])
    assert catalog_dir(forced) == f"{workdir}/catalog"


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        (["publish.catalog_table=db.recs", "spark.catalog=in-memory"], "needs a persistent catalog"),
        (["publish.catalog_table='db.recs; DROP'"], "must be [db.]name"),
        (["publish.catalog_table=a.b.c"], "must be [db.]name"),
    ],
)
def test_bad_catalog_settings_fail_before_spark_starts(overrides, complaint):
    with pytest.raises(ConfigError, match=complaint.replace("[", r"\[").replace(".", r"\.")):
        load_config(None, overrides)
    assert Config().publish.catalog_table is None


def test_a_remote_workdir_without_a_named_metastore_is_a_config_error():
    with pytest.raises(ConfigError, match="spark.hadoop.hive.metastore.uris"):
        build_session(SparkConfig(master="local[1]"), "hdfs://nn:8020/recbatch/catalog")


PROBE = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
from recbatch.config import SparkConfig
from recbatch.session import build_session
config = SparkConfig.model_validate({
    "master": "local[2]", "driver_memory": "3g", "shuffle_partitions": 5,
    "conf": {"spark.sql.adaptive.enabled": "false", "spark.sql.ansi.enabled": "false"},
})
spark = build_session(config)
spark = build_session(config)  # a second build must not repeat the warning
get = spark.conf.get
print("EFFECTIVE " + json.dumps({
    "master": spark.sparkContext.master,
    "driver_memory": spark.sparkContext.getConf().get("spark.driver.memory"),
    "shuffle": get("spark.sql.shuffle.partitions"), "adaptive": get("spark.sql.adaptive.enabled"),
    "ansi": get("spark.sql.ansi.enabled"), "tz": get("spark.sql.session.timeZone"),
    "arrow": get("spark.sql.execution.arrow.pyspark.enabled"),
    "serializer": spark.sparkContext.getConf().get("spark.serializer"),
}), flush=True)
"""


@pytest.mark.e2e
def test_under_spark_submit_its_settings_win_and_the_overridden_keys_are_named_once(tmp_path):
    submit = Path(sys.executable).parent / "spark-submit"
    assert submit.exists(), f"spark-submit not found beside {sys.executable} (pyspark ships it)"
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    conf = {
        "spark.sql.shuffle.partitions": "3",
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.session.timeZone": "Europe/Paris",
        "spark.ui.enabled": "false",
    }
    # The shipped template first (the --conf flags win over it), as a platform would pass it.
    template = Path(__file__).resolve().parents[1] / "conf" / "spark-defaults.conf"
    args = [str(submit), "--properties-file", str(template), "--master", "local[1]", "--driver-memory", "1g"]
    args += [a for key, value in conf.items() for a in ("--conf", f"{key}={value}")]
    proc = subprocess.run(
        [*args, str(script)], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    effective = json.loads(next(ln for ln in output.splitlines() if ln.startswith("EFFECTIVE "))[10:])
    assert effective == {
        "master": "local[1]",
        "driver_memory": "1g",
        "shuffle": "3",
        "adaptive": "true",
        "ansi": "false",  # not given to spark-submit: the config's value applies
        "tz": "UTC",  # required: recbatch overrides it, and says so
        "arrow": "true",
        "serializer": "org.apache.spark.serializer.KryoSerializer",  # from the template, kept
    }
    warnings = [ln for ln in output.splitlines() if "spark settings:" in ln]
    assert len(warnings) == 1, output[-3000:]
    for named in (
        "master = 'local[2]'",
        "driver_memory = '3g' (spark-submit: '1g')",
        "shuffle_partitions = '5' (spark-submit: '3')",
        "conf.'spark.sql.adaptive.enabled'",
        "spark.sql.session.timeZone='Europe/Paris' with 'UTC'",
    ):
        assert named in warnings[0], warnings[0]
    assert "ansi" not in warnings[0]
