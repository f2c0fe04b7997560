"""The ``gravity`` command line: a thin door onto the stages.

gravity profiles sample --country BR --n 100 --seed 0 -o profiles.jsonl
gravity profiles validate profiles.jsonl profiles/examples/*.yaml
gravity profiles show profiles/examples/japan.yaml --facet values
gravity profiles from-answers answers.yaml --country JP -o profile.yaml
gravity run configs/demo.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from gravity import __version__
from gravity.config import RunConfig, load_yaml_model
from gravity.errors import GravityError, printable
from gravity.evaluate.config import EvalConfig
from gravity.events.infer import InferConfig
from gravity.flags import ConfigFlags, config_flags
from gravity.llm.config import BackendConfig
from gravity.profiles.sampler import SamplerConfig
from gravity.renamed import renamed_flag
from gravity.synth.config import GenerateConfig
from gravity.train import TrainConfig

# typer vendors click: its UsageError (the base of NoSuchOption) is reached through the one
# exception it exports.
_UsageError = typer.BadParameter.__base__


class _Group(TyperGroup):
    """Turns a ``GravityError`` anywhere below into one line per problem on stderr, exit 2."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except GravityError as exc:
            # Messages may quote a user's bytes: print them escaped, one problem per line.
            lines = [printable(line, 2000) for line in str(exc).splitlines() if line.strip()]
            for line in lines or [type(exc).__name__]:
                typer.echo(f"error: {line}", err=True)
            raise typer.Exit(2) from None
        except typer.BadParameter as exc:
            # A value typer refused (not a number, not one of a Literal's choices): one line
            # naming the flag, like every other bad input, instead of a usage box.
            message = exc.format_message().replace("Value error, ", "")
            typer.echo(f"error: {printable(message, 2000)}", err=True)
            raise typer.Exit(2) from None
        except _UsageError as exc:
            # A flag renamed when tasks became data (--max-books): one line naming the new one.
            old = getattr(exc, "option_name", None) or ""
            new = renamed_flag(old)
            if new is None:
                raise
            typer.echo(f"error: {old}: renamed {new}", err=True)
            raise typer.Exit(2) from None


def _check_task(
    task: str, flags: ConfigFlags, config: Path | None, fields: tuple[str, ...] = ("task",)
) -> None:
    """Load the config's task before any model: an unknown one blames the flag that named it,
    else the config file's field (``fields``: where the task may have been set)."""
    from gravity.taskspec import UnknownTaskError, load_task

    try:
        load_task(task)
    except UnknownTaskError as exc:
        given = [f for f in fields if tuple(f.split(".")) in flags.given]
        if given:
            where = "--" + given[0]
        elif config is not None:
            where = f"{config}: {fields[0]}"
        else:
            where = "--" + fields[0]
        raise GravityError(f"{where}: {exc.reason}") from None


def _country_flag(value: str, flag: str = "--country") -> str:
    """The ISO code of a country given as a flag; an unknown one is blamed on the flag."""
    from gravity.profiles.countries import UnknownCountryError, normalize_country

    try:
        return normalize_country(value)
    except UnknownCountryError as exc:
        raise GravityError(f"{flag}: {exc}") from None


app = typer.Typer(
    cls=_Group,
    name="gravity",
    help="Personalize LLM writing with profile-grounded synthetic preferences.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
profiles_app = typer.Typer(help="Build, check and show reader profiles.", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
human_app = typer.Typer(help="Human evaluation sheets: export, import.", no_args_is_help=True)
app.add_typer(human_app, name="human")
llm_app = typer.Typer(help="Talk to a model through any backend.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gravity {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="Also show third-party warnings, logs and progress bars (transformers, "
            "datasets, TRL, torch).",
        ),
    ] = False,
) -> None:
    """gravity: profiles -> synthetic preference pairs -> DPO -> per-country evaluation."""
    if not verbose:
        from gravity.quiet import quiet_third_party

        quiet_third_party()


@profiles_app.command("sample")
@config_flags(SamplerConfig)
def profiles_sample(
    country: Annotated[str, typer.Option(help="ISO alpha-2/alpha-3 code or country name.")],
    n: Annotated[int, typer.Option(min=1, help="How many profiles.")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="File (.jsonl/.json/.yaml); stdout if absent."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML with SamplerConfig fields (distributions).")
    ] = None,
    *,
    flags: ConfigFlags,
) -> None:
    """Draw N diverse, seeded profiles for a country."""
    from gravity.profiles import dump_profiles, sample_profiles
    from gravity.profiles.io import profile_to_dict

    code = _country_flag(country)
    sampler = flags.resolve(config)
    profiles = sample_profiles(code, n, seed=seed, config=sampler)
    if output is None:
        for p in profiles:
            sys.stdout.write(json.dumps(profile_to_dict(p), ensure_ascii=False) + "\n")
        return
    dump_profiles(profiles, output)
    typer.echo(f"wrote {len(profiles)} profiles to {output}", err=True)


@profiles_app.command("validate")
def profiles_validate(
    files: Annotated[list[Path], typer.Argument(help="JSON, JSONL or YAML profile files.")],
) -> None:
    """Check profile files; print FILE:LINE: field: reason for each problem (the first 50 of a
    file), exit 2 if any."""
    from gravity.errors import MAX_PROBLEMS
    from gravity.profiles.io import check_profiles

    bad = 0
    for path in files:
        profiles, problems = check_profiles(path, fill_priors=False)
        if problems:
            bad += 1
            for problem in problems[:MAX_PROBLEMS]:
                typer.echo(str(problem), err=True)
            if len(problems) > MAX_PROBLEMS:
                more = f"{path}: more problems not shown (stopped after {MAX_PROBLEMS})"
                typer.echo(more, err=True)
            continue
        typer.echo(f"{path}: {len(profiles)} valid profile(s)")
    if bad:
        raise typer.Exit(2)


@profiles_app.command("show")
def profiles_show(
    file: Annotated[Path, typer.Argument(help="Profile file.")],
    id: Annotated[str | None, typer.Option("--id", help="Only this profile.")] = None,
    facet: Annotated[
        list[str] | None,
        typer.Option(
            help="Facet(s) to show: demographics, culture, values, personality, interests."
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="Name the person and interests in this task's words (default: books)."),
    ] = None,
) -> None:
    """Print the rendered summary that prompts see, with a note where culture values are
    missing."""
    from gravity.profiles import load_profiles
    from gravity.profiles.culture import culture_gaps
    from gravity.profiles.render import check_facets, render_profile
    from gravity.taskspec import load_task

    wording = None if task is None else load_task(task).profile_wording()
    try:  # before any output: a bad flag prints nothing but the error
        check_facets(facet or None)
    except ValueError as exc:
        raise GravityError(f"--facet: {exc}") from None
    profiles = load_profiles(file)
    if id is not None:
        profiles = [p for p in profiles if p.id == id]
        if not profiles:
            raise GravityError(f"{file}: id: no profile with id '{id}'")
    for index, profile in enumerate(profiles):
        if index:
            typer.echo("")
        typer.echo(f"# {profile.id}")
        typer.echo(render_profile(profile, facet or None, wording))
        if facet is None or "culture" in facet:
            for note in culture_gaps(profile):
                typer.echo(f"(note: {note}; this reader's prompts carry none of it)")
        if profile.provenance:
            typer.echo(_provenance_text(profile.provenance))


def _provenance_text(provenance: dict) -> str:
    """Provenance lines: field: source (confidence), detail, evidence quotes."""
    lines = ["Provenance:"]
    for path, p in provenance.items():
        conf = f", confidence {p.confidence:g}" if p.confidence is not None else ""
        detail = f": {p.detail}" if p.detail else ""
        lines.append(f"- {path}: {p.source}{conf}{detail}")
        lines.extend(f'    "{quote}"' for quote in p.evidence)
    return "\n".join(lines)


@profiles_app.command("from-answers")
def profiles_from_answers(
    answers: Annotated[Path, typer.Argument(help="YAML/JSON with bfi10 and/or pvq21 answers.")],
    country: Annotated[
        str | None, typer.Option(help="Country (overrides demographics.country in the file).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Profile file to write; stdout if absent.")
    ] = None,
) -> None:
    """Build a profile from questionnaire answers given by item number."""
    import yaml

    from gravity.profiles import dump_profiles
    from gravity.profiles.builders import profile_from_answers_file
    from gravity.profiles.io import profile_to_dict

    code = _country_flag(country) if country is not None else None
    profile = profile_from_answers_file(answers, country=code)
    if output is None:
        typer.echo(yaml.safe_dump(profile_to_dict(profile), sort_keys=False, allow_unicode=True))
        return
    dump_profiles([profile], output)
    typer.echo(f"wrote profile '{profile.id}' to {output}", err=True)


def _read_prompts(prompt: str | None, prompt_file: Path | None) -> list:
    from gravity.io import jsonl_records, read_text, reading, validate
    from gravity.llm import ChatRequest

    requests = [ChatRequest.from_prompt(prompt)] if prompt else []
    if prompt_file is not None:
        text = sys.stdin.read() if str(prompt_file) == "-" else read_text(prompt_file)
        with reading(prompt_file):
            if prompt_file.suffix == ".jsonl":
                for record in jsonl_records(text, prompt_file):
                    if record.problem is not None:
                        raise record.problem
                    requests.append(validate(ChatRequest, record.data, prompt_file, record.line))
            else:
                requests += [ChatRequest.from_prompt(x) for x in text.splitlines() if x.strip()]
        if len(requests) == (1 if prompt else 0):
            raise GravityError(f"{prompt_file}: no prompts in file")
    if not requests:
        raise GravityError("give a PROMPT or --prompt-file")
    return requests


@llm_app.command("generate")
@config_flags(BackendConfig, panel="Backend (BackendConfig fields)")
def llm_generate(
    prompt: Annotated[str | None, typer.Argument(help="One user prompt.")] = None,
    prompt_file: Annotated[
        Path | None,
        typer.Option(
            help='Prompts, one per line (.txt) or {"messages": [...]} per line (.jsonl); '
            "'-' reads plain prompts, one per line, from standard input."
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML with BackendConfig fields.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 128,
    temperature: Annotated[float, typer.Option(min=0.0)] = 0.7,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.95,
    seed: int = 0,
    n: Annotated[
        int, typer.Option("-n", "--n", min=1, help="Samples per prompt (seeds seed..seed+n-1).")
    ] = 1,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per completion.")
    ] = False,
    store: Annotated[
        Path | None, typer.Option(help="Result store (SQLite); reruns are answered from it.")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not read the store (still writes to it).")
    ] = False,
    *,
    flags: ConfigFlags,
) -> None:
    """Generate completions: check that a backend or server works before a long run."""
    from gravity.llm import SamplingParams, make_backend
    from gravity.llm.engine import Engine
    from gravity.store import Store

    config_model = flags.resolve(config)
    requests = _read_prompts(prompt, prompt_file)
    params = SamplingParams(
        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed, n=n
    )
    db = Store(store) if store else None
    with make_backend(config_model) as llm:
        outs = Engine(llm, db, use_cache=not no_cache).generate(requests, params)
    for index, out in enumerate(outs):
        if json_output:
            record = {"prompt_index": index // n, "sample": index % n, **out.model_dump()}
            typer.echo(json.dumps(record, ensure_ascii=False))
        else:
            typer.echo(
                out.text if len(outs) == 1 else f"--- [{index // n}.{index % n}]\n{out.text}"
            )


@app.command("prompt")
def prompt_cmd(
    item: Annotated[str | None, typer.Option(help="Item id in the catalog.")] = None,
    task: Annotated[
        str, typer.Option(help="Task: a built-in name (`gravity tasks list`) or a task folder.")
    ] = "book-description",
    profile: Annotated[
        Path | None,
        typer.Option(help="Profile file (JSON, JSONL, YAML); absent: the base prompt, no reader."),
    ] = None,
    id: Annotated[
        str | None, typer.Option("--id", help="The profile with this id (files with several).")
    ] = None,
    catalog: Annotated[
        Path | None,
        typer.Option(help="Catalog (CSV, JSONL, parquet); default: the task's own catalog."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the messages as one JSON list.")
    ] = False,
) -> None:
    """Print the prompt a deployed model gets for a reader and an item (what `prompt`, `sft`,
    `naive` and `gravity` see; without --profile, what `base` sees)."""
    from gravity.profiles import load_profiles
    from gravity.task import deployed_messages
    from gravity.taskspec import load_task

    if item is None:
        raise GravityError("--item: missing (an item id of the catalog)")
    spec = load_task(task)

    reader = None
    if profile is not None:
        readers = load_profiles(profile)
        if id is not None:
            readers = [p for p in readers if p.id == id]
            if not readers:
                raise GravityError(f"{profile}: id: no profile with id '{id}'")
        if len(readers) != 1:
            ids = ", ".join(p.id for p in readers[:5])
            raise GravityError(f"{profile}: holds {len(readers)} profiles ({ids}, ...); pick --id")
        reader = readers[0]
    elif id is not None:
        raise GravityError("--id: needs --profile")
    items = spec.load_catalog(catalog)
    chosen = [b for b in items if b.id == item]
    if not chosen:
        known = ", ".join(b.id for b in items[:5])
        where = catalog or f"the catalog of task '{spec.name}'"
        raise GravityError(f"--item: no {spec.noun} '{item}' in {where} (ids like {known}, ...)")
    messages = deployed_messages(reader, chosen[0], spec)
    if json_output:
        typer.echo(json.dumps(messages, ensure_ascii=False, indent=2))
        return
    for message in messages:
        typer.echo(f"--- {message['role']}\n{message['content']}")


@app.command("generate")
@config_flags(GenerateConfig)
def generate(
    profiles: Annotated[
        list[Path], typer.Option(help="Profile file(s) (JSON, JSONL, YAML); repeatable.")
    ],
    out: Annotated[Path, typer.Option(help="Run folder: pairs, rejects, summary, store.")],
    config: Annotated[Path | None, typer.Option(help="YAML with GenerateConfig fields.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read the store.")] = False,
    *,
    flags: ConfigFlags,
) -> None:
    """Synthesize chosen/rejected preference pairs from reader profiles."""
    from gravity.profiles.stream import ReaderStream
    from gravity.synth import synthesize

    cfg = flags.resolve(config)
    _check_task(cfg.task, flags, config)
    with ReaderStream(profiles) as readers:  # validated whole, then streamed: flat memory
        result = synthesize(readers, cfg, out, use_cache=not no_cache, keep_records=False)
    _print_summary(result.summary, out)


def _print_summary(summary: dict, out: Path) -> None:
    typer.echo(
        f"{summary['mode']}: {summary['rows_in']} rows in = {summary['written']} written "
        f"+ {summary['rejected']} rejected; {summary['wall_time_s']} s, "
        f"{summary['tokens_generated'].get('completion', 0)} tokens generated"
    )
    for reason, count in summary["rejects_by_reason"].items():
        typer.echo(f"  rejected {reason}: {count}")
    if summary.get("backend_errors"):
        typer.echo(
            f"  {summary['backend_errors']} of the rejects are requests the backend failed "
            "(out of retries), not judgments of a text: a rerun asks them again"
        )
    for facet, counts in summary["by_facet"].items():
        typer.echo(
            f"  facet {facet}: {counts.get('written', 0)} written, "
            f"{counts.get('rejected', 0)} rejected"
        )
    typer.echo(f"pairs: {out / 'pairs.jsonl'}  summary: {out / 'summary.json'}")


@app.command("merge")
def merge_cmd(
    out: Annotated[Path, typer.Argument(help="Run folder to write (as one process would).")],
    shards: Annotated[
        list[Path], typer.Argument(help="The run folders of `generate --shard I/N`, all N.")
    ],
) -> None:
    """Join the run folders of sharded `gravity generate` runs into one run folder."""
    from gravity.synth.merge import merge_runs

    summary = merge_runs(out, shards)
    _print_summary(summary, out)


@app.command("export")
def export(
    run: Annotated[Path, typer.Argument(help="A `gravity generate` run folder.")],
    out: Annotated[Path, typer.Option(help="Output folder (replaced atomically).")],
    format: Annotated[str, typer.Option("--format", help="hf | parquet | jsonl")] = "hf",
    test_size: Annotated[float, typer.Option(help="Share of readers in the test split.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the reader split.")] = 0,
    license: Annotated[str, typer.Option(help="License field of the dataset card.")] = "apache-2.0",
    push_to_hub: Annotated[
        str | None, typer.Option(help="Also upload to this hub repo (token from HF_TOKEN).")
    ] = None,
    private: Annotated[bool, typer.Option(help="Make the hub repo private.")] = False,
) -> None:
    """Export pairs as a dataset (TRL preference format), split by reader, with a card."""
    from gravity.export import export_run

    stats = export_run(run, out, format, test_size, seed, license, push_to_hub, private)
    for name, st in stats.items():
        typer.echo(f"{name}: {st['pairs']} pairs, {st['users']} readers")
    typer.echo(f"wrote {out}")


_DATA = typer.Option(help="Export folder (hf/parquet/jsonl) or a .parquet/.jsonl file.")
_OUT = typer.Option(help="Output folder for the model or adapter.")


@app.command("train")
@config_flags(TrainConfig)
def train_cmd(
    kind: Annotated[str, typer.Argument(help="dpo (preference pairs) | sft (chosen responses)")],
    data: Annotated[Path, _DATA],
    out: Annotated[Path, _OUT],
    config: Annotated[Path | None, typer.Option(help="YAML with TrainConfig fields.")] = None,
    *,
    flags: ConfigFlags,
) -> None:
    """Train with TRL: `dpo` on preference pairs, or the `sft` baseline (LoRA by default)."""
    from gravity.train import train

    if kind not in ("dpo", "sft"):
        raise GravityError(f"train: unknown kind '{kind}'; valid: dpo, sft")
    cfg = flags.resolve(config)
    summary = train(kind, data, out, cfg)  # type: ignore[arg-type]
    typer.echo(
        f"{kind}: {summary['steps']} steps on {summary['train_pairs']} examples in "
        f"{summary['train_runtime_s']} s, train loss {summary['train_loss']:.4f}; wrote {out}"
    )


_SYSTEMS = "Systems (each adds an entry to the YAML-only `systems` list)"


evaluate_app = typer.Typer(
    help="Compare systems on held-out readers and books: judge, alignment, per country.",
    invoke_without_command=True,
)
app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.callback(invoke_without_command=True)
@config_flags(EvalConfig)
def evaluate_cmd(
    ctx: typer.Context,
    profiles: Annotated[
        list[Path] | None, typer.Option(help="Held-out reader profile file(s).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder: report.md, metrics.json, plots.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML with EvalConfig fields.")] = None,
    sft: Annotated[
        Path | None,
        typer.Option(help="The SFT baseline model (adds system 'sft').", rich_help_panel=_SYSTEMS),
    ] = None,
    naive: Annotated[
        Path | None,
        typer.Option(help="DPO on naive pairs (adds 'naive').", rich_help_panel=_SYSTEMS),
    ] = None,
    gravity_model: Annotated[
        Path | None,
        typer.Option(
            "--gravity", help="DPO on GRAVITY pairs (adds 'gravity').", rich_help_panel=_SYSTEMS
        ),
    ] = None,
    extra_model: Annotated[
        list[str] | None,
        typer.Option(
            help="Any other model dir or hub id (system named after it).",
            rich_help_panel=_SYSTEMS,
        ),
    ] = None,
    *,
    flags: ConfigFlags,
) -> None:
    """Compare systems on held-out readers and books: judge, alignment, per country.

    `gravity evaluate report EVAL_DIR` recomputes an evaluation's report from what it stored."""
    if ctx.invoked_subcommand is not None:
        return
    if not profiles or out is None:
        missing = "--profiles" if not profiles else "--out"
        raise GravityError(f"evaluate: missing option '{missing}' (or use `evaluate report`)")
    from gravity.evaluate import evaluate
    from gravity.profiles import load_many

    base = load_yaml_model(config, EvalConfig) if config else EvalConfig()
    systems = [s.model_dump() for s in base.systems]
    for name, path in (("sft", sft), ("naive", naive), ("gravity", gravity_model)):
        if path is not None:
            systems.append({"name": name, "kind": "model", "model": str(path)})
    for model in extra_model or []:
        name = Path(model).name.replace("/", "-")[:40] or "model"
        systems.append({"name": name, "kind": "model", "model": model})
    cfg = flags.resolve(config, {"systems": systems})
    _check_task(cfg.task, flags, config)
    metrics = evaluate(load_many(profiles), cfg, out)
    _print_eval(metrics, out)


@evaluate_app.command("report")
def evaluate_report(
    evaluation: Annotated[Path, typer.Argument(help="A `gravity evaluate` output folder.")],
    focus: Annotated[
        str | None,
        typer.Option(help="System whose paired differences are reported (default: as stored)."),
    ] = None,
    bootstrap_method: Annotated[
        str | None,
        typer.Option(help="CI method t, BCa or percentile (default: as stored in its config)."),
    ] = None,
) -> None:
    """Recompute metrics.json, report.md and the plots from the stored cases and verdicts (no
    model is called; alignment scores are read, copy rates recomputed)."""
    from gravity.evaluate.recompute import recompute

    metrics = recompute(evaluation, focus, bootstrap_method)
    _print_eval(metrics, evaluation)


def _print_eval(metrics: dict, out: Path) -> None:
    overall, judge = metrics["overall"], metrics["judge"]
    for note in metrics["leakage"]["notes"]:
        typer.echo(f"warning: {note}", err=True)
    for system in metrics["systems"]:
        m = overall["systems"][system]
        top1 = m["top1"]["value"]
        align = m["alignment"]["value"]
        top1_text = "no verdicts" if top1 is None else f"{top1:.1%}"
        align_text = "none" if align is None else f"{align:+.3f}"
        typer.echo(f"{system:>12}: top-1 {top1_text}  alignment {align_text}")
    rate = judge["parse_rate"]
    consistency = judge.get("position_consistency")
    typer.echo(
        f"judge: {judge['parsed']}/{judge['calls']} calls answered"
        + (f" ({rate:.1%})" if rate is not None else "")
        + (f", position consistency {consistency:.1%}" if consistency is not None else "")
    )
    typer.echo(f"report: {out / 'report.md'}")


@human_app.command("export")
def human_export(
    evaluation: Annotated[Path, typer.Argument(help="A `gravity evaluate` output folder.")],
    out: Annotated[Path, typer.Option(help="Folder for sheets.csv, key.json, HTML forms.")],
    show_profile: Annotated[
        bool,
        typer.Option(
            help="Show the reader's profile on the form, for raters judging on a reader's "
            "behalf (default: the form is for the reader to fill in as themselves)."
        ),
    ] = False,
) -> None:
    """Write ranking sheets (CSV + one HTML form per reader) for human raters."""
    from gravity.evaluate.human import export_sheets

    n = export_sheets(evaluation, out, show_profile=show_profile)
    typer.echo(f"{n} cases -> {out / 'sheets.csv'} and {out}/reader-*.html (keep key.json private)")


@human_app.command("import")
def human_import(
    evaluation: Annotated[Path, typer.Argument(help="The evaluation folder the sheets came from.")],
    filled: Annotated[list[Path], typer.Argument(help="Filled CSV sheet(s), one or more raters.")],
    sheets: Annotated[Path, typer.Option(help="The folder `gravity human export` wrote.")],
    out: Annotated[
        Path, typer.Option(help="Folder for ratings/<rater>.csv, human-metrics.json, report.md.")
    ],
    focus: Annotated[
        str | None,
        typer.Option(
            help="System whose paired differences are reported (default: the evaluation's focus)."
        ),
    ] = None,
) -> None:
    """Compute the evaluation metrics from human rankings (all raters imported into OUT)."""
    from gravity.evaluate.human import import_rankings

    metrics = import_rankings(evaluation, sheets, filled, out, focus=focus)
    human = metrics["human"]
    for system in metrics["systems"]:
        top1 = metrics["overall"]["systems"][system]["top1"]["value"]
        typer.echo(f"{system:>12}: human top-1 {'none' if top1 is None else f'{top1:.1%}'}")
    alpha = human["agreement"]["alpha"]
    typer.echo(
        f"{len(human['raters'])} rater(s), {human['rankings']} rankings; "
        + (
            f"Krippendorff's alpha {alpha:.3f}"
            if alpha is not None
            else f"no agreement figure ({human['agreement']['reason']})"
        )
    )
    typer.echo(f"report: {out / 'report.md'} (metrics: {out / 'human-metrics.json'})")


@app.command("run")
@config_flags(RunConfig)
def run(
    config: Annotated[Path, typer.Argument(help="Run config (YAML), e.g. configs/demo.yaml.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (sets out_dir).")] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check the config and print the plan (readers, books, pairs, LLM calls, "
            "estimated tokens and time per stage); loads no model, writes nothing.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --dry-run: print the plan as JSON.")
    ] = False,
    *,
    flags: ConfigFlags,
) -> None:
    """Run the whole pipeline a config describes; reruns continue where they stopped."""
    cfg = flags.resolve(config, {"out_dir": out} if out is not None else None)
    _check_task(cfg.generate.task, flags, config, ("task", "generate.task", "evaluate.task"))
    if dry_run:
        from gravity.plan import build_plan, render_plan

        plan = build_plan(cfg)
        typer.echo(
            plan.model_dump_json(indent=2) if as_json else render_plan(plan, config), nl=as_json
        )
        return
    if as_json:
        raise GravityError("--json: goes with --dry-run")
    from gravity.run import run_pipeline

    run_pipeline(cfg)


events_app = typer.Typer(
    help="Real readers: import event histories, summarize them.", no_args_is_help=True
)
app.add_typer(events_app, name="events")
from gravity.intents.cli import intents_app  # noqa: E402
from gravity.taskcheck import tasks_app  # noqa: E402

app.add_typer(intents_app, name="intents")
app.add_typer(tasks_app, name="tasks")


@events_app.command("import")
def events_import(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Input: a folder, archive or file(s), as the format needs."),
    ],
    format: Annotated[
        str, typer.Option("--format", help="bookcrossing | goodreads | goodbooks | amazon | events")
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Events folder to write (swapped in atomically).")
    ],
    user_id: Annotated[
        str, typer.Option(help="User id of the reader of a Goodreads export.")
    ] = "goodreads-reader",
    rating_min: Annotated[float, typer.Option(help="Lowest rating (format 'events').")] = 1.0,
    rating_max: Annotated[float, typer.Option(help="Highest rating (format 'events').")] = 5.0,
) -> None:
    """Import users, items and events; print rows in = imported + rejected."""
    from gravity.events.importers import import_events

    meta = import_events(format, paths, output, user_id, rating_min, rating_max)
    for source in meta.rows_in:
        typer.echo(
            f"{source}: {meta.rows_in[source]} rows in = {meta.imported.get(source, 0)} imported "
            f"+ {meta.rejected.get(source, 0)} rejected"
        )
    for reason, count in meta.rejects_by_reason.items():
        typer.echo(f"  rejected {reason}: {count}")
    for note, count in meta.notes.items():
        typer.echo(f"  note {note}: {count}")
    typer.echo(f"wrote {output} (rejects: {output / 'rejects.jsonl'})")


@events_app.command("stats")
def events_stats_cmd(
    events: Annotated[Path, typer.Argument(help="Events folder from `gravity events import`.")],
    min_ratings: Annotated[
        int, typer.Option(min=1, help="Ratings that make a reader 'active'.")
    ] = 10,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Users, items, events by kind and action, ratings, readers per country."""
    from gravity.events import read_events_dir
    from gravity.events.stats import events_stats

    stats = events_stats(read_events_dir(events), min_ratings=min_ratings)
    if json_output:
        typer.echo(json.dumps(stats, indent=2, ensure_ascii=False))
        return
    for key, value in stats.items():
        if isinstance(value, dict):
            shown = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
            typer.echo(f"{key}: {shown}")
        else:
            typer.echo(f"{key}: {value}")


@profiles_app.command("infer")
@config_flags(InferConfig)
def profiles_infer(
    events: Annotated[Path, typer.Option(help="Events folder from `gravity events import`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Profiles file (.jsonl/.yaml).")],
    config: Annotated[Path | None, typer.Option(help="YAML with InferConfig fields.")] = None,
    store: Annotated[
        Path | None, typer.Option(help="Result store (default: OUTPUT.store.sqlite).")
    ] = None,
    *,
    flags: ConfigFlags,
) -> None:
    """Infer reader profiles from event histories; every field carries its provenance. The
    task (--task) supplies the LLM steps' words: its tag vocabulary, item noun and reviews."""
    from gravity.events import read_events_dir
    from gravity.events.infer import infer_profiles, infer_task
    from gravity.io import atomic_write_text
    from gravity.profiles import dump_profiles

    cfg = flags.resolve(config)
    if output.suffix.lower() not in (".jsonl", ".json", ".yaml", ".yml"):
        raise GravityError(f"{output}: unknown extension; use .jsonl, .json or .yaml")
    _check_task(cfg.task, flags, config)
    infer_task(cfg)  # a task without what the LLM steps need fails before the events are read
    data = read_events_dir(events)
    store_path = store or output.with_name(output.name + ".store.sqlite")
    result = infer_profiles(data, cfg, store=store_path)
    if not result.profiles:
        reasons = ", ".join(f"{k}: {v}" for k, v in result.skipped.items()) or "no users"
        raise GravityError(f"{events}: no profile could be inferred ({reasons})")
    summary = {
        "profiles": len(result.profiles),
        "skipped": dict(result.skipped),
        "llm_rejects": dict(result.llm_rejects),
        "sources": dict(sorted(result.sources.items())),
        "item_tags": result.item_tags,
        "config": cfg.model_dump(mode="json"),
    }
    dump_profiles(result.profiles, output)
    summary_path = output.with_name(output.name + ".summary.json")
    atomic_write_text(summary_path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    typer.echo(f"wrote {len(result.profiles)} profiles to {output} (summary: {summary_path})")
    for reason, count in result.skipped.items():
        typer.echo(f"  skipped {reason}: {count}")
    for reason, count in result.llm_rejects.items():
        typer.echo(f"  llm reject {reason}: {count}")


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
