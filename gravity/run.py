"""``gravity run``: the stages a ``RunConfig`` describes, in order, each resumable."""

from __future__ import annotations

import logging

from gravity.config import ProfilesStage, RunConfig
from gravity.profiles import dump_profiles, load_many, sample_profiles
from gravity.profiles.io import atomic_write_text
from gravity.profiles.models import UserProfile
from gravity.profiles.render import render_profile

log = logging.getLogger(__name__)


def build_profiles(stage: ProfilesStage) -> list[UserProfile]:
    """Sampled readers for each configured country plus those loaded from files."""
    profiles = list(load_many(stage.files)) if stage.files else []
    if stage.n_per_country:
        for country in stage.countries:
            profiles.extend(
                sample_profiles(country, stage.n_per_country, stage.seed, stage.sampler)
            )
    ids = [p.id for p in profiles]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        from gravity.errors import GravityError

        raise GravityError(f"profiles: duplicate reader ids across sources: {duplicates}")
    return profiles


def run_pipeline(cfg: RunConfig) -> None:
    """Execute every stage of ``cfg``; outputs go under ``cfg.out_dir``."""
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    profiles = build_profiles(cfg.profiles)
    dump_profiles(profiles, out / "profiles.jsonl")
    summaries = "\n\n".join(f"## {p.id}\n\n{render_profile(p)}" for p in profiles)
    atomic_write_text(out / "profiles.md", f"# Readers\n\n{summaries}\n")
    print(f"profiles: {len(profiles)} readers -> {out / 'profiles.jsonl'}, {out / 'profiles.md'}")
