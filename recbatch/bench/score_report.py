"""The summary and Markdown report of `recbatch bench score`: median pairs/s per contender and
the ratios the README quotes (vs ALS, vs the TF single-process ceiling, vs the best ceiling)."""

from __future__ import annotations

from typing import Any

from recbatch.bench.harness import MIB, median

CEILINGS = ("tf", "tf-mask", "numpy", "recbatch-1p")


def summarise(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Median pairs/s per contender and the ratios the issue's targets are stated in."""
    rates = {}
    for name, got in results["contenders"].items():
        if "seconds" in got:
            rates[name] = got["pairs"] / median(got["seconds"])
    ceiling = max((rates[n] for n in CEILINGS if n in rates), default=None)
    table = {}
    for name, rate in rates.items():
        row = {"pairs_per_s": rate, "median_s": median(results["contenders"][name]["seconds"])}
        if "als" in rates:
            row["vs_als"] = rate / rates["als"]
        if ceiling:
            row["vs_best_single_process"] = rate / ceiling
        if "tf" in rates:
            row["vs_tf"] = rate / rates["tf"]
        table[name] = row
    return table


def format_report(results: dict[str, Any]) -> str:
    """A Markdown table of the results, with the plan, exactness and worker memory."""
    spec, plan, table = results["spec"], results["plan"], summarise(results)
    lines = [
        f"scoring benchmark: {spec['users']:,} users x {spec['items']:,} items, d={spec['dim']}, K={spec['k']}, "
        f"{spec['seen_per_user']} seen items/user, {results['cores']} cores, median of {spec['runs']} runs "
        "after a warm-up",
        "",
        "| contender | pairs/s | median s | vs ALS | vs TF 1-process | vs best 1-process |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in table.items():
        cells = [
            f"{row.get(c, float('nan')):.2f}x" if c in row else "-"
            for c in ("vs_als", "vs_tf", "vs_best_single_process")
        ]
        lines.append(
            f"| {name} | {row['pairs_per_s'] / 1e6:,.1f} M | {row['median_s']:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    for name, got in results["contenders"].items():
        if "error" in got:
            lines.append(f"| {name} | failed: {got['error'][:80]} | | | | |")
    lines.append("")
    mine = results["contenders"].get("recbatch")
    if mine:
        lines += _recbatch_lines(mine, plan)
    for name in CEILINGS:
        got = results["contenders"].get(name, {})
        if "maxrss_bytes" in got:
            lines.append(
                f"{name}: process peak RSS {got['maxrss_bytes'] / MIB:,.0f} MiB, "
                f"{got.get('exact_users')}/{got.get('sampled_users')} users identical to brute force"
            )
    return "\n".join(lines) + "\n"


def _recbatch_lines(mine: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    """recbatch's plan and worker memory against its target, exactness and rerun identity."""
    lines = []
    peak = mine["worker_peak_rss_bytes"]
    limit = plan["item_bytes"] + 256 * MIB
    lines.append(
        f"recbatch plan: block {plan['user_block']} users, tile {plan['item_tile']} items, "
        f"{plan['partitions']} partitions, users by {plan['user_input']}, items by {plan['item_transport']}; "
        f"peak Python worker RSS {peak / MIB:,.0f} MiB (target <= item factors + 256 MiB = "
        f"{limit / MIB:,.0f} MiB: {'met' if peak <= limit else 'NOT met'})"
    )
    lines.append(
        f"exact: {mine['exact_users']}/{mine['sampled_users']} sampled users identical to numpy brute force"
    )
    rerun = mine.get("rerun")
    if rerun:
        lines.append(
            f"rerun: scored twice to Parquet, {rerun['rows']:,} rows "
            f"{'identical' if rerun['rows_identical'] else 'DIFFERENT'}, {rerun['part_files']} part files "
            f"{'byte-identical' if rerun['files_byte_identical'] else 'NOT byte-identical'}"
        )
    return lines
