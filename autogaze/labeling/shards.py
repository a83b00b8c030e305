"""Resumable label output: one append-only JSONL part file per shard, merged once at the end.

Layout next to the output file ``OUT`` (e.g. ``gazing_labels.json``)::

    OUT.parts/manifest.json               settings the parts were made with (checked on restart)
    OUT.parts/shard-00003-of-00008.jsonl  one line per finished clip: {"key", "gazing_pos", "task_losses"}
                                          (+ "candidate_pos", "candidate_losses" with --top-candidates)

A clip's line is written, flushed and fsync'ed as soon as the clip is done, so a kill loses at most
the clip in flight. A restart reads *every* part file (whatever sharding wrote it) and skips the
clips found there; a half-written last line is cut off before appending. Once every clip of the
split has a line, the parts are merged into ``OUT`` with the datasets' atomic label writer.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from autogaze.utils.parsing import ConfigError


def parts_dir(out: str | os.PathLike) -> Path:
    return Path(str(out) + ".parts")


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}.jsonl"


def check_manifest(directory: Path, settings: dict) -> None:
    """Write ``manifest.json`` on first use; on restart, refuse parts made with other settings
    (mixing them would give a label file whose clips disagree on budgets or weights)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "manifest.json"
    if not path.exists():
        # Shards start together and may all get here: each writes its own temp file (a shared
        # name made one shard's rename fail), and the check below catches a shard whose settings
        # differ from the one that renamed last.
        tmp = directory / f"manifest.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(settings, indent=1, sort_keys=True))
        os.replace(tmp, path)
    old = json.loads(path.read_text())
    if old != settings:
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        raise ConfigError(str(path), diff, "the existing part files were made with other settings",
                          f"rerun with the same settings, or delete {directory} to start over")


def read_parts(directory: Path) -> dict[str, dict]:
    """Every finished clip in ``directory``'s part files: key -> its label entry (every field but "key").

    Lines that do not parse (a write cut by a kill) are ignored; a clip found twice (two runs
    with different sharding) keeps its first line; the greedy search is deterministic, so both agree.
    """
    done: dict[str, dict] = {}
    for part in sorted(directory.glob("shard-*.jsonl")):
        for line in part.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            key = row.pop("key")
            done.setdefault(key, row)
    return done


class PartWriter:
    """Appends finished clips to one shard's part file, durably."""

    def __init__(self, path: Path):
        self.path = path
        _cut_partial_line(path)
        self._f = open(path, "a", encoding="utf-8")

    def write(self, key: str, labels: dict) -> None:
        self._f.write(json.dumps({"key": key, **labels}) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())  # the clip counts as done only once it is on disk

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cut_partial_line(path: Path) -> None:
    """Truncate ``path`` after its last newline, so new lines never glue onto a half-written one."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # 0 when there is no complete line
    if end != len(data):
        with open(path, "r+b") as f:
            f.truncate(end)


def merge(directory: Path, keys: list[str], out: str | os.PathLike, write_labels) -> list[str]:
    """Write ``out`` from the parts when every key of ``keys`` is done; return the missing keys.

    ``write_labels(path, mapping)`` is the datasets' atomic writer (it validates the mapping).
    """
    done = read_parts(directory)
    missing = [k for k in keys if k not in done]
    if not missing:
        write_labels(out, {k: done[k] for k in keys})
    return missing
