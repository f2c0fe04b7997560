"""Human evaluation: the same comparison as ranking sheets for people, and back to metrics.

``export_sheets`` writes, from an evaluation folder, ``sheets.csv`` (one row per description,
blank ``rank`` and ``interest`` columns), one self-contained HTML form per reader (it downloads
the filled rows as CSV) and ``key.json`` (which label is which system; keep it from raters).
``import_rankings`` reads filled CSVs and computes the same metrics as the persona judge.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gravity.errors import GravityError
from gravity.evaluate.judge import labels_for, permutation
from gravity.evaluate.metrics import Judgment
from gravity.profiles.io import atomic_write_text

COLUMNS = [
    "case_id",
    "reader_id",
    "country",
    "book_title",
    "label",
    "description",
    "rank",
    "interest",
]

FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Book descriptions for {reader}</title>
<style>body{{font-family:sans-serif;max-width:52em;margin:2em auto;line-height:1.4}}
.case{{border-top:2px solid #888;margin-top:2em}}
.cand{{margin:1em 0;padding:.5em;background:#f4f4f4}} label{{margin-right:1em}}
</style></head><body>
<h1>Which description makes you want to read the book?</h1>
<p>For each book, rank the descriptions (1 = most appealing; each rank once) and rate how
interesting each is (1 = dull, 5 = fascinating). Then press <b>Download</b> and send the file
back.</p>
{cases}
<p><button onclick="download()">Download</button> <span id="msg"></span></p>
<script>
const rows = {rows};
function csvCell(v) {{
  v = String(v);
  return /[",\\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
}}
function download() {{
  const header = {columns};
  const lines = [header.join(",")];
  for (const r of rows) {{
    r.rank = document.getElementById("rank-" + r.case_id + "-" + r.label).value;
    r.interest = document.getElementById("int-" + r.case_id + "-" + r.label).value;
    lines.push(header.map(h => csvCell(r[h])).join(","));
  }}
  const blob = new Blob([lines.join("\\n") + "\\n"], {{type: "text/csv"}});
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob); a.download = "rankings-{reader}.csv"; a.click();
  document.getElementById("msg").textContent = "saved";
}}
</script></body></html>
"""


def _read_cases(eval_dir: Path) -> list[dict[str, Any]]:
    path = eval_dir / "cases.jsonl"
    if not path.is_file():
        raise GravityError(f"{eval_dir}: no cases.jsonl; is this a `gravity evaluate` folder?")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def export_sheets(eval_dir: str | Path, out: str | Path, seed: int = 0) -> int:
    """Write sheets.csv, key.json and reader-<id>.html; returns the number of cases."""
    eval_dir, out = Path(eval_dir), Path(out)
    cases = _read_cases(eval_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, key = [], {}
    for case in cases:
        systems = sorted(case["descriptions"])
        order = permutation(systems, case["case_id"], 0, seed + 1)  # not the judge's order
        labels = labels_for(len(order))
        key[case["case_id"]] = dict(zip(labels, order))
        for label, system in zip(labels, order):
            rows.append(
                {
                    "case_id": case["case_id"],
                    "reader_id": case["reader_id"],
                    "country": case["country"],
                    "book_title": case["book_title"],
                    "label": label,
                    "description": case["descriptions"][system],
                    "rank": "",
                    "interest": "",
                }
            )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "sheets.csv", buffer.getvalue())
    atomic_write_text(out / "key.json", json.dumps(key, indent=2) + "\n")
    for reader in sorted({r["reader_id"] for r in rows}):
        mine = [r for r in rows if r["reader_id"] == reader]
        blocks = []
        for case_id in dict.fromkeys(r["case_id"] for r in mine):
            cands = [r for r in mine if r["case_id"] == case_id]
            n = len(cands)
            parts = [f'<div class="case"><h2>{html.escape(cands[0]["book_title"])}</h2>']
            for r in cands:
                rid = f"{r['case_id']}-{r['label']}"
                ranks = "".join(f"<option>{i}</option>" for i in range(1, n + 1))
                ints = "".join(f"<option>{i}</option>" for i in range(1, 6))
                parts.append(
                    f'<div class="cand"><b>[{r["label"]}]</b> {html.escape(r["description"])}'
                    f'<br><label>rank <select id="rank-{html.escape(rid)}"><option></option>'
                    f"{ranks}</select></label><label>interest <select "
                    f'id="int-{html.escape(rid)}"><option></option>{ints}</select></label></div>'
                )
            parts.append("</div>")
            blocks.append("".join(parts))
        page = FORM.format(
            reader=html.escape(reader),
            cases="\n".join(blocks),
            rows=json.dumps(mine).replace("</", "<\\/"),
            columns=json.dumps(COLUMNS),
        )
        atomic_write_text(out / f"reader-{reader}.html", page)
    return len(cases)


def read_rankings(paths: list[Path], key: dict[str, dict[str, str]]) -> list[Judgment]:
    """Judgments from filled sheets; errors name the file, line and column."""
    by_case: dict[tuple[str, str], dict[str, tuple[int, int | None]]] = {}
    meta: dict[str, tuple[str, str]] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise GravityError(f"{path}: cannot read: {exc.strerror}") from None
        reader = csv.DictReader(io.StringIO(text))
        missing = [
            c
            for c in ("case_id", "reader_id", "country", "label", "rank")
            if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise GravityError(f"{path}: missing column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            case_id, label = row["case_id"], row["label"]
            if case_id not in key or label not in key[case_id]:
                raise GravityError(f"{path}:{line}: case_id/label: unknown '{case_id}' / '{label}'")
            try:
                rank = int(row["rank"])
            except ValueError:
                raise GravityError(
                    f"{path}:{line}: rank: '{row['rank']}' is not a number"
                ) from None
            interest = None
            if (row.get("interest") or "").strip():
                try:
                    interest = int(row["interest"])
                except ValueError:
                    raise GravityError(
                        f"{path}:{line}: interest: '{row['interest']}' is not a number"
                    ) from None
                if not 1 <= interest <= 5:
                    raise GravityError(f"{path}:{line}: interest: {interest} is outside 1-5")
            rater = f"{path.name}"
            by_case.setdefault((case_id, rater), {})[label] = (rank, interest)
            meta[case_id] = (row["reader_id"], row["country"])
    judgments = []
    for (case_id, rater), answers in sorted(by_case.items()):
        labels = key[case_id]
        ranks = sorted(r for r, _ in answers.values())
        if set(answers) != set(labels) or ranks != list(range(1, len(labels) + 1)):
            raise GravityError(
                f"{rater}: case {case_id}: ranks must be 1..{len(labels)}, each "
                f"once, for labels {sorted(labels)}; got {ranks}"
            )
        ordered = sorted(answers, key=lambda lab: answers[lab][0])
        reader_id, country = meta[case_id]
        judgments.append(
            Judgment(
                case_id=case_id,
                reader_id=reader_id,
                country=country,
                ranking=tuple(labels[lab] for lab in ordered),
                interest={
                    labels[lab]: float(v) for lab, (_, v) in answers.items() if v is not None
                },
            )
        )
    return judgments


def import_rankings(
    eval_dir: str | Path,
    sheets: str | Path,
    filled: list[Path],
    out: str | Path,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics from human rankings, written as metrics.json and report-style Markdown."""
    from gravity.evaluate.report import _json_safe, compute_metrics

    eval_dir, sheets, out = Path(eval_dir), Path(sheets), Path(out)
    key_path = sheets / "key.json"
    if not key_path.is_file():
        raise GravityError(f"{sheets}: no key.json; pass the folder `export-human` wrote")
    key = json.loads(key_path.read_text())
    judgments = read_rankings(filled, key)
    cases_data = _read_cases(eval_dir)
    cases = [
        SimpleNamespace(
            id=c["case_id"], reader=SimpleNamespace(id=c["reader_id"], country=c["country"])
        )
        for c in cases_data
    ]
    systems = sorted(cases_data[0]["descriptions"])
    alignment = {s: [c["alignment"].get(s) for c in cases_data] for s in systems}
    metrics = compute_metrics(judgments, cases, systems, alignment, n_boot, seed)
    metrics["human"] = {"judgments": len(judgments), "files": [str(p) for p in filled]}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "human-metrics.json", json.dumps(_json_safe(metrics), indent=2) + "\n")
    return metrics
