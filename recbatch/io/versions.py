"""A published table's versions and the commit log that makes one of them current, on any storage.

    <table>/.versions/dt=<date>/<version>/     immutable: part files, then _manifest.json last
    <table>/_commits/dt=<date>/<seq>.json      one small object per publish or rollback, never rewritten
    <table>/dt=<date> -> .versions/...         plain local paths only: a symlink view of the current version
    <table>/_latest -> dt=<newest date>        (the same view)

The current version of a date is the one the highest-numbered commit names, as in table
formats (Iceberg, Delta): a commit object appears whole (an object store's completed put,
or a local/HDFS file moved into place), so a reader resolving it sees the old version or
the new one. Commits are written under the work directory's lock, so sequence numbers do
not race. The symlink view exists for readers that point Spark at `<table>` or
`<table>/dt=<date>` on a local disk; it is refreshed after each commit and never needed.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

from recbatch.core.files import parquet_content_sha256_stream, sha256_stream
from recbatch.errors import DataError, PipelineError
from recbatch.storage import Location

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
COMMITS = "_commits"
VERSIONS = ".versions"
LATEST = "_latest"
_STAMP = "%Y%m%dT%H%M%S%f"


def new_version(run_id: str, now: datetime | None = None) -> str:
    """A fresh version name: the run id and the UTC time (run ids repeat on reruns; versions never do)."""
    return f"{run_id}-{(now or datetime.now(UTC)):{_STAMP}}"


def version_time(version: str) -> datetime | None:
    """When a version was started, from its name (None for names not made by new_version)."""
    try:
        return datetime.strptime(version.rsplit("-", 1)[1], _STAMP).replace(tzinfo=UTC)
    except (IndexError, ValueError):
        return None


def version_dir(table_dir: Location, date: str, version: str) -> Location:
    return table_dir / VERSIONS / f"dt={date}" / version


def commits(table_dir: Location, date: str) -> list[dict[str, Any]]:
    """The commit log of one date, oldest first (empty when the date was never published)."""
    log_dir = table_dir / COMMITS / f"dt={date}"
    found = []
    for entry in log_dir.iterdir():
        if entry.name.endswith(".json") and entry.name[:-5].isdigit():
            try:
                found.append({"seq": int(entry.name[:-5]), **json.loads(entry.read_text())})
            except (OSError, ValueError) as exc:
                raise PipelineError(
                    f"commit {entry} is unreadable ({exc}); restore it or remove it"
                ) from None
    return sorted(found, key=lambda c: c["seq"])


def current_version(table_dir: Location, date: str) -> str | None:
    """The version the date's newest commit names, or None."""
    log_ = commits(table_dir, date)
    return str(log_[-1]["version"]) if log_ else None


def published_dates(table_dir: Location) -> list[str]:
    """Dates with at least one commit, sorted."""
    return sorted(
        d.name.split("=", 1)[1]
        for d in (table_dir / COMMITS).iterdir()
        if d.name.startswith("dt=") and any(e.name.endswith(".json") for e in d.iterdir())
    )


def baseline(table_dir: Location, date: str) -> tuple[str, str] | None:
    """(date, version) a new version of `date` is judged against: the date's current version, else the
    current version of the newest earlier date; None on a table's first publish."""
    current = current_version(table_dir, date)
    if current is not None:
        return date, current
    earlier = [d for d in published_dates(table_dir) if d < date]
    if not earlier:
        return None
    return earlier[-1], current_version(table_dir, earlier[-1])  # type: ignore[return-value]


def commit(table_dir: Location, date: str, version: str, action: str, **extra: Any) -> dict[str, Any]:
    """Make `version` current for `date` with one new commit object; returns the commit.

    The version must be complete (its manifest written). Callers hold the workdir lock.
    """
    target = version_dir(table_dir, date, version)
    if not (target / MANIFEST).is_file():
        raise PipelineError(
            f"version {target} has no {MANIFEST}: it is incomplete and cannot be made current"
        )
    log_ = commits(table_dir, date)
    seq = log_[-1]["seq"] + 1 if log_ else 1
    entry = {
        "version": version,
        "date": date,
        "action": action,
        "previous": log_[-1]["version"] if log_ else None,
        "committed_at": datetime.now(UTC).isoformat(),
        **extra,
    }
    if not (table_dir / COMMITS / f"dt={date}" / f"{seq:08d}.json").create_new(json.dumps(entry).encode()):
        raise PipelineError(
            f"commit {seq} of {table_dir} dt={date} already exists: is another publish running?"
        )
    if table_dir.is_posix:
        refresh_views(table_dir)
    return {"seq": seq, **entry}


def resolve(root: Location, table: str, date: str | None) -> Location:
    """The current version folder of `date` (default: the newest published date); DataError when none."""
    table_dir = root / table
    if date is None:
        dates = published_dates(table_dir)
        date = dates[-1] if dates else None
    version = current_version(table_dir, date) if date else None
    if version is None and date and table_dir.is_posix:
        legacy = table_dir.local_path / f"dt={date}"  # published before the commit log existed
        if legacy.is_symlink() and legacy.exists():
            return table_dir / os.readlink(legacy)
    if version is None:
        when = f"date {date}" if date else "any date"
        raise DataError(
            f"no published version of table {table!r} for {when} under {root}; run `recbatch score` first"
        )
    return version_dir(table_dir, date, version)  # type: ignore[arg-type]


def _swap_link(link: Location, target: str) -> None:
    path = link.local_path
    if path.exists() and not path.is_symlink():
        raise PipelineError(f"{path} is a real directory, not a publish view; move it away and rerun")
    tmp = path.with_name(f".{path.name}.swap")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, path)


def refresh_views(table_dir: Location) -> None:
    """Point the local symlink view (`dt=<date>`, `_latest`) at what the commit log says is current."""
    dates = published_dates(table_dir)
    for date in dates:
        target = os.path.join(VERSIONS, f"dt={date}", current_version(table_dir, date) or "")
        link = table_dir.local_path / f"dt={date}"
        if not link.is_symlink() or os.readlink(link) != target:
            _swap_link(table_dir / f"dt={date}", target)
    if dates:
        latest = table_dir.local_path / LATEST
        if not latest.is_symlink() or os.readlink(latest) != f"dt={dates[-1]}":
            _swap_link(table_dir / LATEST, f"dt={dates[-1]}")


def check_view(table_dir: Location, date: str) -> None:
    """Refuse to publish where a real folder sits in the view's place (it would shadow the table)."""
    if table_dir.is_posix:
        path = table_dir.local_path / f"dt={date}"
        if path.exists() and not path.is_symlink():
            raise PipelineError(f"{path} is a real directory, not a publish view; move it away and rerun")


def _created_at(version: Location) -> str:
    try:
        return str(json.loads((version / MANIFEST).read_text())["created_at"])
    except (OSError, ValueError, KeyError):
        stamp = version_time(version.name)
        return stamp.isoformat() if stamp else ""


def prune(table_dir: Location, date: str, keep: int) -> list[str]:
    """Remove all but the newest `keep` complete versions of a date; never the current one."""
    current = current_version(table_dir, date)
    done = [v for v in (table_dir / VERSIONS / f"dt={date}").iterdir() if (v / MANIFEST).is_file()]
    done.sort(key=lambda v: (_created_at(v), v.name), reverse=True)
    removed = []
    for version in done[keep:]:
        if version.name != current:
            version.delete()
            removed.append(version.name)
    return removed


def remove_orphans(table_dir: Location, before: datetime) -> list[str]:
    """Remove versions no commit names (of any date) that were started before `before`.

    A publish killed mid-write leaves a version without a manifest, and one killed (or
    refused by the gate) between its manifest and its commit leaves a complete version
    nothing will ever serve: up to a whole table each. Publishing runs under the workdir
    lock, so a version started before this publish belongs to no live writer. Older
    `.staging` folders (the layout before versions were written in place) go the same way.
    """
    removed = []
    for folder in (table_dir / VERSIONS).glob("dt=*"):
        named = {c["version"] for c in commits(table_dir, folder.name.split("=", 1)[1])}
        if not named and table_dir.is_posix and (table_dir.local_path / folder.name).is_symlink():
            continue  # published before the commit log existed: its symlink names the version
        for version in folder.iterdir():
            started = version_time(version.name.removesuffix(".staging"))
            if version.name not in named and started is not None and started < before:
                version.delete()
                removed.append(f"{folder.name}/{version.name}")
    if removed:
        log.warning(
            "publish: removed %d version(s) no commit names, left by killed runs: %s", len(removed), removed
        )
    return removed


def tidy_parts(version_dir: Location, version: str) -> list[dict[str, Any]]:
    """Give part files stable names, drop Hadoop's .crc side files, and checksum the parts.

    `sha256` covers the whole file; `content_sha256` only its pages, which stays equal for
    the same data written by another JVM (core.files.parquet_content_sha256_stream). On
    object stores, where a rename is a copy, Spark's own part names are kept.
    """
    for crc in version_dir.glob(".*.crc"):
        crc.delete()
    files = []
    for i, part in enumerate(version_dir.glob("part-*")):
        target = part
        if not version_dir.is_object_store:
            target = version_dir / f"part-{i:05d}-{version}{part.name[part.name.index('.') :]}"
            part.move_to(target)
        size = target.size()
        with target.open_input() as handle:
            whole = sha256_stream(handle)
            content = parquet_content_sha256_stream(handle, size, str(target))
        files.append({"path": target.name, "bytes": size, "sha256": whole, "content_sha256": content})
    return files
