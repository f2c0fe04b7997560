"""The shared reading layer, the validation-error formatter and atomic writes (gravity.io)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from pydantic import BaseModel, ConfigDict

from gravity.books import load_catalog
from gravity.errors import GravityError, InputError, fields_at
from gravity.io import atomic_write_text, check_tree, load_yaml_model, read_text, reading
from gravity.profiles import UserProfile

HEADER = "id,title,author,year,genres,description\n"
ROW = 'b1,"A Title",An Author,1900,fantasy,"A description long enough to pass."\n'


def test_csv_row_with_an_extra_column_names_its_line(tmp_path):
    path = tmp_path / "books.csv"
    # line 3: an unquoted comma in the title; line 5: a missing column.
    path.write_text(
        HEADER
        + ROW
        + "b2,A Title, with a comma,An Author,1900,fantasy,A description long enough.\n"
        + ROW.replace("b1", "b3")
        + "b4,T,A,1900,A description long enough to pass.\n"
    )
    with pytest.raises(InputError) as info:
        load_catalog(path)
    assert str(info.value).splitlines() == [
        f"{path}:3: row has 7 columns, the header has 6 (an unquoted comma?)",
        f"{path}:5: row has 5 columns, the header has 6",
    ]


def test_csv_line_numbers_count_quoted_newlines(tmp_path):
    path = tmp_path / "books.csv"
    path.write_text(
        HEADER
        + 'b1,"Two\nline title",A,1900,x,"A description\nover two lines."\n'
        + "b2,T,A,1900,x,short\n"
    )
    with pytest.raises(InputError) as info:
        load_catalog(path)
    assert str(info.value) == f"{path}:5: description: String should have at least 10 characters"


def test_umask_is_kept(tmp_path):
    old = os.umask(0o022)
    try:
        for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
            os.umask(mask)
            path = tmp_path / f"f{mask:o}.txt"
            atomic_write_text(path, "x")
            assert stat.S_IMODE(path.stat().st_mode) == mode, (oct(mask), oct(mode))
        existing = tmp_path / "existing.txt"
        existing.write_text("old")
        existing.chmod(0o640)
        os.umask(0o022)
        atomic_write_text(existing, "new")  # replacing a file keeps its mode
        assert stat.S_IMODE(existing.stat().st_mode) == 0o640 and existing.read_text() == "new"
    finally:
        os.umask(old)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_unwritable_output_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GravityError, match=r"/file/out\.json: cannot write: "):
        atomic_write_text(blocker / "out.json", "{}")


def test_temp_dir_keeps_the_umask(tmp_path):
    from gravity.io import temp_dir

    old = os.umask(0o027)
    try:
        assert stat.S_IMODE(temp_dir(tmp_path, ".out.").stat().st_mode) == 0o750
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"a": [1, {"b": float("nan")}]}, "f:3: a.1.b: number must be finite"),
        ({"a": 10**30}, "f:3: a: number too large"),
        ({"a": "ok\ud800"}, "f:3: a: text holds an unpaired surrogate"),
        ({"\udc00": 1}, "f:3: key: text holds an unpaired surrogate"),
        (json.loads("[" * 40 + "]" * 40), "nested deeper than 32 levels"),
    ],
)
def test_check_tree_refuses(data, message):
    with pytest.raises(InputError, match=message.replace(".", r"\.").replace("[", r"\[")):
        check_tree(data, "f", 3)


def test_check_tree_refuses_cycles_and_alias_bombs():
    loop: list = []
    loop.append({"k": loop})
    with pytest.raises(InputError, match="a.0.k: refers to itself"):
        check_tree({"a": loop}, "f")
    level = ["x"] * 10
    for _ in range(7):  # 10**7 values once expanded, a few hundred objects in memory
        level = [level] * 10
    with pytest.raises(InputError, match="expands to more than 100,000 values"):
        check_tree(level, "f")
    check_tree({"ok": [1, 2.5, "text", None, True, {"nested": []}]}, "f")


def test_read_text_bom_nul_encoding_size(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"\xef\xbb\xbfhello")
    assert read_text(path) == "hello"
    path.write_bytes(b"a\nb\x00")
    with pytest.raises(InputError, match=r"f\.txt:2: <file>: holds a NUL byte"):
        read_text(path)
    path.write_bytes(b"ok \xff")
    with pytest.raises(InputError, match=r"not UTF-8 text \(invalid byte 0xff at offset 3\)"):
        read_text(path)
    path.write_bytes(b"x" * 100)
    with pytest.raises(InputError, match="file is 100 bytes; the limit is 10"):
        read_text(path, max_bytes=10)
    with pytest.raises(InputError, match="is a folder"):
        read_text(tmp_path)


def test_reading_turns_any_exception_into_one_line_but_keeps_gravity_errors():
    with pytest.raises(InputError) as info, reading("data.bin"):
        raise KeyError("deep inside a parser")
    assert str(info.value) == "data.bin: <file>: cannot read (KeyError): 'deep inside a parser'"
    with pytest.raises(GravityError, match="^already clear$"), reading("x"):
        raise GravityError("already clear")


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    colour: str = "red"


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inner: _Inner | None = None
    items: list[_Inner] = []
    size: int = 1


def test_formatter_suggests_fields_at_any_depth(tmp_path):
    assert fields_at(_Outer, ("items", 3)) == ["colour"]
    assert fields_at(UserProfile, ("big_five",))[:2] == ["openness", "conscientiousness"]
    path = tmp_path / "c.yaml"
    path.write_text("inner: {color: blue}\nitems: [{colour: x}, {hue: y}]\nsise: 2\nzzz: 1\n")
    with pytest.raises(InputError) as info:
        load_yaml_model(path, _Outer)
    assert str(info.value).splitlines() == [
        f"{path}: inner.color: unknown field 'color'; did you mean 'colour'?",
        f"{path}: items.1.hue: unknown field 'hue'; valid: colour",
        f"{path}: sise: unknown field 'sise'; did you mean 'size'?",
        f"{path}: zzz: unknown field 'zzz'; valid: inner, items, size",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: 1\n---\nb: 2\n", ":3: expected one YAML document, found several"),
        ("- 1\n", ": <file>: expected a mapping of config fields, got list"),
        ("size: [\n", ": <yaml>: invalid YAML"),
        ("size: .inf\n", ": size: number must be finite"),
    ],
)
def test_config_file_errors(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_yaml_model(path, _Outer)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


def test_preference_data_rows_are_type_checked(tmp_path):
    from gravity.preference import load_preference_data

    good = {"prompt": [{"role": "user", "content": "hi"}], "chosen": "a", "rejected": "b"}
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "chosen": 5}) + "\n")
    with pytest.raises(InputError) as info:
        load_preference_data(path)
    assert str(info.value).startswith(f"{path}:2: chosen")
    path.write_text(json.dumps({**good, "prompt": [{"role": "narrator", "content": "x"}]}) + "\n")
    with pytest.raises(InputError, match=r":1: prompt\.list\[Message\]\.0\.role"):
        load_preference_data(path)
    path.write_text(json.dumps(good) + "\n")
    assert load_preference_data(path).num_rows == 1


def test_remove_dead_keeps_what_live_processes_and_other_hosts_made(tmp_path):
    import subprocess

    from gravity.io import _host_tag, remove_dead

    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process now
    host = _host_tag()
    names = {
        f"x-{dead.pid}-{host}-a": False,  # a killed run's: removed
        f"x-{os.getpid()}-{host}-b": True,  # this live process's
        f"x-{os.getppid()}-{host}-c": True,  # another live process's
        f"x-{dead.pid}-00000000-d": True,  # another host's (its pids are not ours to check)
        "x-legacy": True,  # no owner in the name
        f"y-{dead.pid}-{host}-e": True,  # another prefix
    }
    for name in names:
        (tmp_path / name).mkdir()
    (tmp_path / f"x-{dead.pid}-{host}-a" / "run.tsv").write_text("spilled")
    assert [p.name for p in remove_dead(tmp_path, "x-")] == [f"x-{dead.pid}-{host}-a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        n for n, kept in names.items() if kept
    )
