"""Metrics tables, ``report.md``, ``metrics.json`` and PNG plots of an evaluation."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from gravity.evaluate.metrics import (
    Judgment,
    bootstrap_ci,
    mean_interest,
    preference_gain,
    reader_bootstrap_mean,
    top1_rates,
)
from gravity.profiles.io import atomic_write_text

SMALL_JUDGE_NOTE = (
    "The persona judge here is a {model} model. A judge this small is close to random: its "
    "rankings agree with the offline alignment score on {agreement} of system pairs (50% is "
    "chance). Trust the alignment score more than the judge until a larger judge (e.g. an 8B "
    "model behind `--backend openai` or `vllm`) is used."
)


def _scope(
    judgments: list[Judgment], systems: list[str], alignment_by_reader: dict, n_boot: int, seed: int
) -> dict[str, Any]:
    top1 = top1_rates(judgments, systems)
    result: dict[str, Any] = {
        "cases": len({j.case_id for j in judgments}),
        "top1": {},
        "preference_gain": {},
        "interest": mean_interest(judgments, systems),
        "alignment": {},
    }
    for s in systems:
        ci = bootstrap_ci(judgments, lambda js, s=s: top1_rates(js, systems)[s], n_boot, seed)
        result["top1"][s] = {"value": top1[s], "ci": list(ci)}
        result["preference_gain"][s] = {}
        for b in systems:
            if b == s:
                continue
            gain = preference_gain(judgments, s, b)
            ci = bootstrap_ci(
                judgments, lambda js, s=s, b=b: preference_gain(js, s, b), n_boot, seed
            )
            result["preference_gain"][s][b] = {"value": gain, "ci": list(ci)}
        mean, low, high = reader_bootstrap_mean(alignment_by_reader.get(s, {}), n_boot, seed)
        result["alignment"][s] = {"value": mean, "ci": [low, high]}
    return result


def compute_metrics(
    judgments: list[Judgment],
    cases: list,
    systems: list[str],
    alignment: dict[str, list[float | None]],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Overall and per-country metrics with reader-bootstrap 95% CIs."""

    def by_reader(case_filter) -> dict[str, dict[str, list[float]]]:
        table: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in systems}
        for k, case in enumerate(cases):
            if not case_filter(case):
                continue
            for s in systems:
                value = alignment[s][k]
                if value is not None:
                    table[s][case.reader.id].append(value)
        return table

    countries = sorted({c.reader.country for c in cases})
    metrics: dict[str, Any] = {
        "systems": systems,
        "judged_readers": len({j.reader_id for j in judgments}),
        "overall": _scope(judgments, systems, by_reader(lambda c: True), n_boot, seed),
        "by_country": {},
    }
    for country in countries:
        subset = [j for j in judgments if j.country == country]
        metrics["by_country"][country] = _scope(
            subset, systems, by_reader(lambda c, k=country: c.reader.country == k), n_boot, seed
        )
    return metrics


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}%"


def _ci_pct(v: dict[str, Any]) -> str:
    lo, hi = v["ci"]
    return f"{_pct(v['value'])} [{_pct(lo)}, {_pct(hi)}]"


def _num(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.{digits}f}"


MIN_JUDGED_READERS = 3


def _alignment_line(overall: dict[str, Any], systems: list[str]) -> list[str]:
    aligned = [s for s in systems if not math.isnan(overall["alignment"][s]["value"])]
    if not aligned:
        return []
    best = max(aligned, key=lambda s: overall["alignment"][s]["value"])
    return [
        f"- By the alignment score, `{best}` writes the most reader-specific texts "
        f"({_num(overall['alignment'][best]['value'])})."
    ]


def _reading(metrics: dict[str, Any], systems: list[str]) -> list[str]:
    overall = metrics["overall"]
    judged = metrics.get("judged_readers", 0)
    if judged < MIN_JUDGED_READERS:
        return [
            f"- The judge produced usable rankings for {judged} reader(s) only "
            f"({overall['cases']} case(s)): too few to read the judge's win rates or gains; "
            "they are listed below for completeness.",
            *_alignment_line(overall, systems),
        ]
    top1 = {s: overall["top1"][s]["value"] for s in systems}
    if len({round(v, 9) for v in top1.values()}) == 1:
        return [
            f"- The judge ranks no system first more often than another (each "
            f"{_pct(next(iter(top1.values())))}): with rotated candidates, this is what a judge "
            "that always prefers the same position produces.",
            *_alignment_line(overall, systems),
        ]
    ranked = sorted(systems, key=lambda s: -(top1[s] if not math.isnan(top1[s]) else -1))
    lines = [
        f"- By the judge, `{ranked[0]}` is ranked first most often "
        f"({_pct(top1[ranked[0]])} of cases).",
        *_alignment_line(overall, systems),
    ]
    if "gravity" in systems:
        for b in systems:
            if b == "gravity":
                continue
            g = overall["preference_gain"]["gravity"][b]
            lo, hi = g["ci"]
            verdict = (
                "better than" if lo > 0 else "worse than" if hi < 0 else "not distinguishable from"
            )
            lines.append(
                f"- `gravity` vs `{b}`: preference gain {g['value']:+.1f} points "
                f"[{lo:+.1f}, {hi:+.1f}]: {verdict} `{b}` at this sample size."
            )
    return lines


def markdown(metrics: dict[str, Any], cfg: Any, systems: list[str]) -> str:
    """The report as Markdown."""
    overall = metrics["overall"]
    judge = metrics["judge"]
    agree = judge["agreement_with_alignment"]
    lines = [
        "# gravity evaluation",
        "",
        f"{metrics['readers']} held-out readers, {metrics['cases']} reader-book cases, "
        f"{len(systems)} systems; judge calls {judge['calls']}, parsed {judge['parsed']}, "
        f"rejected {judge['rejected']}. 95% CIs bootstrap readers.",
        "",
        "> "
        + SMALL_JUDGE_NOTE.format(model=f"`{judge['model']}`", agreement=_pct(agree["agreement"]))
        + f" ({agree['pairs']} pairs compared)",
        "",
        "## Reading",
        "",
        *_reading(metrics, systems),
        "",
        "## Overall",
        "",
        "| system | Top-1 win rate [95% CI] | interestingness (1-5) | alignment [95% CI] |",
        "|---|---|---|---|",
    ]
    for s in systems:
        a = overall["alignment"][s]
        lines.append(
            f"| {s} | {_ci_pct(overall['top1'][s])} | {_num(overall['interest'][s], 2)} "
            f"| {_num(a['value'])} [{_num(a['ci'][0])}, {_num(a['ci'][1])}] |"
        )
    lines += [
        "",
        "## Preference gain (row vs column, points; pairwise win rate - 50%)",
        "",
        "| system | " + " | ".join(systems) + " |",
        "|---|" + "---|" * len(systems),
    ]
    for s in systems:
        cells = []
        for b in systems:
            if b == s:
                cells.append("-")
            else:
                g = overall["preference_gain"][s][b]
                cells.append(f"{g['value']:+.1f} [{g['ci'][0]:+.1f}, {g['ci'][1]:+.1f}]")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Per country",
        "",
        "| country | cases | "
        + " | ".join(f"{s} top-1" for s in systems)
        + " | "
        + " | ".join(f"{s} align" for s in systems)
        + " |",
        "|---|---|" + "---|" * (2 * len(systems)),
    ]
    for country, m in metrics["by_country"].items():
        lines.append(
            f"| {country} | {m['cases']} | "
            + " | ".join(_pct(m["top1"][s]["value"]) for s in systems)
            + " | "
            + " | ".join(_num(m["alignment"][s]["value"]) for s in systems)
            + " |"
        )
    lines += [
        "",
        "Plots: `winrates.png` (Top-1 win rate per country with 95% CIs), "
        "`alignment.png` (alignment score per system).",
        "",
        "The alignment score is the embedding similarity (all-MiniLM-L6-v2) of a "
        "description to its reader's profile minus its mean similarity to the other "
        "readers' profiles: above 0 means more about this reader than about the others.",
        "",
        "## Config",
        "",
        "```yaml",
        yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False).strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def plots(out: Path, metrics: dict[str, Any], systems: list[str]) -> None:
    """winrates.png and alignment.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    scopes = {"overall": metrics["overall"], **metrics["by_country"]}
    x = np.arange(len(scopes))
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(scopes)), 4))
    for i, s in enumerate(systems):
        vals = [scopes[k]["top1"][s]["value"] for k in scopes]
        err = [
            [max(0, v - scopes[k]["top1"][s]["ci"][0]) for k, v in zip(scopes, vals)],
            [max(0, scopes[k]["top1"][s]["ci"][1] - v) for k, v in zip(scopes, vals)],
        ]
        ax.bar(
            x + i * width - 0.4 + width / 2,
            np.nan_to_num(vals),
            width,
            label=s,
            yerr=np.nan_to_num(err),
            capsize=3,
        )
    ax.axhline(1 / len(systems), color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(x, [f"{k}\n(n={scopes[k]['cases']} judged)" for k in scopes])
    ax.set_ylabel("Top-1 win rate")
    ax.set_ylim(0, 1)
    ax.set_title("Top-1 win rate by country (persona judge, 95% CI)")
    ax.legend(fontsize=8, ncol=min(len(systems) + 1, 6))
    fig.tight_layout()
    fig.savefig(out / "winrates.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(systems)), 3.5))
    vals = [metrics["overall"]["alignment"][s]["value"] for s in systems]
    lo = [metrics["overall"]["alignment"][s]["ci"][0] for s in systems]
    hi = [metrics["overall"]["alignment"][s]["ci"][1] for s in systems]
    err = [
        np.nan_to_num([max(0, v - a) for v, a in zip(vals, lo)]),
        np.nan_to_num([max(0, b - v) for v, b in zip(vals, hi)]),
    ]
    ax.bar(systems, np.nan_to_num(vals), yerr=err, capsize=4, color="tab:green")
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_ylabel("alignment score")
    ax.set_title("Profile alignment (own profile vs others, 95% CI)")
    fig.tight_layout()
    fig.savefig(out / "alignment.png", dpi=120)
    plt.close(fig)


def _json_safe(value: Any) -> Any:
    """NaN (no data) becomes null, so metrics.json is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_report(out: Path, metrics: dict[str, Any], cfg: Any, systems: list[str]) -> None:
    """metrics.json, report.md and the plots."""
    atomic_write_text(out / "metrics.json", json.dumps(_json_safe(metrics), indent=2) + "\n")
    atomic_write_text(out / "report.md", markdown(metrics, cfg, systems))
    plots(out, metrics, systems)
