"""Seeded sampler: deterministic, spread out, culture facets from the country."""

from __future__ import annotations

import statistics

import pytest

from gravity.profiles import SamplerConfig, country_priors, sample_profiles
from gravity.profiles.io import dump_profiles


def test_same_seed_same_bytes(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    dump_profiles(sample_profiles("BR", 20, seed=7), a)
    dump_profiles(sample_profiles("bra", 20, seed=7), b)
    assert a.read_bytes() == b.read_bytes()


def test_different_seeds_differ():
    a = sample_profiles("JP", 5, seed=0)
    b = sample_profiles("JP", 5, seed=1)
    assert [p.big_five for p in a] != [p.big_five for p in b]


def test_prefix_stable_in_n():
    assert sample_profiles("IN", 3, seed=2) == sample_profiles("IN", 10, seed=2)[:3]


def test_spread_of_200_profiles():
    profiles = sample_profiles("US", 200, seed=0)
    assert len({p.id for p in profiles}) == 200
    openness = [p.big_five.openness for p in profiles]
    assert statistics.stdev(openness) > 0.4
    assert len({tuple(p.interests.genres) for p in profiles}) > 50
    assert len({p.demographics.occupation for p in profiles}) > 8
    assert len({p.schwartz.ranked()[0] for p in profiles}) >= 4
    assert all(1 <= p.big_five.neuroticism <= 5 for p in profiles)


def test_culture_from_priors_and_shift_direction():
    jp = sample_profiles("JP", 200, seed=0)
    assert all(p.hofstede == country_priors("JP").hofstede for p in jp)
    # Traditional countries (negative traditional-secular) raise tradition: compare with Japan.
    ng = sample_profiles("Nigeria", 200, seed=0)
    mean = lambda ps: statistics.mean(p.schwartz.tradition for p in ps)  # noqa: E731
    assert mean(ng) > mean(jp)


def test_config_is_used_and_validated():
    cfg = SamplerConfig(
        big_five_sd=0.1, big_five_mean={t: 4.5 for t in SamplerConfig().big_five_mean}
    )
    profiles = sample_profiles("US", 50, seed=0, config=cfg)
    assert statistics.mean(p.big_five.openness for p in profiles) > 4.3
    with pytest.raises(ValueError, match="big_five_mean lacks"):
        SamplerConfig(big_five_mean={"openness": 3})
    with pytest.raises(ValueError):
        sample_profiles("US", 0)
