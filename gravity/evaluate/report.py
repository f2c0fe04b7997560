"""``report.md``, ``metrics.json`` and the PNG plots, rendered from computed metrics.

Nothing is aggregated here (see ``metrics.py``); every sentence of the "Reading" section is derived
from measured figures, and a section without data says why instead of showing an empty table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gravity.evaluate.control_report import (
    control_lines,
    control_table,
    judge_evidence,
    power_section,
)
from gravity.flags import config_yaml
from gravity.io import atomic_write_text

METRIC_NAMES = {
    "preference_gain": "preference gain (points)",
    "top1": "Top-1 win rate",
    "interest": "interestingness (1-5)",
    "alignment": "alignment",
    "copy_rate": "copy rate",
}
PERCENT = {"top1", "copy_rate"}  # shown as percentages / percentage points
PAIRED = "paired per case, mean over readers; n = readers, cases"


def fmt_value(value: float, metric: str, signed: bool = False) -> str:
    """A number as the report shows it for ``metric``."""
    if metric in PERCENT:
        value *= 100
        return f"{value:+.1f}" if signed else f"{value:.1f}%"
    if metric == "preference_gain":
        return f"{value:+.1f}"
    digits = 2 if metric == "interest" else 3
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def cell(est: dict[str, Any], metric: str, signed: bool = False) -> str:
    """One estimate: value [CI], or why there is none."""
    if est["status"] == "no_data":
        return "no data"
    if est["status"] == "too_few":
        return f"too few readers (n={est['n']})"
    text = fmt_value(est["value"], metric, signed)
    if est["ci"] is not None:
        lo, hi = (fmt_value(x, metric, signed) for x in est["ci"])
        text += f" [{lo}, {hi}]"
    return text


def direction(est: dict[str, Any]) -> str | None:
    """'higher' / 'lower' / 'not distinguishable from 0': the label after the Holm correction
    where metrics.json has one, else whether the raw CI excludes 0; None when there is no CI."""
    if est["status"] != "ok" or est["ci"] is None:
        return None
    if "label" in est:
        return est["label"]
    lo, hi = est["ci"]
    return "higher" if lo > 0 else "lower" if hi < 0 else "not distinguishable from 0"


def _pct(x: float | None) -> str:
    return "none measured" if x is None else f"{100 * x:.1f}%"


def _chance(agree: dict[str, Any]) -> str:
    """The agreement share read against chance (50%) by its binomial test."""
    p = agree.get("p")
    if p is None or p >= 0.05:
        shown = "" if p is None else f", binomial p = {p:.2g}"
        return f"not distinguishable from chance (50%{shown})"
    side = "above" if agree["agreement"] > 0.5 else "below"
    return f"{side} chance (50%; binomial p = {p:.2g})"


def _judge_lines(metrics: dict[str, Any]) -> list[str]:
    judge = metrics["judge"]
    lines = []
    parse = judge["parse_rate"]
    if parse is None:
        lines.append("- The judge made no calls: there was nothing to compare.")
    else:
        quality = "usable" if parse >= 0.95 else "incomplete: read its figures with care"
        lines.append(
            f"- The judge ({judge['method']} judging) answered {judge['parsed']} of "
            f"{judge['calls']} calls ({_pct(parse)}): {quality}."
        )
    consistency = judge.get("position_consistency")
    if consistency is not None:
        unit = "pairs" if judge["protocol"] == "pairwise" else "cases"
        mass = judge.get("first_position_mass")
        if mass is not None:
            lines.append(
                f"- On average it gave the description shown first {_pct(mass)} of its "
                "probability (50% is no position preference)."
            )
        if consistency < 0.5:
            lines.append(
                f"- It mostly follows position: only {_pct(consistency)} of {unit} keep their "
                "verdict when the order changes. Its probabilities are averaged over both orders, "
                "which cancels the position preference but leaves only what signal is left: win "
                "rates near chance say more about the judge than about the systems."
            )
        else:
            lines.append(
                f"- {_pct(consistency)} of {unit} keep their verdict when the order changes "
                "(position consistency)."
            )
    agree = judge["agreement_with_alignment"]
    if agree["agreement"] is None:
        lines.append(
            "- Its verdicts cannot be compared with the alignment score: it decided no pair "
            "the score orders."
        )
    else:
        lines.append(
            f"- Where it decides, it orders {_pct(agree['agreement'])} of {agree['pairs']} system "
            f"pairs as the alignment score does: {_chance(agree)}."
        )
    if judge["self_preference_systems"]:
        lines.append(
            f"- The judge (`{judge['model']}`) is the model behind "
            + ", ".join(f"`{s}`" for s in judge["self_preference_systems"])
            + ": it may prefer its own model's writing (self-preference). A judge from another "
            "model family avoids this."
        )
    return lines


def _focus_lines(metrics: dict[str, Any]) -> list[str]:
    focus = metrics["focus"]
    if focus is None:
        return ["- No focus system is among the systems: no paired differences are reported."]
    lines = []
    family = metrics.get("multiple_comparisons")
    if family:
        lines.append(
            f"- Higher/lower below are labels after a Holm correction over the "
            f"{family['overall']} overall comparisons (per country: {family['by_country']}, "
            "one family); the CIs are uncorrected 95% intervals."
        )
    unvalidated = judge_evidence(metrics) is not True
    for baseline, by_metric in metrics["overall"]["paired"].items():
        parts = []
        for metric in ("preference_gain", "top1", "interest", "alignment"):
            if metric not in by_metric or by_metric[metric]["status"] == "no_data":
                continue
            est = by_metric[metric]
            verdict = direction(est)
            if verdict and unvalidated and metric != "alignment":
                verdict = "judge not validated: not evidence"
            text = f"{METRIC_NAMES[metric]} {cell(est, metric, signed=True)}"
            parts.append(text + (f" ({verdict})" if verdict else ""))
        lines.append(f"- `{focus}` - `{baseline}`, paired per case: " + "; ".join(parts) + ".")
        align, copy = by_metric.get("alignment"), by_metric.get("copy_rate")
        if (
            align is not None
            and copy is not None
            and align["value"] is not None
            and align["value"] > 0
            and copy["value"] is not None
            and copy["value"] > 0
            and (copy["ci"] is None or copy["ci"][0] > 0)
        ):
            lines.append(
                f"  Its alignment gain over `{baseline}` coincides with more copying of the "
                f"profile (copy rate {fmt_value(copy['value'], 'copy_rate', True)} points): part "
                "of the gain may be profile words repeated rather than personalization."
            )
    return lines


def _length_lines(metrics: dict[str, Any]) -> list[str]:
    length, focus = metrics["length"], metrics["focus"]
    if not length.get("pairs") or focus is None:
        return []
    raw = [v for v in length["raw"][focus].values()]
    if not raw:
        return []
    line = (
        f"- `{focus}` writes {length['mean_words'][focus]:.0f} words on average; its mean win "
        f"rate against the other systems is {_pct(sum(raw) / len(raw))} as judged"
    )
    if length.get("status", "ok") != "ok":
        lines = [f"{line}; no length-controlled win rate: {length['reason']}."]
    else:
        parts = [
            f"`{b}` {_pct(v)} [{_pct(lo)}, {_pct(hi)}]"
            for b, v in length["lc"][focus].items()
            for lo, hi in [length["lc_ci"][focus][b]]
        ]
        lines = [
            f"{line}; length-controlled (at equal length, 95% CI): "
            + ", ".join(parts)
            + f" (length coefficient {length['gamma']:+.2f}; above 0: longer texts win more "
            "often)."
        ]
    mixed = [pair for pair in length.get("confounded", []) if focus in pair]
    if mixed:
        lines.append(
            "  Length and system are confounded for "
            + ", ".join(f"`{a}` vs `{b}`" for a, b in mixed)
            + ": one writes longer in at least 95% of cases, so a length-controlled rate "
            "there rests on the few cases that differ (read its CI)."
        )
    return lines


def _echo_lines(metrics: dict[str, Any]) -> list[str]:
    found = metrics.get("echoes") or []
    if not found:
        return []
    shown = ", ".join(
        f"`{e['system']}` on `{e['case_id']}` ({_pct(e['copy_rate'])})" for e in found[:5]
    )
    more = f" and {len(found) - 5} more (metrics.json: echoes)" if len(found) > 5 else ""
    return [
        f"- {len(found)} description(s) echo the profile (half or more of their tokens are "
        f"found in it): {shown}{more}. One such text can carry a paired difference on its "
        "own: check the estimate without its reader."
    ]


def reading(metrics: dict[str, Any]) -> list[str]:
    """The "Reading" section, derived from the measured figures."""
    return [
        *control_lines(metrics),
        *_judge_lines(metrics),
        *_focus_lines(metrics),
        *_echo_lines(metrics),
        *_length_lines(metrics),
    ]


def _system_table(
    scope: dict[str, Any], systems: list[str], words: dict[str, float] | None = None
) -> list[str]:
    metrics = [
        m
        for m in ("top1", "interest", "alignment", "copy_rate")
        if m in scope["systems"][systems[0]]
    ]
    head = [METRIC_NAMES[m] for m in metrics] + (["words"] if words else [])
    lines = ["| system | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for s in systems:
        cells = [cell(scope["systems"][s][m], m) for m in metrics]
        if words:
            cells.append(f"{words.get(s, 0):.0f}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return lines


def _paired_table(scope: dict[str, Any], focus: str) -> list[str]:
    first = next(iter(scope["paired"].values()), {})
    metrics = [
        m for m in ("preference_gain", "top1", "interest", "alignment", "copy_rate") if m in first
    ]
    lines = [
        f"| `{focus}` minus | " + " | ".join(METRIC_NAMES[m] for m in metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for baseline, by_metric in scope["paired"].items():
        cells = [_paired_cell(by_metric[m], m) for m in metrics]
        lines.append(f"| {baseline} | " + " | ".join(cells) + " |")
    return lines


def _paired_cell(est: dict[str, Any], metric: str) -> str:
    """A paired difference with the readers (and cases) it pairs: only cases where both
    systems have a value count, so n can differ from cell to cell."""
    text = cell(est, metric, signed=True)
    if est["status"] != "ok":
        return text
    cases = est.get("cases")
    return text + (f" (n={est['n']}" + (f", {cases} cases)" if cases is not None else ")"))


def _gain_matrix(scope: dict[str, Any], systems: list[str]) -> list[str]:
    if not scope["judged_cases"]:
        return ["No case has a complete set of verdicts, so there is no preference gain to show."]
    lines = ["| system | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
    for s in systems:
        cells = [
            "-" if b == s else cell(scope["preference_gain"][s][b], "preference_gain")
            for b in systems
        ]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return lines


def _length_table(metrics: dict[str, Any], systems: list[str]) -> list[str]:
    length = metrics["length"]
    if not length.get("pairs"):
        return ["No judged pairs: there is no win rate to control for length."]
    lines = [
        "| system | mean words | win rate vs others (judged) | length-controlled win rate |",
        "|---|---|---|---|",
    ]
    for s in systems:
        raw, lc = list(length["raw"][s].values()), list(length.get("lc", {}).get(s, {}).values())
        controlled = _pct(sum(lc) / len(lc)) if lc else "not estimable"
        lines.append(
            f"| {s} | {length['mean_words'][s]:.1f} | {_pct(sum(raw) / len(raw))} | {controlled} |"
        )
    return lines


def _header(metrics: dict[str, Any], systems: list[str]) -> list[str]:
    judge, boot = metrics["judge"], metrics["bootstrap"]
    consistency = judge.get("position_consistency")
    task = metrics.get("task") or {"name": "book-description", "noun": "book", "digest": "?"}
    return [
        "# gravity evaluation",
        "",
        f"Task: `{task['name']}` (digest {task['digest']}).",
        "",
        f"{metrics['readers']} held-out readers, {metrics['cases']} reader-{task['noun']} cases, "
        f"{len(systems)} systems. Judge: `{judge['model']}` ({judge['backend']}), "
        f"{judge['protocol']} protocol, {judge['method']} judging; {judge['parsed']} of "
        f"{judge['calls']} calls answered ({_pct(judge['parse_rate'])}); position consistency "
        f"{_pct(consistency)}; {judge['identical_pairs']} pair(s) of identical descriptions "
        f"counted as ties; {judge['excluded_cases']} case(s) excluded for a missing verdict.",
        "",
        ci_note(boot),
    ]


def ci_note(boot: dict[str, Any]) -> str:
    """How the report's 95% CIs were computed (metrics.json records each cell's method)."""
    if boot["method"] == "t":
        how = (
            "t intervals over readers (mean +- t quantile x standard error; they hold their "
            "level on simulated null data from 8 readers up, where BCa does not); a paired "
            "difference whose readers share books takes its standard error clustered by reader "
            "and by book ('two-way-t' in metrics.json)"
        )
    else:
        how = (
            f"{boot['method']} bootstrap over readers ({boot['resamples']} resamples, "
            "scipy.stats.bootstrap; where BCa is undefined for a cell's data, the percentile CI)"
        )
    return (
        f"95% CIs: {how}; a Top-1 win rate, a share, has a Wilson interval; where every reader "
        "has the same value, that value as both bounds, as metrics.json records per cell; a "
        "cell with fewer than "
        f"{boot['min_readers']} readers says 'too few readers'."
    )


def markdown(metrics: dict[str, Any], cfg: Any) -> str:
    """The report as Markdown."""
    systems, focus = metrics["systems"], metrics["focus"]
    overall = metrics["overall"]
    words = metrics["length"]["mean_words"]
    lines = [*_header(metrics, systems), "", "## Reading", "", *reading(metrics), ""]
    lines += ["## Overall", "", *_system_table(overall, systems, words), ""]
    if focus is not None:
        lines += [
            f"## `{focus}` against each baseline ({PAIRED})",
            "",
            *_paired_table(overall, focus),
            "",
        ]
    lines += [
        "## Controls",
        "",
        *control_table(metrics),
        "",
        "## Power",
        "",
        *power_section(metrics),
        "",
        "## Preference gain (row vs column, points: pairwise win rate - 50%)",
        "",
        *_gain_matrix(overall, systems),
        "",
        "## Length",
        "",
        *_length_table(metrics, systems),
        "",
        "## Per country",
        "",
    ]
    min_readers = metrics["bootstrap"]["min_readers"]
    by_words = metrics["length"].get("mean_words_by_country", {})
    for country, scope in metrics["by_country"].items():
        lines += [f"### {country} ({scope['readers']} readers)", ""]
        if scope["readers"] < min_readers:  # every cell would say so: say it once
            lines += [
                f"Too few readers (n={scope['readers']}, fewer than min_readers={min_readers}) "
                "for any per-country figure.",
                "",
            ]
            continue
        lines += [*_system_table(scope, systems, by_words.get(country)), ""]
        if focus is not None:
            lines += [*_paired_table(scope, focus), ""]
    lines += _notes(metrics)
    lines += [
        "## Config",
        "",
        "```yaml",
        config_yaml(cfg).strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _notes(metrics: dict[str, Any]) -> list[str]:
    leakage = metrics.get("leakage", {})
    checked = leakage.get("checked_against") or []
    lines = [
        "## Notes",
        "",
        "Plots: "
        + (
            "`winrates.png` (Top-1 win rate per system, overall and per country, 95% CIs), "
            if "winrates.png" in metrics.get("plots", [])
            else "no `winrates.png` (no case has a complete set of verdicts), "
        )
        + (
            "`alignment.png` (alignment score and copy rate per system)."
            if "alignment.png" in metrics.get("plots", [])
            else "no `alignment.png` (every description is empty)."
        ),
        "",
        "Definitions are in the README (section Evaluation). Alignment: embedding similarity "
        "(all-MiniLM-L6-v2) of a description to its reader's profile minus its mean similarity "
        "to the other readers' profiles. Copy rate: the share of a description's tokens found in "
        "the reader's rendered profile, order-free, each token counted at most as often as the "
        "profile has it; scripts without spaces count character bigrams (`base` never sees the "
        "profile: its copy rate is the chance level).",
        "",
        "Held-out check: "
        + (
            "readers and books were checked against " + ", ".join(f"`{p}`" for p in checked)
            if checked
            else "no training data was given or recorded; readers and books were not checked"
        )
        + ".",
    ]
    lines += [f"- {note}" for note in leakage.get("notes", [])]
    return [*lines, ""]


def human_markdown(metrics: dict[str, Any]) -> str:
    """The human evaluation's summary: raters, their agreement, and the judged metrics (the
    offline alignment score is not a human result and is left out)."""
    systems, focus, human = metrics["systems"], metrics["focus"], metrics["human"]
    agreement = human["agreement"]
    alpha = (
        f"Krippendorff's alpha (ordinal, ranks) {agreement['alpha']:.3f} over "
        f"{agreement['units']} descriptions ranked by two or more raters"
        if agreement["alpha"] is not None
        else f"inter-rater agreement not computed: {agreement['reason']}"
    )
    boot = metrics["bootstrap"]
    lines = [
        "# gravity human evaluation",
        "",
        f"{len(human['raters'])} rater(s) ({', '.join(human['raters'])}), {human['rankings']} "
        f"rankings of {human['cases']} cases; {alpha}.",
        "",
        ci_note(boot) + " Several raters of one case are combined by mean rank.",
        "",
        "## Overall",
        "",
        *_system_table(metrics["overall"], systems),
        "",
    ]
    if focus is not None:
        lines += [
            f"## `{focus}` against each baseline ({PAIRED})",
            "",
        ]
        lines += [*_paired_table(metrics["overall"], focus), ""]
    lines += ["## Preference gain (row vs column, points)", ""]
    lines += [*_gain_matrix(metrics["overall"], systems), "", "## Per country", ""]
    for country, scope in metrics["by_country"].items():
        lines += [f"### {country} ({scope['readers']} readers)", ""]
        lines += [*_system_table(scope, systems), ""]
    return "\n".join(lines)


def plots(out: Path, metrics: dict[str, Any]) -> list[str]:
    """winrates.png and alignment.png; returns the names written. A plot with no data to show
    is not written (the report says why)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = metrics["systems"]
    written = []
    scopes = {"overall": metrics["overall"], **metrics["by_country"]}
    if any(scopes["overall"]["systems"][s]["top1"]["status"] != "no_data" for s in systems):
        fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(scopes)), 4.2))
        _bars(ax, scopes, systems, "top1")
        ax.axhline(1 / len(systems), color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_ylabel("Top-1 win rate")
        ax.set_ylim(0, 1)
        ax.set_title("Top-1 win rate (persona judge, 95% CI)")
        ax.legend(fontsize=8, ncol=min(len(systems) + 1, 6))
        fig.tight_layout()
        fig.savefig(out / "winrates.png", dpi=120)
        plt.close(fig)
        written.append("winrates.png")
    overall = metrics["overall"]["systems"]
    if all(
        overall[s].get(m, {}).get("value") is None
        for s in systems
        for m in ("alignment", "copy_rate")
    ):
        return written
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 2.4 * len(systems)), 3.8))
    for ax, metric, title in (
        (axes[0], "alignment", "Alignment (own profile vs others)"),
        (axes[1], "copy_rate", "Copy rate (share of tokens found in the profile)"),
    ):
        _bars(ax, {"overall": metrics["overall"]}, systems, metric)
        ax.axhline(0, color="grey", linewidth=1)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "alignment.png", dpi=120)
    plt.close(fig)
    written.append("alignment.png")
    return written


def _bars(ax: Any, scopes: dict[str, Any], systems: list[str], metric: str) -> None:
    """Grouped bars with CI whiskers; a cell with too few readers is a label, not a bar."""
    width = 0.8 / len(systems)
    colors = [f"C{i}" for i in range(len(systems))]
    labelled: set[str] = set()
    for i, s in enumerate(systems):
        for x, scope in enumerate(scopes.values()):
            est = scope["systems"][s].get(metric)
            if est is None:
                continue
            pos = x + i * width - 0.4 + width / 2
            if est["value"] is None:
                continue
            if est["status"] != "ok":  # no number where the readers are too few
                ax.text(
                    pos,
                    0,
                    f"too few readers (n={est['n']})",
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color=colors[i],
                )
                continue
            err = None
            if est["ci"] is not None:
                lo, hi = est["ci"]
                err = [[max(0.0, est["value"] - lo)], [max(0.0, hi - est["value"])]]
            ax.bar(
                pos,
                est["value"],
                width,
                color=colors[i],
                yerr=err,
                capsize=3,
                label=s if s not in labelled else None,
            )
            labelled.add(s)
    ax.set_xticks(range(len(scopes)), [f"{k}\n({v['readers']} readers)" for k, v in scopes.items()])


def _json_safe(value: Any) -> Any:
    """Non-finite floats become null and tuple keys strings, so metrics.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {
            ("/".join(k) if isinstance(k, tuple) else k): _json_safe(v) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_report(out: Path, metrics: dict[str, Any], cfg: Any) -> None:
    """metrics.json, report.md and the plots."""
    metrics["plots"] = plots(out, metrics)
    atomic_write_text(out / "metrics.json", json.dumps(_json_safe(metrics), indent=2) + "\n")
    atomic_write_text(out / "report.md", markdown(metrics, cfg))
