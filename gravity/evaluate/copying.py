"""How much of a description is the reader's profile repeated: an order-free token overlap that
works in scripts written without spaces, and the single cases that echo the profile.

Tokens: text is NFKC-normalised and case-folded; a run of letters or digits in a script that
separates words with spaces (Latin, Cyrillic, Greek, Arabic, Devanagari, Hangul, ...) is one
token; a run in a script written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer,
Myanmar) becomes its character bigrams (one character alone is its own token), the usual unit
where no word segmenter is at hand. ROUGE-L, used before, kept only ASCII letters and digits
(Japanese scored 0.0) and counted only words in the profile's order.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any

_NO_SPACE = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff\u31f0-\u31ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han
)
_TOKEN = re.compile(f"([{_NO_SPACE}]+)|[^\\W_{_NO_SPACE}]+")
ECHO = 0.5  # copy rate from which one description counts as echoing the profile


def tokens(text: str) -> list[str]:
    """The overlap's tokens of ``text`` (see the module docstring)."""
    out: list[str] = []
    for match in _TOKEN.finditer(unicodedata.normalize("NFKC", text).casefold()):
        run = match.group()
        if match.group(1):
            out += [run[i : i + 2] for i in range(max(1, len(run) - 1))]
        else:
            out.append(run)
    return out


def copy_rate(description: str, source: str) -> float | None:
    """Share of the description's tokens found in ``source``, each counted at most as often as
    it occurs there (clipped unigram precision; word order plays no part). None when either
    text has no token."""
    mine, theirs = Counter(tokens(description)), Counter(tokens(source))
    total = sum(mine.values())
    if not total or not theirs:
        return None
    return sum(min(n, theirs[t]) for t, n in mine.items()) / total


def echoes(
    copy_rates: dict[str, dict[str, float | None]], meta: dict[str, tuple[str, str]]
) -> list[dict[str, Any]]:
    """Every (case, system) whose copy rate is at least ``ECHO``: one such text (a profile
    repeated as a list, say) can carry a paired difference on its own. In the CPU study's
    lever run no ordinary description went above 0.25 (mean 0.07-0.09)."""
    return [
        {"case_id": case_id, "reader_id": meta[case_id][0], "system": s, "copy_rate": v}
        for case_id, by_system in sorted(copy_rates.items())
        if case_id in meta
        for s, v in sorted(by_system.items())
        if v is not None and v >= ECHO
    ]
