"""Country lookup and the reference tables' values for the four example countries."""

from __future__ import annotations

import pytest

from gravity.errors import GravityError
from gravity.profiles import country_priors, normalize_country
from gravity.profiles.culture import countries_with_priors


@pytest.mark.parametrize(
    "value, code",
    [
        ("US", "US"),
        ("us", "US"),
        ("USA", "US"),
        ("United States", "US"),
        ("u.s.a.", "US"),
        ("BR", "BR"),
        ("bra", "BR"),
        ("Brazil", "BR"),
        ("  brazil ", "BR"),
        ("JP", "JP"),
        ("JPN", "JP"),
        ("japan", "JP"),
        ("IN", "IN"),
        ("IND", "IN"),
        ("India", "IN"),
        ("South Korea", "KR"),
        ("UK", "GB"),
        ("Viet Nam", "VN"),
    ],
)
def test_lookup(value, code):
    assert normalize_country(value) == code


def test_unknown_country_lists_close_matches():
    with pytest.raises(GravityError) as info:
        normalize_country("Brasil")
    assert "unknown country 'Brasil'" in str(info.value)
    assert "Brazil" in str(info.value)


def test_unknown_without_suggestions():
    with pytest.raises(GravityError, match="unknown country 'zzzzzz'$"):
        normalize_country("zzzzzz")


# Straight from profiles/reference/*.csv (ctr USA/BRA/JPN/IND; geo united_states/...).
TABLE = {
    "US": ((40, 91, 62, 46, 26, 68), (0.3, 1.21)),
    "BR": ((69, 38, 49, 76, 44, 59), (-0.12, -0.18)),
    "JP": ((54, 46, 95, 92, 88, 42), (1.64, 0.92)),
    "IN": ((77, 48, 56, 40, 51, 26), (-0.57, -0.44)),
}


@pytest.mark.parametrize("code", sorted(TABLE))
def test_priors_equal_tables(code):
    import csv

    from gravity.resources import reference_dir

    priors = country_priors(code)
    hofstede, wvs = TABLE[code]
    h = priors.hofstede
    assert (h.pdi, h.idv, h.mas, h.uai, h.lto, h.ivr) == hofstede
    assert priors.wvs.traditional_secular == pytest.approx(wvs[0], abs=0.01)
    assert priors.wvs.survival_self_expression == pytest.approx(wvs[1], abs=0.01)
    # and exactly the shipped table's value (not just our rounded copy above)
    geo = {"US": "united_states", "BR": "brazil", "JP": "japan", "IN": "india"}[code]
    with open(reference_dir() / "wvs-cultural-map-latest-wave.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["geo"] == geo)
    assert priors.wvs.traditional_secular == pytest.approx(float(row["traditional_secular"]))


def test_partial_and_absent_priors():
    egypt = country_priors("Egypt")  # Hofstede has only LTO and IVR for Egypt
    assert egypt.hofstede.pdi is None and egypt.hofstede.lto is not None
    assert country_priors("Greece").hofstede.uai == 112  # published value above 100
    nowhere = country_priors("Iceland")
    assert nowhere.wvs is not None
    assert country_priors("Fiji").hofstede is None  # a real country with no table rows
    assert len(countries_with_priors()) > 100


def _table(name: str, key: str, delimiter: str = ",") -> dict[str, dict[str, str]]:
    import csv

    from gravity.resources import reference_dir

    with open(reference_dir() / name, encoding="utf-8", newline="") as f:
        return {row[key]: row for row in csv.DictReader(f, delimiter=delimiter)}


@pytest.mark.parametrize("country, code", [("Germany", "DE"), ("Netherlands", "NL")])
def test_germany_and_netherlands_have_all_six_dimensions(country, code):
    h = country_priors(country).hofstede
    assert h is not None and None not in (h.pdi, h.idv, h.mas, h.uai, h.lto, h.ivr)
    row = _table("hofstede-6d-2015-08-16.csv", "country", ";")[country]
    assert h.pdi == float(row["pdi"]) and h.ivr == float(row["ivr"])
    assert country_priors(code).wvs is not None


def test_every_reference_row_is_reachable_from_an_iso_code():
    """Each country row of both tables reaches a reader through an ISO code, or is listed in
    unmapped-rows.csv with its reason; the list names only real, really unmapped rows."""
    from gravity.profiles.culture import unmapped_rows

    hofstede = _table("hofstede-6d-2015-08-16.csv", "ctr", ";")
    wvs = _table("wvs-cultural-map-latest-wave.csv", "geo")
    reached_h: set[tuple] = set()
    reached_w: set[tuple] = set()
    for code in countries_with_priors():
        priors = country_priors(code)
        if priors.hofstede is not None:
            reached_h.add(tuple(priors.hofstede.model_dump().values()))
        if priors.wvs is not None:
            reached_w.add((priors.wvs.traditional_secular, priors.wvs.survival_self_expression))
    unmapped = {(r["table"], r["key"]): r for r in unmapped_rows()}
    assert all(r["reason"].strip() for r in unmapped.values())
    missing = []
    for ctr, row in hofstede.items():
        cols = ("pdi", "idv", "mas", "uai", "ltowvs", "ivr")
        values = tuple(None if row[c] == "#NULL!" else float(row[c]) for c in cols)
        if ("hofstede", ctr) in unmapped:
            assert row["country"] == unmapped["hofstede", ctr]["country"]
            continue
        if values not in reached_h:
            missing.append(("hofstede", ctr, row["country"]))
    for geo, row in wvs.items():
        values = (
            round(float(row["traditional_secular"]), 4),
            round(float(row["survival_selfexpression"]), 4),
        )
        if ("wvs", geo) in unmapped:
            assert row["country"] == unmapped["wvs", geo]["country"]
            continue
        if values not in reached_w:
            missing.append(("wvs", geo, row["country"]))
    assert not missing, f"table rows no ISO code reaches (map them or list them): {missing}"
    known = {("hofstede", k) for k in hofstede} | {("wvs", k) for k in wvs}
    assert set(unmapped) <= known, set(unmapped) - known


def test_culture_gaps_name_what_is_missing():
    from gravity.profiles import UserProfile, with_country_priors
    from gravity.profiles.culture import culture_gaps

    def reader(country: str) -> UserProfile:
        return with_country_priors(UserProfile(id="r", demographics={"country": country}))

    assert culture_gaps(reader("US")) == []
    assert culture_gaps(reader("DE")) == []
    (note,) = culture_gaps(reader("Albania"))  # Hofstede has only LTO and IVR
    assert "power distance" in note and "uncertainty avoidance" in note and "Albania" in note
    partial, no_map = culture_gaps(reader("Costa Rica"))  # no LTO, IVR; no WVS row
    assert "long-term orientation or indulgence" in partial and "World Values Survey" in no_map
    assert len(culture_gaps(reader("Fiji"))) == 2  # no row in either table


def test_loading_warns_about_readers_without_culture_values(tmp_path, caplog):
    import logging

    from gravity.profiles import load_profiles

    path = tmp_path / "r.jsonl"
    path.write_text(
        '{"id": "fj1", "demographics": {"country": "FJ"}}\n'
        '{"id": "fj2", "demographics": {"country": "FJ"}}\n'
        '{"id": "us1", "demographics": {"country": "US"}}\n'
    )
    with caplog.at_level(logging.WARNING, logger="gravity"):
        load_profiles(path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # one per missing facet, not one per reader
    assert all(str(path) in w and "2 reader(s)" in w and "Fiji" in w for w in warnings)
