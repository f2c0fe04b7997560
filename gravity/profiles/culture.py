"""Country priors: Hofstede's 6-D scores and the WVS cultural-map position, from shipped tables.

Sources and caveats are in ``profiles/reference/README.md``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from gravity.profiles.countries import country_name, normalize_country
from gravity.profiles.models import WVS, Hofstede

if TYPE_CHECKING:
    from gravity.profiles.models import UserProfile
from gravity.resources import reference_dir

HOFSTEDE_FILE = "hofstede-6d-2015-08-16.csv"
WVS_FILE = "wvs-cultural-map-latest-wave.csv"
KEYS_FILE = "country-keys.csv"
UNMAPPED_FILE = "unmapped-rows.csv"

HOFSTEDE_LABELS = {
    "pdi": "power distance",
    "idv": "individualism",
    "mas": "masculinity",
    "uai": "uncertainty avoidance",
    "lto": "long-term orientation",
    "ivr": "indulgence",
}

# Table column -> Hofstede model field.
_HOFSTEDE_COLUMNS = {
    "pdi": "pdi",
    "idv": "idv",
    "mas": "mas",
    "uai": "uai",
    "ltowvs": "lto",
    "ivr": "ivr",
}


@dataclass(frozen=True)
class CountryPriors:
    """What the reference tables say about one country (None where a table has no row)."""

    country: str
    hofstede: Hofstede | None
    wvs: WVS | None


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]], dict[str, dict]]:
    ref = reference_dir()
    with open(ref / HOFSTEDE_FILE, encoding="utf-8", newline="") as f:
        hofstede = {row["ctr"]: row for row in csv.DictReader(f, delimiter=";")}
    with open(ref / WVS_FILE, encoding="utf-8", newline="") as f:
        wvs = {row["geo"]: row for row in csv.DictReader(f)}
    with open(ref / KEYS_FILE, encoding="utf-8", newline="") as f:
        keys = {row["iso2"]: row for row in csv.DictReader(f)}
    return hofstede, wvs, keys


def _hofstede(row: dict[str, str]) -> Hofstede | None:
    values = {
        field: float(row[col]) for col, field in _HOFSTEDE_COLUMNS.items() if row[col] != "#NULL!"
    }
    return Hofstede(**values) if values else None


def country_priors(country: str) -> CountryPriors:
    """Hofstede and WVS values for ``country`` (any accepted spelling)."""
    code = normalize_country(country)
    hofstede_rows, wvs_rows, keys = _tables()
    key = keys.get(code, {})
    hofstede = _hofstede(hofstede_rows[key["hofstede_ctr"]]) if key.get("hofstede_ctr") else None
    wvs = None
    if key.get("wvs_geo"):
        row = wvs_rows[key["wvs_geo"]]
        wvs = WVS(
            traditional_secular=round(float(row["traditional_secular"]), 4),
            survival_self_expression=round(float(row["survival_selfexpression"]), 4),
        )
    return CountryPriors(country=code, hofstede=hofstede, wvs=wvs)


def countries_with_priors() -> list[str]:
    """ISO alpha-2 codes that have at least one reference table row."""
    return sorted(_tables()[2])


def unmapped_rows() -> list[dict[str, str]]:
    """Table rows deliberately reachable from no ISO code (regional aggregates, sub-national or
    older duplicate rows), each with its reason (``table``, ``key``, ``country``, ``reason``)."""
    with open(reference_dir() / UNMAPPED_FILE, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def culture_gaps(profile: UserProfile) -> list[str]:
    """Notes on the culture values a profile lacks (none, or only some Hofstede dimensions; no
    WVS map position): its prompts carry none of them. Empty when nothing is missing."""
    name = country_name(profile.country)
    notes = []
    if profile.hofstede is None:
        notes.append(f"no Hofstede scores for {name} (neither in the file nor the reference table)")
    else:
        missing = [
            label
            for field, label in HOFSTEDE_LABELS.items()
            if getattr(profile.hofstede, field) is None
        ]
        if missing:
            listed = (
                ", ".join(missing[:-1]) + " or " + missing[-1] if len(missing) > 1 else missing[0]
            )
            notes.append(
                f"no Hofstede {listed} score for {name} "
                "(not in the file; the reference table's row is partial)"
            )
    if profile.wvs is None:
        notes.append(
            f"no World Values Survey map position for {name} "
            "(neither in the file nor the reference table)"
        )
    return notes
