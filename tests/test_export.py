"""Export formats round-trip, the split is by reader, the card is complete, the swap is atomic,
and the hub upload gets the token from the environment only (the upload itself needs a network)."""

from __future__ import annotations

import json
import random

import pytest
from datasets import load_dataset, load_from_disk

from gravity.errors import GravityError
from gravity.export import export_run, read_pairs
from gravity.preference import load_preference_data


@pytest.fixture(scope="module")
def run_dir(pair_export):
    return pair_export.parent / "run"


@pytest.mark.parametrize("fmt", ["hf", "parquet", "jsonl"])
def test_formats_round_trip(run_dir, tmp_path, fmt):
    out = tmp_path / fmt
    stats = export_run(run_dir, out, fmt, test_size=0.25, seed=3)
    rows = read_pairs(run_dir)
    if fmt == "hf":
        dd = load_from_disk(str(out))
        splits = {k: dd[k].to_list() for k in dd}
    else:
        ext = "parquet" if fmt == "parquet" else "json"
        files = {k: str(out / f"{k}.{'parquet' if fmt == 'parquet' else 'jsonl'}") for k in stats}
        splits = {
            k: load_dataset(ext, data_files=f, split="train").to_list() for k, f in files.items()
        }
    got = sorted(
        (r["record_id"], r["chosen"][0]["content"]) for part in splits.values() for r in part
    )
    assert got == sorted((r["record_id"], r["chosen"][0]["content"]) for r in rows)
    train_users = {r["user_id"] for r in splits["train"]}
    test_users = {r["user_id"] for r in splits["test"]}
    assert train_users and test_users and train_users.isdisjoint(test_users)
    assert load_preference_data(out).num_rows == stats["train"]["pairs"]


def test_card_and_seeded_split(run_dir, tmp_path):
    a = export_run(run_dir, tmp_path / "a", "jsonl", test_size=0.5, seed=1)
    b = export_run(run_dir, tmp_path / "b", "jsonl", test_size=0.5, seed=1)
    assert a == b
    card = (tmp_path / "a" / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\n")
    for text in (
        "## Pairs per country",
        "## Pairs per facet",
        "## Generation config",
        "- `scripted:fake`",
        "rows in =",
    ):
        assert text in card, text


def test_export_is_atomic(run_dir, tmp_path, monkeypatch):
    out = tmp_path / "data"
    export_run(run_dir, out, "jsonl")
    before = (out / "train.jsonl").read_text()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("gravity.export.dataset_card", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_run(run_dir, out, "jsonl", seed=9)
    assert (out / "train.jsonl").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_runs(tmp_path):
    with pytest.raises(GravityError, match="no pairs.jsonl"):
        export_run(tmp_path, tmp_path / "o")
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"prompt": []}) + "\n")
    with pytest.raises(GravityError, match="missing field"):
        export_run(tmp_path, tmp_path / "o")
    with pytest.raises(GravityError, match="unknown format 'csv'"):
        export_run(tmp_path, tmp_path / "o", "csv")


def test_push_to_hub_uses_env_token_only(run_dir, tmp_path, monkeypatch):
    import huggingface_hub
    from datasets import DatasetDict

    calls = {}
    monkeypatch.setattr(
        DatasetDict,
        "push_to_hub",
        lambda self, repo, private, token: calls.update(repo=repo, private=private, token=token),
    )
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "upload_file",
        lambda self, **kw: calls.update(upload=kw, api_token=self.token),
    )
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(GravityError, match="HF_TOKEN"):
        export_run(run_dir, tmp_path / "o", push_to_hub="me/pairs")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_123")
    export_run(run_dir, tmp_path / "o", push_to_hub="me/pairs", private=True)
    assert (
        calls["repo"] == "me/pairs"
        and calls["private"] is True
        and calls["token"] == "hf_secret_123"
    )
    assert calls["upload"]["path_in_repo"] == "README.md" and calls["api_token"] == "hf_secret_123"
    assert all(
        "hf_secret" not in p.read_text(errors="ignore")
        for p in (tmp_path / "o").rglob("*")
        if p.is_file()
    )


def test_exported_folder_keeps_the_umask(run_dir, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        export_run(run_dir, tmp_path / "out", "jsonl", test_size=0.25, seed=0)
    finally:
        os.umask(old)
    # Built in a temporary folder and renamed into place: the folder must still be readable by
    # the group and others, as `mkdir` would make it (a plain mkdtemp gives 0700).
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


def test_export_streams_and_types_columns_as_from_list(run_dir, tmp_path, monkeypatch):
    """Records are read line by line (never the whole file: no size limit) and each split is
    built on disk with the features ``Dataset.from_list`` would infer from all its records,
    even when a column is null in the first thousand rows and text later."""
    from datasets import Dataset

    rows = read_pairs(run_dir)
    many = []
    for k in range(1500):
        row = dict(rows[k % len(rows)], record_id=f"r{k:05d}", user_id=f"u{k % 40:03d}")
        row["scenario"] = None if k < 1200 else f"scenario {k}"
        row["seed"] = 0.5 if k == 1400 else 0  # an int column that turns float
        many.append(row)
    run = tmp_path / "big"
    run.mkdir()
    (run / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in many))

    def whole_file(*args, **kwargs):
        raise AssertionError("pairs.jsonl read whole")

    monkeypatch.setattr("gravity.io.read_text", whole_file)
    stats = export_run(run, tmp_path / "hf", "hf", test_size=0.25, seed=0)
    dd = load_from_disk(str(tmp_path / "hf"))
    assert sum(s["pairs"] for s in stats.values()) == 1500
    for name in dd:
        users = set(dd[name]["user_id"])
        part = [r for r in many if r["user_id"] in users]
        assert dd[name].features == Dataset.from_list(part).features
        assert dd[name].to_list() == Dataset.from_list(part).to_list()


def test_a_bad_record_at_the_end_writes_nothing(run_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    text = (run_dir / "pairs.jsonl").read_text()
    (run / "pairs.jsonl").write_text(text + '{"prompt": [], "chosen": 3}\n')
    line = text.count("\n") + 1
    with pytest.raises(GravityError, match=rf"pairs.jsonl:{line}"):
        export_run(run, tmp_path / "out", "jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def _first_line(text: str) -> str:
    return text.splitlines(keepends=True)[0]


def _non_text_reader(text: str) -> str:
    return json.dumps(dict(json.loads(text.splitlines()[0]), user_id=7)) + "\n"


@pytest.mark.parametrize(
    "replacement",
    [
        _first_line,  # a valid record: only the file's identity tells
        _non_text_reader,  # records that were never checked: routing them may crash
        lambda text: "not json\n",
        lambda text: "[1, 2]\n",
        lambda text: "{}\n",
        lambda text: '{"user_id": "u", "item_id": [1]}\n',
    ],
)
def test_a_pairs_file_replaced_during_export_is_refused(
    run_dir, tmp_path, monkeypatch, replacement
):
    """Export checks pairs.jsonl, then reads it again to route records: a run finishing in the
    folder between the two reads (its file renamed into place) is refused in one line, and
    nothing is written, rather than exporting records that were never checked (or crashing on
    them)."""
    import os
    import shutil

    import gravity.export

    folder = tmp_path / "run"
    shutil.copytree(run_dir, folder)
    route = gravity.export._route

    def swapped(path, *args):
        other = path.with_name("other.jsonl")
        other.write_text(replacement(path.read_text()))
        os.replace(other, path)
        return route(path, *args)

    monkeypatch.setattr(gravity.export, "_route", swapped)
    with pytest.raises(GravityError, match="changed while it was exported") as err:
        export_run(folder, tmp_path / "data", "jsonl")
    assert len(str(err.value).splitlines()) == 1
    assert not (tmp_path / "data").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


HOSTILE_IDS = [
    "a", "A", "B", "10", "9", "é", "e\u0301", "\u00ff", "\u0100", "\ud7ff", "\ue000",
    "\uffff", "\U00010000", "\U0001d518", "\U0010ffff", "\x00x", "x\x00", "z" * 300, "読者",
    " a", "a ", "\t", "NaN", "null",
]  # fmt: skip


@pytest.mark.parametrize("test_size", [0.0, 0.2, 0.5, 0.99])
@pytest.mark.parametrize(("seed", "batch"), [(0, 10_000), (7, 10_000), (0, 3), (7, 7)])
def test_the_on_disk_split_chooses_the_readers_that_sorting_in_memory_would(
    tmp_path, monkeypatch, test_size, seed, batch
):
    """``gravity export`` keeps its readers in SQLite, not in memory, and must still choose
    the test readers ``test_readers`` chooses (a seeded shuffle of the sorted ids): ids that
    sort differently as bytes, case, code units or code points (astral characters, NULs,
    combining marks), readers whose records are not together, and random ids; in batches and
    pages of 10,000 (one page here) and of 3 or 7 (many: a reader lost between batches or a page
    ranked off by one would show)."""
    from gravity.export import _ReaderIndex, test_readers

    monkeypatch.setattr(_ReaderIndex, "BATCH", batch)

    rng = random.Random(seed)
    ids = list(HOSTILE_IDS)
    for _ in range(3000):
        ids.append(
            "".join(
                chr(rng.choice([rng.randrange(32, 0xD800), rng.randrange(0xE000, 0x110000)]))
                for _ in range(rng.randrange(1, 4))
            )
        )
    stream = ids + rng.sample(ids, len(ids))  # every reader twice, apart
    with _ReaderIndex(tmp_path / "r.sqlite") as index:
        for user in stream:
            index.add(user)
        index.split(test_size, seed)
        want = test_readers(set(ids), test_size, seed)
        assert index.readers == len(set(ids)) and index.tests == len(want)
        assert {u for u in set(ids) if u in index} == want
        assert [u in index for u in stream] == [u in want for u in stream]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_the_on_disk_split_of_one_two_or_three_readers(tmp_path, n):
    from gravity.export import _ReaderIndex, test_readers

    readers = ["c", "a", "b"][:n]
    for test_size in (0.0, 0.1, 0.5, 0.9):
        with _ReaderIndex(tmp_path / f"{n}-{test_size}.sqlite") as index:
            for user in readers:
                index.add(user)
            index.split(test_size, 0)
            assert {u for u in readers if u in index} == test_readers(readers, test_size, 0)


def test_bad_input_leaves_no_folder_for_the_output(run_dir, tmp_path):
    """A record that fails its check stops the export before anything is written beside the
    output: not even the output's parent folders are created."""
    run = tmp_path / "run"
    run.mkdir()
    text = (run_dir / "pairs.jsonl").read_text()
    bad = dict(json.loads(text.splitlines()[0]), user_id=5)
    (run / "pairs.jsonl").write_text(text + json.dumps(bad) + "\n")
    with pytest.raises(GravityError, match="user_id"):
        export_run(run, tmp_path / "new" / "sub" / "data", "jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_failing_reader_index_is_one_line_naming_its_file(run_dir, tmp_path, monkeypatch):
    import sqlite3

    from gravity.export import _ReaderIndex

    def full(self, table):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(_ReaderIndex, "_insert", full)
    with pytest.raises(GravityError, match=r"readers\.sqlite: .*disk is full") as err:
        export_run(run_dir, tmp_path / "data", "jsonl")
    assert len(str(err.value).splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """The system temp folder, for the export's index of readers: a folder of the test's."""
    import tempfile

    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_the_readers_index_leaves_nothing_in_the_temp_folder(run_dir, tmp_path, scratch):
    export_run(run_dir, tmp_path / "out" / "data", "jsonl")
    with pytest.raises(GravityError):
        export_run(tmp_path / "out", tmp_path / "out2", "jsonl")  # not a run folder
    assert list(scratch.iterdir()) == []


def test_an_index_that_cannot_be_created_is_one_line(run_dir, tmp_path, scratch, monkeypatch):
    import sqlite3

    class Full:
        def execute(self, sql, *args):
            if sql.startswith("CREATE"):
                raise sqlite3.OperationalError("database or disk is full")

        def close(self):
            pass

    monkeypatch.setattr(sqlite3, "connect", lambda *args, **kwargs: Full())
    with pytest.raises(GravityError, match=r"readers\.sqlite: .*disk is full; set TMPDIR") as err:
        export_run(run_dir, tmp_path / "data", "jsonl")
    assert len(str(err.value).splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scratch"]
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_tmpdir_that_is_not_a_writable_folder_is_refused(run_dir, tmp_path, monkeypatch, kind):
    """Python would quietly fall back to another temp folder than the one chosen for room."""
    chosen = tmp_path / "nowhere"
    if kind == "a file":
        chosen.write_text("x")
    monkeypatch.setenv("TMPDIR", str(chosen))
    with pytest.raises(GravityError, match=f"TMPDIR={chosen}: not a writable folder"):
        export_run(run_dir, tmp_path / "data", "jsonl")
    assert not (tmp_path / "data").exists()
