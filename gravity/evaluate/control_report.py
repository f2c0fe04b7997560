"""The report's controls and power: its "Controls" and "Power" sections and their lines in
"Reading", derived from metrics.json's ``controls`` and ``power`` blocks (``controls.py``,
``power.py``)."""

from __future__ import annotations

from typing import Any

from gravity.evaluate.power import power_lines


def _fmt(x: float, kind: str) -> str:
    return f"{x:.2f}" if kind == "p" else f"{x:+.3f}"


def estimate(est: dict[str, Any] | None, kind: str = "alignment") -> str:
    """``value [lo, hi] (n=readers, cases)``, or why there is none; ``kind`` ``p`` for a
    probability, else a signed alignment difference."""
    if est is None:
        return "not run"
    if est["status"] == "no_data":
        return "no data"
    if est["status"] == "too_few":
        return f"too few readers (n={est['n']})"
    text = _fmt(est["value"], kind)
    if est.get("ci") is not None:
        text += f" [{_fmt(est['ci'][0], kind)}, {_fmt(est['ci'][1], kind)}]"
    return text + f" (n={est['n']}, {est.get('cases', '?')} cases)"


def judge_evidence(metrics: dict[str, Any]) -> bool | None:
    """True when the judge passed the positive control, False when it failed it, None when it
    was not checked (controls off or alignment only, or no control data)."""
    controls = metrics.get("controls")
    return None if not controls else controls.get("judge_validated")


def _greedy(est: dict[str, Any] | None) -> bool:
    return bool(est) and est.get("method") == "constant" and est.get("value") == 0


def control_lines(metrics: dict[str, Any]) -> list[str]:
    """Reading: what the controls show, first, since every other line depends on them."""
    c = metrics.get("controls")
    if not c:
        return [
            "- No controls were run (`controls: off`, or an evaluation made before gravity had "
            "controls): nothing in this report shows what its metrics could have seen."
        ]
    system = c["system"]
    align = c["matched"].get(system)
    lines = [_positive_line(system, align, c.get("alignment_sees_reader"))]
    if metrics.get("focus") not in (None, system):
        lines.append(
            f"- The controls were run for `{system}` (the focus system when the evaluation ran); "
            f"the paired differences below are for `{metrics['focus']}`."
        )
    lines.append(_judge_line(c))
    oracle = c["oracle"]
    lines.append(
        "- Oracle control (texts made from each reader's profile fields, no model): alignment "
        f"own minus other {estimate(oracle['alignment'])}"
        + (f"; judge P(own wins) {estimate(oracle['judge'], 'p')}" if "judge" in oracle else "")
        + ": the most these metrics see when a text carries its reader's profile."
    )
    lines.append(_negative_line(system, c))
    return lines


def _positive_line(system: str, align: dict[str, Any] | None, sees: bool | None) -> str:
    what = (
        f"a `{system}` text written for its reader from the one `{system}` wrote for another "
        "reader on the same item"
    )
    if sees:
        return f"- Positive control: alignment tells {what}: own minus other {estimate(align)}."
    return (
        f"- Positive control: alignment cannot tell {what}: own minus other {estimate(align)}, "
        "so the alignment differences below cannot be read as personalization."
    )


def _judge_line(c: dict[str, Any]) -> str:
    system = c["system"]
    judged = c.get("matched_judge")
    if judged is None:
        return (
            f"- The judge was not checked by a positive control (`controls: {c['mode']}`): "
            "its verdicts below are shown unvalidated, not as evidence."
        )
    if c.get("judge_validated"):
        return (
            f"- The judge prefers the `{system}` text written for its reader over the one for "
            f"another reader: P(own wins) {estimate(judged, 'p')}, both orders; its verdicts "
            "below count as evidence."
        )
    oracle = c["oracle"].get("judge")
    line = (
        f"- The judge is not validated: with the reader's persona, P(the `{system}` text "
        f"written for this reader wins over one for another reader) is {estimate(judged, 'p')}, "
        "an interval that does not lie above 0.5"
        + (f" (oracle texts: {estimate(oracle, 'p')})" if oracle else "")
        + ". Its verdicts below are shown, but they are not evidence."
    )
    if oracle and oracle["status"] == "ok" and oracle.get("ci") and oracle["ci"][0] > 0.5:
        line += (
            f" It does tell the oracle texts apart, so either `{system}` barely writes for its "
            "reader or the judge sees only profile words a text repeats."
        )
    return line


def _negative_line(system: str, c: dict[str, Any]) -> str:
    neg = c["negative"]
    parts = [f"alignment {estimate(neg['alignment'])}"]
    if "judge" in neg:
        parts.append(f"judge P(first seed wins) {estimate(neg['judge'], 'p')}")
    line = f"- Negative control (`{system}` against itself under another sampling seed): " + (
        "; ".join(parts)
    )
    if _greedy(neg["alignment"]):
        return line + ": identical texts (greedy decoding), so the control cannot fail."
    held = c.get("negative_held")
    if held is None:
        return line + ": no interval to check."
    if held:
        return line + ": every interval includes its null (0, 0.5), as it must."
    return (
        line + ": an interval excludes its null. Either the intervals of this report are too "
        "narrow or the two seeds differ systematically: read every interval with caution."
    )


def control_table(metrics: dict[str, Any]) -> list[str]:
    """The Controls section's table (or why there is none)."""
    c = metrics.get("controls")
    if not c:
        return ["No controls were run (`controls: off`, or an evaluation made before controls)."]
    system = c["system"]
    judged = c.get("matched_judge")
    lines = [
        "| control | alignment: own minus other | judge: P(own / first wins) |",
        "|---|---|---|",
    ]
    for s, est in c["matched"].items():
        who = f"`{s}`: text for this reader vs for another reader, same item"
        j = estimate(judged, "p") if s == system and judged is not None else "-"
        lines.append(f"| {who} | {estimate(est)} | {j} |")
    oracle, neg = c["oracle"], c["negative"]
    lines.append(
        "| oracle: profile fields, no model | "
        f"{estimate(oracle['alignment'])} | {estimate(oracle.get('judge'), 'p')} |"
    )
    lines.append(
        f"| negative: `{system}` vs itself, another seed (null: 0 / 0.5) | "
        f"{estimate(neg['alignment'])} | {estimate(neg.get('judge'), 'p')} |"
    )
    lines += [
        "",
        "A system that never sees a profile (`base`) writes for no reader: its row is the "
        "positive control's own null and should include 0. n = readers, cases; 95% CIs as in "
        "the paired tables (judge: P - 0.5 per case, the same intervals).",
    ]
    return lines


def power_section(metrics: dict[str, Any]) -> list[str]:
    """The Power section: per baseline and headline metric, the smallest effect this run could
    see and the readers the observed effect would need."""
    rows = metrics.get("power") or []
    if not rows or metrics.get("focus") is None:
        return ["No paired headline difference has an interval: there is no power to state."]
    head = (
        "At this run's readers and per-reader spread, 80% power, two-sided 5% (per "
        "comparison): a true difference smaller than 'smallest effect detectable' would "
        "probably be missed, so a null result below says nothing about effects that small."
    )
    return [head, "", *(f"- {line}" for line in power_lines(rows, metrics["focus"]))]
