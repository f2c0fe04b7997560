"""``gravity merge OUT SHARD_DIRS...``: the run folders of ``--shard I/N`` runs joined into the
run folder one process would have made with the same config.

Each shard's pairs and rejects are in record-id order, so a merge of the 2N files by record id
gives the one-process order with flat memory. Only the duplicate check spans readers: a pair
whose texts a pair of an earlier record (in another shard) already holds becomes a
``duplicate_pair`` reject, and a shard's duplicate rejects name the first record overall. The
shards' stores are copied into the merged folder's store, so a later run of the same config in
it reads every completion back.

Shards are taken in the order of the index each recorded (``shard: I/N`` in its config.yaml),
whatever the order of the arguments. Refused, each with one line naming the folder or file:
``OUT`` that is, is inside or holds a shard folder; a missing, repeated or unfinished shard;
shards whose configs or inputs differ; a row without a record id, a file not in record-id
order, a record in two shards; and a request two stores answered with different completions.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gravity.errors import GravityError
from gravity.io import file_error, jsonl_file_records, load_yaml_model, settle_commit
from gravity.lock import folder_lock
from gravity.store import Store
from gravity.synth.config import GenerateConfig
from gravity.synth.output import PairIndex, RunWriter, Tally, parse_shard

STORE_NAME = "store.sqlite"
META_KEYS = ("record_id", "user_id", "item_id", "task", "task_digest", "country", "facet", "mode")
INTENT_KEYS = ("intent", "intent_source", "intent_rejected")
_SAME_AS = re.compile(r"^same texts as (.+)$")


def shard_config(folders: list[Path]) -> tuple[GenerateConfig, list[Path], int]:
    """The config the shards share (``shard`` unset), the folders in the order of the shard
    index each recorded, and the number of shards; an error naming the folder when one is not
    a finished shard run, the shards' configs differ, or a shard is missing or twice."""
    if not folders:
        raise GravityError("merge: no shard folders given")
    configs: dict[int, tuple[Path, GenerateConfig]] = {}
    count = None
    for folder in folders:
        if folder.is_dir():
            settle_commit(folder)  # a finish a killed run left half done: completed first
        for name in ("config.yaml", "summary.json", "pairs.jsonl", "rejects.jsonl"):
            if not (folder / name).is_file():
                raise GravityError(f"{folder}: no {name}: not a finished `gravity generate` run")
        cfg = load_yaml_model(folder / "config.yaml", GenerateConfig)
        shard = parse_shard(cfg.shard)
        if shard is None:
            raise GravityError(f"{folder}/config.yaml: shard: null; not a --shard I/N run")
        if count is not None and shard[1] != count:
            raise GravityError(f"{folder}/config.yaml: shard: {cfg.shard}, others of {count}")
        count = shard[1]
        if shard[0] in configs:
            raise GravityError(f"{folder}: shard {cfg.shard} again (also {configs[shard[0]][0]})")
        configs[shard[0]] = (folder, cfg)
    assert count is not None
    missing = sorted(set(range(count)) - set(configs))
    if missing:
        raise GravityError(f"merge: shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing")
    ordered = [configs[i] for i in range(count)]
    base = ordered[0][1].model_copy(update={"shard": None})
    for folder, cfg in ordered:
        mine, first = _comparable(cfg), _comparable(base)
        if mine != first:
            differ = [k for k in first if mine.get(k) != first[k]]
            raise GravityError(
                f"{folder}/config.yaml: {', '.join(differ)}: differs from shard 0's config"
            )
    return base, [folder for folder, _ in ordered], count


def check_out(out: Path, folders: list[Path]) -> None:
    """Refuse an ``out`` that is, is inside or holds one of the shard ``folders``: the merge
    would write over a shard it reads, or into one."""
    target = Path(out).resolve()
    for folder in folders:
        shard = Path(folder).resolve()
        how = (
            "is"
            if target == shard
            else "is inside"
            if shard in target.parents
            else "holds"
            if target in shard.parents
            else None
        )
        if how is not None:
            raise GravityError(
                f"{out}: {how} the shard folder {folder}; merge into a folder of its own"
            )


PER_MACHINE = {"shard", "chunk_readers"}
"""Settings a shard may choose for its own machine: they never change the output (chunking is
output-independent; see ``Synthesizer.run``)."""
PER_MACHINE_BACKEND = {
    "base_urls",
    "api_key_env",
    "concurrency",
    "timeout_s",
    "max_retries",
    "batch_size",
    "gpu_memory_utilization",
}
"""Backend settings of the same kind: which servers, how many requests in flight, how long to
wait (a request's answer does not depend on its batch: tests/test_seeds.py)."""


def _comparable(cfg: GenerateConfig) -> dict[str, Any]:
    """The config without the settings each shard may set for its machine."""
    data = cfg.model_dump(mode="json", exclude=PER_MACHINE)
    backend = data.get("backend")
    if isinstance(backend, dict):
        data["backend"] = {k: v for k, v in backend.items() if k not in PER_MACHINE_BACKEND}
    return data


def check_inputs(folders: list[Path], summaries: list[dict[str, Any]]) -> None:
    """Refuse shards that read different readers, catalogs or intent graphs (their configs can
    match while their profile files or catalog contents differ): one line naming the folder."""
    first = summaries[0].get("inputs")
    for folder, summary in zip(folders, summaries):
        inputs = summary.get("inputs")
        if inputs is None or first is None:
            raise GravityError(
                f"{folder}/summary.json: inputs: not recorded (a run made before shards recorded "
                "their inputs); rerun the shard"
            )
        differ = [k for k in first if inputs.get(k) != first[k]]
        if differ:
            raise GravityError(
                f"{folder}/summary.json: inputs.{differ[0]}: differs from {folders[0]}'s "
                "(every shard must read the same profile files, catalog and intent graph)"
            )


Row = tuple[str, int, dict[str, Any], str, Path]  # record id, kind, row, shard, file


def _rows(path: Path, kind: int, shard: str) -> Iterator[Row]:
    """The rows of a shard's pairs (kind 0) or rejects (kind 1) file, checked: each with a
    record id, in record-id order (what the merge of the files relies on)."""
    previous = None
    for record in jsonl_file_records(path):
        if record.problem is not None:
            raise record.problem
        data = record.data
        record_id = data.get("record_id") if isinstance(data, dict) else None
        if not isinstance(record_id, str) or not record_id:
            raise file_error(
                path, "missing (not a file `gravity generate` wrote?)", record.line, "record_id"
            )
        if previous is not None and record_id <= previous:
            raise file_error(
                path,
                f"{record_id} after {previous}: not in record-id order (not a file "
                "`gravity generate` wrote?)",
                record.line,
                "record_id",
            )
        previous = record_id
        yield record_id, kind, data, shard, path


def merge_runs(out: Path, folders: list[Path]) -> dict[str, Any]:
    """Join the shard run ``folders`` (any order) into the run folder ``out``; returns its
    summary."""
    start = time.monotonic()
    folders = [Path(f) for f in folders]
    check_out(Path(out), folders)
    cfg, folders, count = shard_config(folders)
    labels = [f"{i}/{count}" for i in range(count)]
    summaries = [json.loads((f / "summary.json").read_text(encoding="utf-8")) for f in folders]
    check_inputs(folders, summaries)
    with folder_lock(out, "output folder"):
        writer = RunWriter(out)
        try:
            tally = _merge_records(folders, labels, writer)
            summary = _summary(cfg, tally, summaries, time.monotonic() - start)
            _merge_stores(out / STORE_NAME, [(f / STORE_NAME, i) for f, i in zip(folders, labels)])
            writer.commit(cfg, summary)
        except BaseException:
            writer.discard()
            raise
    return summary


def _merge_records(folders: list[Path], labels: list[str], writer: RunWriter) -> Tally:
    """Every shard's pairs (kind 0) and rejects (kind 1) in record-id order into ``writer``,
    the duplicate check redone across shards; a record id in two places is refused."""
    streams = [
        _rows(f / name, kind, label)
        for f, label in zip(folders, labels)
        for kind, name in enumerate(("pairs.jsonl", "rejects.jsonl"))
    ]
    tally, index = Tally(), PairIndex()
    renamed: dict[str, str] = {}  # a shard's kept pair -> the earlier record with its texts
    last: Row | None = None
    try:
        for item in heapq.merge(*streams, key=lambda t: t[0]):
            record_id, kind, row, _, _ = item
            if last is not None and last[0] == record_id:
                raise GravityError(
                    f"merge: record_id: {record_id} is in shard {last[3]} ({last[4]}) and "
                    f"{item[3]} ({item[4]}): a record belongs to one shard"
                )
            last = item
            if kind == 0:
                first = index.first(
                    row["chosen"][0]["content"], row["rejected"][0]["content"], record_id
                )
                if first is None:
                    _add(tally, writer, [row], [])
                    continue
                renamed[record_id] = first
                meta = {k: row[k] for k in (*META_KEYS, *INTENT_KEYS) if k in row}
                row = {**meta, "reason": "duplicate_pair", "detail": f"same texts as {first}"}
            elif row.get("reason") == "duplicate_pair":
                match = _SAME_AS.match(row.get("detail", ""))
                if match and match.group(1) in renamed:
                    row = {**row, "detail": f"same texts as {renamed[match.group(1)]}"}
            _add(tally, writer, [], [row])
    finally:
        index.close()
    return tally


def _add(tally: Tally, writer: RunWriter, records: list, rejects: list) -> None:
    tally.add(len(records) + len(rejects), records, rejects)
    writer.write(records, rejects)


def _summary(
    cfg: GenerateConfig, tally: Tally, shards: list[dict[str, Any]], wall: float
) -> dict[str, Any]:
    """The merged run's summary: counts from the merged records, tokens and calls summed over
    the shards, the wall time the longest shard's plus the merge's."""
    if tally.rows_in != sum(s["rows_in"] for s in shards):
        raise GravityError(
            f"merge: {tally.rows_in} rows in the shards' files, "
            f"{sum(s['rows_in'] for s in shards)} in their summaries"
        )
    tokens: Counter[str] = Counter()
    for s in shards:
        tokens.update(s.get("tokens_generated", {}))
        tally.sources.update(s.get("item_selection", {}))
    summary = tally.summary_of(
        cfg,
        dict(tokens),
        sum(s.get("llm_calls", 0) for s in shards),
        shards[0].get("model", {}),
        sum(s.get("outputs_trimmed_at_sentence", 0) for s in shards),
        max(s.get("wall_time_s", 0) for s in shards) + wall,
    )
    if any("by_intent" in s for s in shards):
        summary["by_intent"] = dict(sorted(tally.intents.items()))
    judges = [s["naive_judge"] for s in shards if "naive_judge" in s]
    if judges:
        summary["naive_judge"] = {"method": judges[0]["method"]} | {
            k: sum(j[k] for j in judges) for k in judges[0] if k != "method"
        }
    summary["inputs"] = shards[0]["inputs"]  # the same in every shard (check_inputs)
    summary["merged_shards"] = len(shards)
    return summary


VALUE_COLUMNS = (
    "fingerprint",
    "request",
    "text",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
)
"""A stored completion's columns but its key and the time it was stored: two stores holding a
key must agree on all of them."""


def _merge_stores(target: Path, sources: list[tuple[Path, str]]) -> None:
    """Every completion of the shards' stores (``(path, shard)``, those that exist) in
    ``target``, one shard at a time. A key that a shard's store holds with another completion
    than the merged store (an earlier shard's, or one ``target`` held before) is refused,
    naming both stores: ``INSERT OR IGNORE`` would keep one answer silently, and the merged
    folder would not be the one-process run. The earlier shards' completions stay in
    ``target`` then (each the answer its shard stored)."""
    Store(target).close()  # creates it with the schema
    differs = " OR ".join(f"m.{c} IS NOT s.{c}" for c in VALUE_COLUMNS)
    conn = sqlite3.connect(target, timeout=60)
    merged: list[tuple[Path, str]] = []
    try:
        for source, shard in sources:
            if not source.is_file():
                continue
            conn.execute("ATTACH DATABASE ? AS shard", (str(source),))
            try:
                clash = conn.execute(
                    "SELECT s.key FROM shard.completions AS s JOIN main.completions AS m "
                    f"ON m.key = s.key WHERE {differs} LIMIT 1"
                ).fetchone()
                if clash is not None:
                    raise GravityError(_clash(clash[0], source, shard, merged, target))
                with conn:
                    conn.execute(
                        "INSERT OR IGNORE INTO main.completions SELECT * FROM shard.completions"
                    )
            finally:
                conn.execute("DETACH DATABASE shard")
            merged.append((source, shard))
    finally:
        conn.close()


def _clash(key: str, source: Path, shard: str, merged: list[tuple[Path, str]], target: Path) -> str:
    """The one-line refusal of a key ``source`` holds with another completion than the merged
    store, naming the store it came from (an earlier shard's, or the merged folder's own)."""
    where = f"{source} (shard {shard}): completion {key} differs from the one in"
    for other, label in merged:
        with contextlib.closing(sqlite3.connect(other, timeout=60)) as conn:
            if conn.execute("SELECT 1 FROM completions WHERE key = ?", (key,)).fetchone():
                return (
                    f"merge: {where} {other} (shard {label}); the same request was answered "
                    "twice with other texts (a server that does not honour seeds?): rerun one "
                    "of the shards from an empty store"
                )
    return (
        f"merge: {where} {target} (the merged folder's store); remove that store or merge "
        "into a new folder"
    )
