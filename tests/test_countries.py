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
