"""``gravity run --dry-run``: what a run config would do, counted before anything runs.

    gravity run configs/demo.yaml --dry-run
    gravity run configs/paper.yaml --dry-run --json

The config is checked as ``gravity run`` checks it before it writes anything (book split, readers
built, no reader on both sides, the extras each stage needs), then counted from the same code the
run uses: the slots of each synthesis mode (``build_slots``: readers x books x facets x
scenarios), the evaluation cases (``build_cases``), the LLM calls of every step, the training
steps of every system. No model is loaded, nothing is generated and nothing is written.

Estimates, and what they rest on:

- Completion tokens: every call at its token limit (an upper bound; outputs often stop earlier).
- Prompt tokens: prompts rendered from the real templates for a spread of up to
  ``SAMPLE`` calls per step, scaled to all calls; a text generated earlier in the run (a
  scenario inside a chosen prompt, descriptions inside a judge prompt) counts at its token
  limit; the JSON-schema instruction a constrained judge's prompt gains is not counted. Counted
  with the model's tokenizer when it is on this machine (no download), else as
  characters / 4 (the usual figure for English text under BPE tokenizers); the plan says which.
- Time: completion tokens / ``tokens_per_s`` + prompt tokens / ``prompt_tokens_per_s`` per step,
  training pairs / ``train_pairs_per_s`` per system; model loading, embeddings and plots are not
  counted. Unset figures (``RunConfig.plan``) default to those measured for the embedded model
  on a 2-core CPU, for the stages that run it on ``transformers``; other stages get no time.
- Calls count first attempts: a rejected output is retried up to ``generate.max_attempts``
  times; pairs are an upper bound (rejects remove some).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gravity.books import Book
from gravity.config import RunConfig
from gravity.errors import GravityError
from gravity.evaluate.config import EvalConfig, SystemSpec
from gravity.llm.base import ChatRequest
from gravity.llm.config import BackendConfig
from gravity.llm.embedded import cache_root, is_embedded
from gravity.profiles.models import UserProfile
from gravity.taskspec import Task, load_task

SAMPLE = 48
"""Prompts rendered per step to measure its mean prompt length."""

# Measured on a 2-core x86-64 CPU, embedded SmolLM2-135M-Instruct, transformers backend, fp32
# (README, Performance): 148.1 completion tok/s at batch 16 (bench/engine.py P2); DPO 0.091
# pairs/s with LoRA r=8 and 0.082 full (bench/train.py, batch 2, max_length 512). Prompt
# tokens: likelihood judging (``score_labels``) of 16 persona-judge prompts of ~625 tokens in one
# batch read 10,007 tokens in 57.4 s of process CPU time on 2 threads, i.e. 350 tok/s with the
# cores to itself (the machine was shared: 113 tok/s wall at load average 6.8).
EMBEDDED_TOKENS_PER_S = 148.1
EMBEDDED_PROMPT_TOKENS_PER_S = 350.0
EMBEDDED_TRAIN_PAIRS_PER_S = {"lora": 0.091, "full": 0.082}
CHARS_PER_TOKEN = 4

# Backends whose package a run imports when it loads them: (module, extra).
BACKEND_PACKAGES = {"vllm": ("vllm", "vllm"), "llamacpp": ("llama_cpp", "llamacpp")}


class Step(BaseModel):
    """One kind of LLM call of a stage: how many, how many tokens, how long."""

    stage: str
    step: str
    backend: str
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float | None


class Training(BaseModel):
    """One system's training: its rows, optimizer steps and estimated time."""

    system: str
    kind: str
    source_mode: str
    rows: int
    steps: int
    seconds: float | None


class Plan(BaseModel):
    """What ``gravity run`` would do with a config; see the module docstring for estimates."""

    out_dir: str
    readers: dict[str, dict[str, int]]
    books: dict[str, int]
    modes: dict[str, dict[str, int]]
    evaluation: dict[str, Any]
    steps: list[Step]
    training: list[Training]
    token_counting: dict[str, str]
    rates: dict[str, str]
    stage_seconds: dict[str, float | None]
    total_seconds: float | None
    warnings: list[str]
    power: list[str] = []


def _installed(module: str) -> bool:
    from gravity.synth.pipeline import installed

    return installed(module)


class TokenCounter:
    """Prompt tokens of a request under a model's tokenizer when it is on this machine (never
    downloaded), else characters / 4."""

    def __init__(self) -> None:
        self._tokenizers: dict[str, Any] = {}
        self.methods: dict[str, str] = {}

    def _tokenizer(self, model: str) -> Any:
        if model in self._tokenizers:
            return self._tokenizers[model]
        source: str | None = model
        if is_embedded(model):  # its converted checkpoint, if a run already made it
            folder = cache_root() / "models" / "smollm2-135m-instruct"
            source = str(folder) if (folder / "config.json").is_file() else None
        elif model.endswith(".gguf"):
            source = None  # reading a GGUF's tokenizer means parsing the weights file
        tokenizer = None
        if source is not None and _installed("transformers"):
            try:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            except Exception:  # not cached here, not a model folder: fall back to chars / 4
                tokenizer = None
        self._tokenizers[model] = tokenizer
        self.methods[model] = (
            f"tokenizer ({source})"
            if tokenizer is not None
            else f"characters / {CHARS_PER_TOKEN} (no tokenizer of this model on this machine)"
        )
        return tokenizer

    def count(self, request: ChatRequest, model: str) -> int:
        """Prompt tokens of ``request`` as ``model`` would read it."""
        tokenizer = self._tokenizer(model)
        messages = request.as_dicts()
        if tokenizer is not None:
            try:  # as the transformers backend builds its prompts
                text = tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
            except Exception:  # no chat template: the text alone
                text = "\n".join(m["content"] for m in messages)
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])
        return math.ceil(sum(len(m["content"]) for m in messages) / CHARS_PER_TOKEN)


def _spread(n: int, k: int = SAMPLE) -> list[int]:
    """Up to ``k`` indexes spread evenly over ``range(n)``."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


class _Estimator:
    """Builds the steps of a plan: calls, tokens and time per step."""

    def __init__(self, cfg: RunConfig, counter: TokenCounter) -> None:
        self.cfg = cfg
        self.counter = counter
        self.steps: list[Step] = []
        self.unpriced: set[str] = set()

    def rate(self, backend: BackendConfig, model: str, field: str) -> float | None:
        given = getattr(self.cfg.plan, field)
        if given is not None:
            return given
        if backend.backend == "transformers" and is_embedded(model):
            return (
                EMBEDDED_TOKENS_PER_S if field == "tokens_per_s" else EMBEDDED_PROMPT_TOKENS_PER_S
            )
        self.unpriced.add(f"{backend.backend}:{model}")
        return None

    def add(
        self,
        stage: str,
        step: str,
        backend: BackendConfig,
        model: str,
        calls: int,
        request: Callable[[int], ChatRequest],
        completion_per_call: int,
        extra_prompt_per_call: int = 0,
    ) -> None:
        """A step of ``calls`` calls; ``request(i)`` renders call ``i``'s prompt."""
        picked = _spread(calls)
        counted = [self.counter.count(request(i), model) for i in picked]
        mean = sum(counted) / len(counted) if counted else 0.0
        prompt = round((mean + extra_prompt_per_call) * calls)
        completion = completion_per_call * calls
        out_rate = self.rate(backend, model, "tokens_per_s")
        in_rate = self.rate(backend, model, "prompt_tokens_per_s")
        seconds = (
            completion / out_rate + prompt / in_rate
            if out_rate is not None and in_rate is not None
            else None
        )
        self.steps.append(
            Step(
                stage=stage,
                step=step,
                backend=backend.backend,
                model=model,
                calls=calls,
                prompt_tokens=prompt,
                completion_tokens=completion,
                seconds=None if seconds is None else round(seconds, 1),
            )
        )


def estimate_step(
    stage: str,
    step: str,
    backend: BackendConfig,
    requests: list[ChatRequest],
    completion_per_call: int,
    cfg: RunConfig | None = None,
) -> Step:
    """One LLM step's calls, tokens and time, estimated as ``gravity run --dry-run`` does."""
    est = _Estimator(cfg or RunConfig(), TokenCounter())
    est.add(
        stage,
        step,
        backend,
        backend.model,
        len(requests),
        requests.__getitem__,
        completion_per_call,
    )
    return est.steps[0]


def announce_step(step: Step, max_attempts: int, fast_stop: int) -> str:
    """The line said before an LLM step starts: its calls and the time they may take."""
    retries = (
        f", then up to {max_attempts - 1} retries of failed answers" if max_attempts > 1 else ""
    )
    stop = f"; stops if its first {fast_stop} answers all fail" if fast_stop else ""
    time = (
        f"first pass at most about {_duration(step.seconds)} (every answer at its token limit)"
        if step.seconds is not None
        else f"time not estimated for {step.backend}:{step.model} (no measured tokens/s)"
    )
    return f"{step.step}: {step.calls} LLM calls{retries}{stop}; {time}"


def _likelihood(backend: BackendConfig, method: str) -> bool:
    """Whether a judge on ``backend`` reads label probabilities (no tokens generated)."""
    from gravity.llm import BACKENDS
    from gravity.llm.base import Backend

    can_score = BACKENDS[backend.backend].score_labels is not Backend.score_labels
    return method == "likelihood" or (method == "auto" and can_score)


def _gravity_steps(est: _Estimator, cfg: RunConfig, slots: list[Any], intents: Any | None) -> int:
    """Scenario, chosen and rejected calls of gravity mode; returns the pairs it can make."""
    from gravity.run import sampler_config
    from gravity.synth.pipeline import Grounding
    from gravity.synth.tasks import DescriptionRow, DescriptionTask, ScenarioRow, ScenarioTask

    genres = cfg.generate.contrast_genres or sampler_config(cfg.profiles).genres
    gen = cfg.generate.model_copy(update={"contrast_genres": genres})
    task = load_task(gen.task)
    describe = DescriptionTask(gen.filters, task)
    scenario = ScenarioTask(gen.filters.on_truncation, task)
    placeholder = "an intent from the graph" if gen.intent_graph and intents is None else None
    grounding = Grounding(gen, intents, placeholder)
    ready = []  # the others are rejected before any call (missing facet, no other intent)
    for s in slots:
        text, row = grounding.facet_text(s), grounding.rejected_row(s)
        if isinstance(text, str) and isinstance(row, DescriptionRow):
            ready.append((s, text, row))

    def scenarios(i: int) -> ChatRequest:
        s, text, _ = ready[i]
        return scenario.build_messages(ScenarioRow(s.book, s.facet, text))

    def chosen(i: int) -> ChatRequest:
        s, text, _ = ready[i]
        return describe.build_messages(DescriptionRow(s.book, s.facet, text, ""))

    def rejected(i: int) -> ChatRequest:
        return describe.build_messages(ready[i][2])

    stage, backend, model, n = "synthesis (gravity)", gen.backend, gen.backend.model, len(ready)
    est.add(stage, "scenarios", backend, model, n, scenarios, gen.scenario_tokens)
    # a chosen prompt holds its scenario: counted at the scenario's token limit
    est.add(
        stage,
        "chosen descriptions",
        backend,
        model,
        n,
        chosen,
        gen.description_tokens,
        gen.scenario_tokens,
    )
    step = f"rejected descriptions ({gen.rejected_strategy})"
    est.add(stage, step, backend, model, n, rejected, gen.description_tokens)
    return n


def _naive_steps(est: _Estimator, cfg: RunConfig, slots: list[Any]) -> int:
    """Candidate and quality-judge calls of naive mode; returns the pairs it can make."""
    from gravity.synth.tasks import DescriptionRow, DescriptionTask, JudgeRow, QualityJudgeTask

    gen = cfg.generate
    task = load_task(gen.task)
    describe = DescriptionTask(gen.filters, task)
    quality = QualityJudgeTask(task)
    likely = _likelihood(gen.backend, "auto")  # the quality judge's method is always auto
    n = len(slots)

    def candidate(i: int) -> ChatRequest:
        return describe.build_messages(DescriptionRow(slots[i % n].book))

    def judgment(i: int) -> ChatRequest:
        row = JudgeRow(slots[i % n].book, "", "")
        return quality.build_messages(row, "letter" if likely else "json")

    stage, backend, model = "synthesis (naive)", gen.backend, gen.backend.model
    est.add(
        stage, "candidates (2 per pair)", backend, model, 2 * n, candidate, gen.description_tokens
    )
    # both candidates sit in a judgment's prompt; LabelJudge's answer limit is 24 tokens
    est.add(
        stage,
        "quality judgments (both orders)",
        backend,
        model,
        2 * n,
        judgment,
        0 if likely else 24,
        2 * gen.description_tokens,
    )
    return n


def _synthesis(
    est: _Estimator,
    cfg: RunConfig,
    readers: list[UserProfile],
    books: list[Book],
    warnings: list[str],
) -> dict[str, dict[str, int]]:
    """Steps of every synthesis mode; mode -> {slots, pairs (at most)}."""
    from gravity.synth.pipeline import build_slots

    intents = _intent_graph(cfg, books, warnings)
    modes = {}
    for mode in cfg.modes:
        gen = cfg.generate.model_copy(update={"mode": mode})
        slots = build_slots(readers, books, gen, intents)
        pairs = (
            _gravity_steps(est, cfg, slots, intents)
            if mode == "gravity"
            else _naive_steps(est, cfg, slots)
        )
        modes[mode] = {"slots": len(slots), "pairs": pairs}
    return modes


def _intent_graph(cfg: RunConfig, books: list[Book], warnings: list[str]) -> Any | None:
    """The run's intent graph, when it names one that is built (read from disk, no model);
    one not built yet is a warning, and the plan counts as if it chose books at random and
    had a path for every reader and book."""
    from gravity.intents.graph import MANIFEST
    from gravity.synth.pipeline import load_intents

    path = cfg.generate.intent_graph
    if path is None:
        return None
    if not (path / MANIFEST).is_file():
        warnings.append(
            f"generate.intent_graph: {path} is not built yet (`gravity intents build`); "
            "counted as if every reader had a path to random books"
        )
        return None
    return load_intents(cfg.generate, books)


def _systems(cfg: RunConfig) -> list[SystemSpec]:
    """The systems evaluation compares: the configured ones plus each trained system."""
    trained = [
        SystemSpec(name=s, kind="model", model=str(cfg.out_dir / "models" / s))
        for s in cfg.train_systems
    ]
    return list(cfg.evaluate.systems) + trained


def _evaluation(
    est: _Estimator, cfg: RunConfig, heldout: list[UserProfile], books: list[Book]
) -> dict[str, Any]:
    """Steps of the evaluation; its counts."""
    from gravity.evaluate.runner import build_cases

    systems = _systems(cfg)
    cases = build_cases(heldout, books, cfg.evaluate)
    _description_steps(est, cfg, cases, systems)
    calls, likely = _judge_steps(est, cfg.evaluate, cases, len(systems))
    control_calls = _control_steps(est, cfg, cases, systems)
    return {
        "cases": len(cases),
        "systems": [s.name for s in systems],
        "protocol": cfg.evaluate.protocol,
        "judge_method": "likelihood" if likely else "constrained",
        "judge_calls": calls,
        "interest_calls": len(cases) * len(systems),
        "control_calls": control_calls,
    }


def _control_steps(
    est: _Estimator, cfg: RunConfig, cases: list[Any], systems: list[SystemSpec]
) -> dict[str, int]:
    """The controls' extra calls: a partner's description where the partner has no case on the
    item (per system), the control system's description under the other seed, and (controls
    ``all``) the judge's three control pairs per case in both orders."""
    from gravity.evaluate.controls import control_system, partners
    from gravity.task import deployed_messages

    ev: EvalConfig = cfg.evaluate
    if ev.controls == "off" or not cases:
        return {"descriptions": 0, "judge": 0}
    task = load_task(ev.task)
    have = {c.id for c in cases}
    chosen = partners(cases, ev.seed)
    missing = len({f"{p.id}:{c.book.id}" for c in cases if (p := chosen.get(c.id))} - have)
    system = control_system([(s.name, s.kind) for s in systems], ev.focus)
    model = cfg.train.model  # base, prompt and trained systems all run the base model

    def request(i: int) -> ChatRequest:
        case = cases[i % len(cases)]
        return ChatRequest.model_validate(
            {"messages": deployed_messages(case.reader, case.book, task)}
        )

    n = missing * len(systems) + len(cases)
    est.add(
        "evaluation",
        f"control descriptions (partners, [{system}] reseeded)",
        ev.generation,
        model,
        n,
        request,
        ev.max_new_tokens,
    )
    judge = 6 * len(cases) if ev.controls == "all" else 0
    if judge:
        _control_judge_step(est, ev, cases, task)
    return {"descriptions": n, "judge": judge}


def _control_judge_step(est: _Estimator, ev: EvalConfig, cases: list[Any], task: Task) -> None:
    """The judge's three control pairs per case, both orders (controls ``all``)."""
    likely = _likelihood(ev.judge, ev.judge_method)
    answer = "letter" if likely else "json"

    def pair(i: int) -> ChatRequest:
        case = cases[i // 6]
        prompt = task.render(
            "judge_pair",
            case.book,
            profile_text=task.profile_text(case.reader),
            first="",
            second="",
            answer=answer,
        )
        return ChatRequest.from_prompt(prompt)

    answer_tokens = 0 if likely else ev.judge_max_new_tokens
    label = "control judgments (3 pairs x 2 orders)"
    est.add(
        "evaluation",
        label,
        ev.judge,
        ev.judge.model,
        6 * len(cases),
        pair,
        answer_tokens,
        2 * ev.max_new_tokens,
    )


def _description_steps(
    est: _Estimator, cfg: RunConfig, cases: list[Any], systems: list[SystemSpec]
) -> None:
    """Each system's description of each case."""
    from gravity.task import deployed_messages

    ev: EvalConfig = cfg.evaluate
    task = load_task(ev.task)
    for spec in systems:
        # base and prompt run the base model; trained systems are adapters of it
        trained = spec.kind != "model" or spec.name in cfg.train_systems
        model = cfg.train.model if trained else str(spec.model)

        def request(i: int, spec: SystemSpec = spec) -> ChatRequest:
            profile = None if spec.kind == "base" else cases[i].reader
            return ChatRequest.model_validate(
                {"messages": deployed_messages(profile, cases[i].book, task)}
            )

        name = f"descriptions [{spec.name}]"
        est.add("evaluation", name, ev.generation, model, len(cases), request, ev.max_new_tokens)


def _judge_steps(est: _Estimator, ev: EvalConfig, cases: list[Any], k: int) -> tuple[int, bool]:
    """The judge's calls over ``k`` systems' descriptions and its interest ratings; returns
    (judge calls, whether the judge reads label likelihoods)."""
    task = load_task(ev.task)
    likely = _likelihood(ev.judge, ev.judge_method)
    answer = "letter" if likely else "json"
    answer_tokens = 0 if likely else ev.judge_max_new_tokens
    n = len(cases)

    def render(role: str, i: int, **variables: Any) -> str:
        profile_text = task.profile_text(cases[i].reader)
        return task.render(role, cases[i].book, profile_text=profile_text, **variables)

    if ev.protocol == "pairwise":
        per_case, shown = math.comb(k, 2) * 2, 2  # every pair of systems, in both orders
        label = "pairwise judgments (pairs x 2 orders)"

        def judge(i: int) -> ChatRequest:
            prompt = render("judge_pair", i // per_case, first="", second="", answer=answer)
            return ChatRequest.from_prompt(prompt)
    else:
        per_case, shown = k, k  # one call per rotation of the candidates
        label = "ranking judgments (1 per rotation)"

        def judge(i: int) -> ChatRequest:
            candidates = [{"label": chr(65 + j), "text": ""} for j in range(k)]
            prompt = render("judge_persona", i // k, candidates=candidates, answer=answer)
            return ChatRequest.from_prompt(prompt)

    calls = n * per_case
    extra = shown * ev.max_new_tokens
    est.add("evaluation", label, ev.judge, ev.judge.model, calls, judge, answer_tokens, extra)
    est.add(
        "evaluation",
        "interest ratings (1 per description)",
        ev.judge,
        ev.judge.model,
        n * k,
        lambda i: ChatRequest.from_prompt(render("judge_interest", i // k, text="", answer=answer)),
        answer_tokens,
        ev.max_new_tokens,
    )
    return calls, likely


def _training(
    cfg: RunConfig, modes: dict[str, dict[str, int]], warnings: list[str]
) -> list[Training]:
    """Rows, optimizer steps (as the HF Trainer counts them, one device) and time per system."""
    t = cfg.train
    knobs = {**t.model_dump(), **t.trl_overrides}
    batch = int(knobs["per_device_train_batch_size"]) * int(knobs["gradient_accumulation_steps"])
    rate = cfg.plan.train_pairs_per_s
    if rate is None and is_embedded(t.model):
        rate = EMBEDDED_TRAIN_PAIRS_PER_S["full" if t.full else "lora"]
    if rate is None and cfg.train_systems:
        warnings.append(
            f"training time not estimated: no measured pairs/s for {t.model}; "
            "set plan.train_pairs_per_s"
        )
    out = []
    for system in cfg.train_systems:
        source = "naive" if system == "naive" else "gravity"
        pairs = modes.get(source, {}).get("pairs", 0)
        rows = pairs - round(pairs * cfg.test_size)  # the export's test split holds readers out
        batches = math.ceil(rows / int(knobs["per_device_train_batch_size"]))
        per_epoch = max(math.ceil(batches / int(knobs["gradient_accumulation_steps"])), 1)
        max_steps = int(knobs["max_steps"])
        steps = max_steps if max_steps > 0 else math.ceil(knobs["num_train_epochs"] * per_epoch)
        steps = steps if rows else 0
        # SFT is timed at the DPO rate: an upper bound (one sequence through one model, where
        # DPO passes chosen and rejected through the policy and the reference model).
        seconds = None if rate is None else round(steps * batch / rate, 1)
        kind = "sft" if system == "sft" else "dpo"
        out.append(
            Training(
                system=system,
                kind=kind,
                source_mode=source,
                rows=rows,
                steps=steps,
                seconds=seconds,
            )
        )
    return out


def _inference(est: _Estimator, cfg: RunConfig) -> None:
    """The LLM steps of reader inference from events (item tags, traits from reviews)."""
    from gravity.events.infer import llm_requests
    from gravity.run import EventsCache

    events = EventsCache()
    for side in ("profiles", "heldout"):
        stage = getattr(cfg, side)
        if stage.events is None or not (stage.infer.text_inference or stage.infer.tag_items):
            continue
        infer = stage.infer
        for name, requests in llm_requests(events.read(stage.events), infer).items():
            if requests:
                est.add(
                    f"{side} (infer)",
                    name,
                    infer.backend,
                    infer.backend.model,
                    len(requests),
                    requests.__getitem__,
                    infer.max_new_tokens,
                )


def _offline_profiles(cfg: RunConfig) -> tuple[RunConfig, list[str]]:
    """``cfg`` with the LLM steps of reader inference off (they would load a model), and a
    warning for each side that has them."""
    update, warnings = {}, []
    for side in ("profiles", "heldout"):
        stage = getattr(cfg, side)
        infer = stage.infer
        if stage.events is not None and (infer.text_inference or infer.tag_items):
            offline = infer.model_copy(update={"text_inference": False, "tag_items": False})
            update[side] = stage.model_copy(update={"infer": offline})
            warnings.append(
                f"{side}.infer: readers counted without text inference and item tagging; their "
                "LLM calls are counted before held-out books are set aside (an upper bound)"
            )
    return cfg.model_copy(update=update), warnings


def _requirements(cfg: RunConfig) -> list[str]:
    """What ``gravity run`` would refuse or fail to load on this machine, as warnings."""
    from gravity.run import check_run_requirements

    warnings = []
    try:
        check_run_requirements(cfg)
    except GravityError as exc:
        warnings.append(f"gravity run would stop here: {exc}")
    backends = [cfg.generate.backend, cfg.evaluate.generation, cfg.evaluate.judge]
    for name in sorted({b.backend for b in backends} & set(BACKEND_PACKAGES)):
        module, extra = BACKEND_PACKAGES[name]
        if not _installed(module):
            warnings.append(
                f"backend {name}: {module} is not installed here; the machine that runs this "
                f"needs pip install 'gravity[{extra}]'"
            )
    return warnings


def _rates(cfg: RunConfig) -> dict[str, str]:
    """Each throughput figure the times rest on, and where it comes from."""
    defaults = {
        "tokens_per_s": EMBEDDED_TOKENS_PER_S,
        "prompt_tokens_per_s": EMBEDDED_PROMPT_TOKENS_PER_S,
        "train_pairs_per_s": EMBEDDED_TRAIN_PAIRS_PER_S["full" if cfg.train.full else "lora"],
    }
    return {
        name: f"{given} (configured: plan.{name})"
        if (given := getattr(cfg.plan, name)) is not None
        else f"{default} (default: measured for the embedded model on transformers, 2-core CPU; "
        "applied only to the stages that run it)"
        for name, default in defaults.items()
    }


def build_plan(cfg: RunConfig) -> Plan:
    """Check ``cfg`` as ``gravity run`` does before writing anything, and count what it would
    do; loads no model and writes nothing. Bad input raises ``GravityError``."""
    from gravity.run import prepare_run

    offline, warnings = _offline_profiles(cfg)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # build_profiles reports set-aside events
        readers, heldout, train_books, held_books = prepare_run(offline)
    warnings += [line for line in printed.getvalue().splitlines() if line.strip()]
    warnings += _requirements(cfg)
    if len(heldout) < 2:
        warnings.append("evaluate would stop: it needs at least two held-out readers")
    counter = TokenCounter()
    est = _Estimator(cfg, counter)
    _inference(est, cfg)
    modes = _synthesis(est, cfg, readers, train_books, warnings)
    evaluation = _evaluation(est, cfg, heldout, held_books)
    training = _training(cfg, modes, warnings)
    for name in sorted(est.unpriced):
        warnings.append(
            f"{name}: no measured tokens/s; its steps have no time (set plan.tokens_per_s and "
            "plan.prompt_tokens_per_s)"
        )
    stage_seconds: dict[str, float | None] = {}
    parts = [(s.stage, s.seconds) for s in est.steps]
    parts += [(f"training ({t.system})", t.seconds) for t in training]
    for stage, seconds in parts:
        known = stage_seconds.get(stage, 0.0)
        stage_seconds[stage] = None if known is None or seconds is None else known + seconds
    stage_seconds = {k: None if v is None else round(v, 1) for k, v in stage_seconds.items()}
    times = list(stage_seconds.values())
    return Plan(
        out_dir=str(cfg.out_dir),
        readers={
            "training": dict(sorted(Counter(p.country for p in readers).items())),
            "heldout": dict(sorted(Counter(p.country for p in heldout).items())),
        },
        books={"training": len(train_books), "heldout": len(held_books)},
        modes=modes,
        evaluation=evaluation,
        steps=est.steps,
        training=training,
        token_counting=counter.methods,
        rates=_rates(cfg),
        stage_seconds=stage_seconds,
        total_seconds=None if None in times else round(sum(times), 1),  # type: ignore[arg-type]
        warnings=warnings,
        power=_power(cfg, len(heldout), len(held_books)),
    )


def _power(cfg: RunConfig, readers: int, books: int) -> list[str]:
    """What an evaluation of ``readers`` held-out readers on ``books`` held-out items could
    detect, sized by the per-reader SDs of the reference evaluation ``plan.reference`` names
    (none named: no lines); with the reference's ``cases.jsonl`` beside it, the alignment
    differences also by their reader and item variance (items stay fixed as readers grow)."""
    import json

    from gravity.evaluate.power import power_lines, power_rows, two_way_lines, two_way_rows

    path = cfg.plan.reference
    if path is None:
        return []
    try:
        metrics = json.loads(Path(path).read_text())
        focus = metrics["focus"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GravityError(
            f"plan.reference: {path}: not an evaluation's metrics.json ({exc})"
        ) from None
    lines = [f"power, from {path}:", *power_lines(power_rows(metrics, n=readers), focus)]
    cases_path = Path(path).parent / "cases.jsonl"
    if cases_path.is_file():
        try:
            cases = [json.loads(x) for x in cases_path.read_text().splitlines() if x.strip()]
        except ValueError as exc:
            raise GravityError(f"plan.reference: {cases_path}: not JSON lines ({exc})") from None
        lines += two_way_lines(two_way_rows(cases, focus, readers, books), focus)
    return lines


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def render_plan(plan: Plan, config: Path | None = None) -> str:
    """The plan as plain lines for a terminal."""
    lines = [f"dry run of {config or 'the config'}: nothing loaded, generated or written"]
    for side, by in plan.readers.items():
        shown = ", ".join(f"{c} {n}" for c, n in by.items()) or "none"
        lines.append(f"readers {side}: {sum(by.values())} ({shown})")
    lines.append(f"books: {plan.books['training']} training, {plan.books['heldout']} held-out")
    for mode, counts in plan.modes.items():
        lines.append(f"pairs {mode}: {counts['slots']} slots, at most {counts['pairs']} pairs")
    ev = plan.evaluation
    lines.append(
        f"evaluation: {ev['cases']} cases x {len(ev['systems'])} systems "
        f"({', '.join(ev['systems'])}); {ev['protocol']} judge, {ev['judge_method']}"
    )
    lines.append("")
    lines.append(f"{'stage / step':<58} {'calls':>7} {'prompt tok':>11} {'compl. tok':>11} time")
    for s in plan.steps:
        name = f"{s.stage}: {s.step}"
        lines.append(
            f"{name:<58} {s.calls:>7} {s.prompt_tokens:>11} {s.completion_tokens:>11} "
            f"{_duration(s.seconds)}"
        )
    for t in plan.training:
        name = f"training: {t.system} ({t.kind} on {t.rows} {t.source_mode} pairs)"
        lines.append(f"{name:<58} {t.steps:>7} {'steps':>11} {'':>11} {_duration(t.seconds)}")
    lines.append("")
    lines.append("estimated time per stage (an estimate, not a promise):")
    lines.extend(f"  {stage}: {_duration(sec)}" for stage, sec in plan.stage_seconds.items())
    lines.append(f"estimated total: {_duration(plan.total_seconds)}")
    lines.append(
        "completion tokens at their limits (an upper bound); first attempts only; model "
        "loading not counted"
    )
    for name, rate in plan.rates.items():
        lines.append(f"{name}: {rate}")
    for model, how in plan.token_counting.items():
        lines.append(f"prompt tokens of {model}: {how}")
    lines.extend(plan.power)
    lines.extend(f"warning: {w}" for w in plan.warnings)
    return "\n".join(lines) + "\n"
