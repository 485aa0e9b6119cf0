"""`recbatch bench train`: the shipped `mf` model beside Spark ALS on the same prepared split.

For each size, synthetic events (the generator's Zipf item popularity and taste clusters;
users = events/40, items = events/1000) go through `recbatch prepare` once. Then, as child
processes each, so their memory is their own:

- `recbatch train` with the shipped [train] defaults: wall time and peak RSS of its process tree
  (Python and JVM); from the split model's manifest the fit seconds (epochs under early stopping
  on the validation carve of train, each with its validation pass, then the refit on train for
  the best epoch count), the epochs, the best epoch and validation NDCG@10 (`final_fit =
  "train"`: the production refit on every interaction would repeat the best epochs once more);
- Spark ALS (implicit, the shipped [als] settings at the same rank) fitted on the same
  validation carve of the same train split (`recbatch.core.validation.carve_validation`) and
  scored by the same NDCG@10 code: wall, fit seconds (fit plus collecting the factors), peak RSS.

The ratio quoted is mf's fit seconds over ALS's. ALS has the [als] settings recbatch ships
for its baseline; the bench session gives its JVM `--als-memory` (4g: at 10M ratings the
1g default spills or fails) so it is not measured starved.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from recbatch.bench.harness import measure_command, printed_report, synthetic_events, write_bench_config

RUN_DATE = "2026-01-02"
SAMPLE_SECONDS = 0.5
RESULT = "RESULT "


def _prepared(events: int, workdir: Path, cores: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """The synthetic events prepared under `workdir` (kept when the same size was prepared there);
    the config and prepare's report."""
    report = workdir / "work" / "runs" / f"dt={RUN_DATE}" / "prepared" / "report.json"
    marker = workdir / "prepared-events.json"
    config = write_bench_config(
        workdir,
        workdir / "events",  # where synthetic_events writes them
        cores,
        '\n[evaluate]\nbaselines = ["popularity"]\n\n'
        # The fit compared with ALS's is the split fit; the production refit on everything
        # after it repeats the best epochs on 1/(1 - test share) more rows, for ALS too.
        '[train]\nfinal_fit = "train"\n',
    )
    if report.is_file() and marker.is_file() and json.loads(marker.read_text())["events"] == events:
        return config, json.loads(report.read_text())
    synthetic_events(events, workdir, events // 40, events // 1000, max(1, min(8, events // 1_000_000)), seed)
    log = workdir / "prepare.log"
    done = measure_command(
        [sys.executable, "-m", "recbatch", "prepare", "--config", str(config), "--date", RUN_DATE], log
    )
    if done["rc"] != 0:
        raise RuntimeError(f"recbatch prepare failed (rc {done['rc']}), see {log}")
    marker.write_text(json.dumps({"events": events}), encoding="utf-8")
    return config, json.loads(report.read_text())


def _train_mf(config: Path, workdir: Path) -> dict[str, Any]:
    from recbatch.config import load_config
    from recbatch.pipeline import layout_for

    log = workdir / "train.log"
    done = measure_command(
        [sys.executable, "-m", "recbatch", "train", "--config", str(config), "--date", RUN_DATE],
        log,
        SAMPLE_SECONDS,
    )
    if done["rc"] != 0:
        raise RuntimeError(f"recbatch train failed (rc {done['rc']}), see {log}")
    layout = layout_for(load_config(config), RUN_DATE)
    # With final_fit "train" the published model is the split fit: early stopping on the
    # validation carve, then the refit on train for the best epoch count.
    split = json.loads(Path(str(layout.model_manifest)).read_text())
    history = split["history"]
    epochs = len(history.get("loss", [])) + len(history.get("refit_loss", []))
    seconds = float(split["train_seconds"])
    return {
        "wall_s": done["wall_s"],
        "peak_rss_mib": done["peak_rss_mib"],
        "fit_s": round(seconds, 2),
        "epochs": epochs,
        "best_epoch": split["best_epoch"],
        "s_per_epoch": round(seconds / max(1, epochs), 2),
        "examples_per_s": round(split["examples_per_epoch"] * epochs / seconds),
        "val_ndcg@10": round(float(split["validation_ndcg"]), 4),
        "loss": split["loss"],
        "rank": split["config"]["train"]["embedding_dim"],
    }


def _fit_als(config: Path, workdir: Path, memory: str) -> dict[str, Any]:
    log = workdir / "als.log"
    code = "import sys; from recbatch.bench.train import als_child; als_child(*sys.argv[1:])"
    done = measure_command([sys.executable, "-c", code, str(config), memory], log, SAMPLE_SECONDS)
    line = next((ln for ln in done["tail"].splitlines() if ln.startswith(RESULT)), None)
    if done["rc"] != 0 or line is None:
        raise RuntimeError(f"the Spark ALS fit failed (rc {done['rc']}), see {log}")
    return {"wall_s": done["wall_s"], "peak_rss_mib": done["peak_rss_mib"], **json.loads(line[len(RESULT) :])}


def als_child(config_path: str, memory: str) -> None:
    """In a child process: fit ALS on the validation carve of the prepared train split; print RESULT json."""
    from recbatch.config import load_config
    from recbatch.core.ranking import DotScorer
    from recbatch.core.validation import scorer_ndcg
    from recbatch.evaluate.als import checkpoints_in, factor_matrix, fit_als, validation_fit_rows
    from recbatch.pipeline import layout_for
    from recbatch.session import build_session
    from recbatch.storage import count_rows

    config = load_config(config_path)
    layout = layout_for(config, RUN_DATE)
    spark = build_session(config.spark.model_copy(update={"driver_memory": memory, "log_level": "ERROR"}))
    num_users, num_items = count_rows(layout.user_vocab), count_rows(layout.item_vocab)
    params = config.als.model_copy(update={"rank": config.train.embedding_dim})
    with checkpoints_in(spark, str(layout.tmp_dir / "bench-als-checkpoints")):
        split, fit_rows = validation_fit_rows(spark, Path(str(layout.train)), num_users)
        fit_rows = fit_rows.cache()
        rows = fit_rows.count()  # the anti-join is input, not fit: done before the clock starts
        started = time.perf_counter()
        model = fit_als(spark, fit_rows, params)
        users = factor_matrix(model.userFactors, num_users, params.rank)
        items = factor_matrix(model.itemFactors, num_items, params.rank)
        fit_s = time.perf_counter() - started
    ndcg = scorer_ndcg(DotScorer(users, items), split, num_users, 10)
    result = {
        "fit_s": round(fit_s, 2),
        "iterations": params.max_iter,
        "s_per_iteration": round(fit_s / params.max_iter, 2),
        "ratings_per_s": round(rows * params.max_iter / fit_s),
        "val_ndcg@10": round(float(ndcg), 4),
        "rank": params.rank,
        "fit_rows": rows,
    }
    print(RESULT + json.dumps(result), flush=True)


def run_bench(sizes: list[int], workdir: Path, cores: int, als_memory: str, seed: int = 7) -> dict[str, Any]:
    """Both fits at each size under `workdir/<events>`; the results dict (written by the caller)."""
    results: dict[str, Any] = {"cores": cores, "als_memory": als_memory, "sizes": []}
    for events in sizes:
        folder = workdir / str(events)
        folder.mkdir(parents=True, exist_ok=True)
        config, report = _prepared(events, folder, cores, seed)
        mf, als = _train_mf(config, folder), _fit_als(config, folder, als_memory)
        results["sizes"].append(
            {
                "events": events,
                "interactions": report["interactions"],
                "users": report["users"],
                "items": report["items"],
                "mf": mf,
                "als": als,
                "fit_ratio_mf_over_als": round(mf["fit_s"] / als["fit_s"], 2),
            }
        )
    return results


def _summary(results: dict[str, Any]) -> list[str]:
    return [
        f"{s['interactions']:,} interactions: mf fit {s['mf']['fit_s']:.0f} s = "
        f"{s['fit_ratio_mf_over_als']}x ALS's {s['als']['fit_s']:.0f} s; validation NDCG@10 "
        f"mf {s['mf']['val_ndcg@10']:.4f}, ALS {s['als']['val_ndcg@10']:.4f}"
        for s in results["sizes"]
    ]


def format_report(results: dict[str, Any]) -> str:
    """The markdown table of results.json: a row per size and model."""
    lines = [
        f"# bench train ({results['cores']} cores, load {', '.join(f'{x:.2f}' for x in results['load_average'])})",
        "",
        "| interactions | users × items | model | fit s | s/epoch (iteration) | epochs | val NDCG@10 | "
        "wall s | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results["sizes"]:
        mf, als = s["mf"], s["als"]
        shape = f"{s['users']:,} × {s['items']:,}"
        lines.append(
            f"| {s['interactions']:,} | {shape} | mf (rank {mf['rank']}, {mf['loss']}) | {mf['fit_s']:.1f} | "
            f"{mf['s_per_epoch']} | {mf['epochs']} (best {mf['best_epoch']}) | {mf['val_ndcg@10']:.4f} | "
            f"{mf['wall_s']} | {mf['peak_rss_mib']:.0f} |"
        )
        lines.append(
            f"| | | Spark ALS (rank {als['rank']}, implicit) | {als['fit_s']:.1f} | {als['s_per_iteration']} | "
            f"{als['iterations']} | {als['val_ndcg@10']:.4f} | {als['wall_s']} | {als['peak_rss_mib']:.0f} |"
        )
    lines += ["", *(f"- {line}" for line in results["summary"]), ""]
    return "\n".join(lines)


def bench_train(sizes: list[int], workdir: Path, cores: int, als_memory: str) -> str:
    """Run the benchmark, write results.json and report.md under `workdir`; return the report."""
    workdir.mkdir(parents=True, exist_ok=True)
    return printed_report(workdir, run_bench(sizes, workdir, cores, als_memory), _summary, format_report)
