"""Country from a free-text location, through the profiles' country resolution."""

from __future__ import annotations

from functools import lru_cache

from gravity.profiles.countries import UnknownCountryError, normalize_country


@lru_cache(maxsize=65536)
def _resolve(part: str) -> str | None:
    try:
        return normalize_country(part)
    except UnknownCountryError:
        return None


def country_from_location(location: str | None) -> str | None:
    """ISO alpha-2 of the last comma-separated part of ``location`` ("city, region, country"),
    or None when that part names no country.

    Only the last part is tried: earlier parts are cities and regions, and some of them share a
    name with a country (the US state of Georgia), so trying them would invent countries.
    """
    if not location:
        return None
    last = location.rsplit(",", 1)[-1].strip(" .\"'")
    return _resolve(last.casefold()) if last else None
