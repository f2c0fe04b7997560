"""Render a profile (or some of its facets) as text for prompts, through ``prompts/profile.j2``."""

from __future__ import annotations

from collections.abc import Sequence

from gravity.profiles.countries import country_name
from gravity.profiles.models import FACETS, UserProfile
from gravity.prompts import render

PROFILE_TEMPLATE = "profile.j2"


def render_profile(profile: UserProfile, facets: Sequence[str] | None = None) -> str:
    """A short natural-language summary of a profile; ``facets`` picks parts (default: all)."""
    chosen = list(FACETS) if facets is None else list(facets)
    unknown = [f for f in chosen if f not in FACETS]
    if unknown:
        raise ValueError(f"unknown facet(s) {unknown}; valid: {', '.join(FACETS)}")
    return render(
        PROFILE_TEMPLATE,
        profile=profile,
        facets=chosen,
        country_name=country_name(profile.country),
    )
