"""Validation of every facet: good values pass, bad values fail with the field named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gravity.profiles import WVS, BigFive, Demographics, Hofstede, Interests, Schwartz, UserProfile

SCHWARTZ = dict(
    self_direction=5.0,
    stimulation=4.0,
    hedonism=3.0,
    achievement=4.0,
    power=2.0,
    security=5.0,
    conformity=4.0,
    tradition=3.0,
    benevolence=6.0,
    universalism=4.0,
)
BIG5 = dict(
    openness=4.2, conscientiousness=3.1, extraversion=2.0, agreeableness=4.0, neuroticism=1.5
)


def _error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


def test_demographics_country_normalised_and_others_optional():
    d = Demographics(country="brazil")
    assert d.country == "BR" and d.age is None and d.occupation is None
    assert Demographics(country="JPN", age=30, language="ja", education="master").country == "JP"


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({}, "country"),
        ({"country": "Atlantis"}, "country"),
        ({"country": "US", "age": 7}, "age"),
        ({"country": "US", "age": 150}, "age"),
        ({"country": "US", "education": "kindergarten"}, "education"),
        ({"country": "US", "language": "English!"}, "language"),
        ({"country": "US", "shoe_size": 42}, "shoe_size"),
    ],
)
def test_demographics_rejects(kwargs, field):
    with pytest.raises(ValidationError) as info:
        Demographics(**kwargs)
    assert field in _error_fields(info.value)


def test_hofstede_accepts_published_scores_over_100_and_missing():
    h = Hofstede(pdi=60, uai=112, mas=110)
    assert h.uai == 112 and h.idv is None


@pytest.mark.parametrize("field, value", [("pdi", -1), ("uai", 121), ("lto", "high")])
def test_hofstede_rejects(field, value):
    with pytest.raises(ValidationError) as info:
        Hofstede(**{field: value})
    assert field in _error_fields(info.value)


def test_schwartz_centred_and_higher_order_are_derived():
    s = Schwartz(**SCHWARTZ)
    mean = sum(SCHWARTZ.values()) / 10  # 4.0
    assert s.centred["benevolence"] == pytest.approx(6.0 - mean)
    assert s.centred["power"] == pytest.approx(2.0 - mean)
    assert sum(s.centred.values()) == pytest.approx(0.0, abs=1e-6)
    # self-transcendence = mean(centred benevolence, universalism) = (2 + 0) / 2
    assert s.higher_order["self_transcendence"] == pytest.approx(1.0)
    # conservation = mean(security 1, conformity 0, tradition -1) = 0
    assert s.higher_order["conservation"] == pytest.approx(0.0)
    assert s.ranked()[0] == "benevolence" and s.ranked()[-1] == "power"
    # Derived values are not stored: a dump has only raw scores and the mean rating.
    assert set(s.model_dump()) == set(SCHWARTZ) | {"mean_rating"}


def test_schwartz_uses_mean_rating_when_given():
    s = Schwartz(**SCHWARTZ, mean_rating=3.5)
    assert s.centred["benevolence"] == pytest.approx(2.5)


@pytest.mark.parametrize("field, value", [("power", 0.5), ("benevolence", 6.5)])
def test_schwartz_rejects_out_of_range(field, value):
    with pytest.raises(ValidationError) as info:
        Schwartz(**{**SCHWARTZ, field: value})
    assert field in _error_fields(info.value)


def test_schwartz_requires_all_ten():
    partial = dict(SCHWARTZ)
    del partial["tradition"]
    with pytest.raises(ValidationError) as info:
        Schwartz(**partial)
    assert "tradition" in _error_fields(info.value)


def test_wvs_items_by_code():
    w = WVS(traditional_secular=-0.5, survival_self_expression=1.2, items={"F063": 8, "A008": 2})
    assert w.items == {"F063": 8, "A008": 2}
    with pytest.raises(ValidationError, match="unknown WVS item"):
        WVS(traditional_secular=0, survival_self_expression=0, items={"Q999": 1})
    with pytest.raises(ValidationError) as info:
        WVS(traditional_secular=9, survival_self_expression=0)
    assert "traditional_secular" in _error_fields(info.value)


def test_big_five_range():
    assert BigFive(**BIG5).openness == 4.2
    with pytest.raises(ValidationError) as info:
        BigFive(**{**BIG5, "neuroticism": 5.5})
    assert "neuroticism" in _error_fields(info.value)


def test_interests_limits():
    i = Interests(genres=["mystery"], dislikes=["horror"])
    assert i.themes == []
    with pytest.raises(ValidationError):
        Interests(genres=[""])
    with pytest.raises(ValidationError):
        Interests(genres=["x" * 201])
    with pytest.raises(ValidationError):
        Interests(favourite_films=["Alien"])


def test_user_profile_composes_facets():
    p = UserProfile(
        id="u1",
        demographics={"country": "in"},
        schwartz=SCHWARTZ,
        big_five=BIG5,
        interests={"genres": ["poetry"]},
    )
    assert p.country == "IN" and p.source == "manual"
    assert p.has_facet("values") and p.has_facet("personality") and not p.has_facet("culture")
    with pytest.raises(ValueError, match="unknown facet"):
        p.has_facet("astrology")


@pytest.mark.parametrize(
    "data, field",
    [
        ({"id": "has space", "demographics": {"country": "US"}}, "id"),
        ({"id": "u", "demographics": {"country": "US"}, "source": "guess"}, "source"),
        ({"id": "u"}, "demographics"),
        ({"id": "u", "demographics": {"country": "US"}, "mood": "happy"}, "mood"),
    ],
)
def test_user_profile_rejects(data, field):
    with pytest.raises(ValidationError) as info:
        UserProfile.model_validate(data)
    assert field in _error_fields(info.value)
