"""The paper's ablation as one command: `speechllm experiment configs/paper_ablation.yaml`.

Each row of the experiment is a training run: the base run config plus the row's overrides (rows
are cumulative by default, as the paper's table is: "+ synthetic labels" keeps the proposed
adapter, "+ LoRA" keeps the regularizer). Every row trains on the same utterances for the same
time budget (`train.max_minutes`), once per seed, and is then scored on the same evaluation
manifest with the SLUE scorers. The table goes to `results.md` / `results.json` with a plot.

Data, as the paper frames it: `labelled` manifests carry gold labels (transcripts and entities);
`asr_only` manifests are plain ASR data whose NER/SA labels are dropped, unless the row sets
`synthetic_labels: true`, in which case the `synthetic` manifests (the same utterances labelled
by an LLM with `speechllm annotate`) replace them.

The experiment is resumable: a row whose evaluation exists is not run again, and a row whose
training was killed resumes from its newest checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from speechllm.config import RunConfig, build
from speechllm.data.manifest import read_manifest, write_manifest
from speechllm.errors import ConfigError


@dataclass
class ExperimentData:
    """The utterances every row trains on."""

    labelled: list[str] = field(default_factory=list)
    """Manifests with gold labels, used as they are by every row."""
    asr_only: list[str] = field(default_factory=list)
    """Manifests used for ASR only: their entity and sentiment labels are dropped."""
    synthetic: list[str] = field(default_factory=list)
    """The `asr_only` utterances labelled by an LLM (`speechllm annotate`); they replace
    `asr_only` in rows with `synthetic_labels: true`."""


@dataclass
class ExperimentEval:
    """How every row is scored."""

    manifest: str = ""
    """Manifest decoded for every task its utterances have labels for (e.g. `speechllm bench
    build`'s asr.jsonl: NER, SA and plain ASR rows), scored as `speechllm evaluate` does."""
    max_utterances: int | None = None
    """Score only the first N utterances (a smaller, faster evaluation)."""
    batch_size: int = 8
    """Clips encoded / decoded together."""


@dataclass
class ExperimentRow:
    """One line of the ablation table."""

    name: str = ""
    """Label in the table and plot."""
    set: dict[str, Any] = field(default_factory=dict)
    """Run-config overrides, `section.key: value` (e.g. `model.lora.enabled: true`)."""
    synthetic_labels: bool = False
    """Train on `data.synthetic` instead of the label-less `data.asr_only`."""


@dataclass
class ExperimentConfig:
    """What `speechllm experiment CONFIG.yaml` reads."""

    base: str = ""
    """The run config every row starts from (path relative to this file)."""
    output_dir: str = "runs/experiment"
    """Folder for the rows' runs, their evaluations, results.md/json and the plot."""
    budget_minutes: float = 10.0
    """Training time of every row (its `train.max_minutes`; `train.max_steps` still applies)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Each row is trained once per seed; the table gives the mean and the spread."""
    cumulative: bool = True
    """Each row keeps the previous rows' overrides (and synthetic labels) and adds its own."""
    data: ExperimentData = field(default_factory=ExperimentData)
    """Training utterances, the same for every row."""
    eval: ExperimentEval = field(default_factory=ExperimentEval)
    """Scoring of every row."""
    rows: list[ExperimentRow] = field(default_factory=list)
    """The table's rows, in order."""

    @classmethod
    def load(cls, path: str | Path) -> tuple[ExperimentConfig, list[ExperimentRow]]:
        """Read the YAML; relative paths resolve against its folder."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read experiment config: {exc}") from exc
        config: ExperimentConfig = build(cls, raw, "")
        rows = config.rows
        if not config.base:
            raise ConfigError(f"{path}: `base` (the run config every row starts from) is missing")
        if not rows:
            raise ConfigError(f"{path}: no rows")
        if not config.eval.manifest:
            raise ConfigError(f"{path}: eval.manifest is missing")
        if not config.data.labelled and not config.data.asr_only:
            raise ConfigError(f"{path}: data.labelled and data.asr_only are both empty")
        if not config.seeds:
            raise ConfigError(f"{path}: seeds is empty")
        if len({r.name for r in rows}) != len(rows) or any(not r.name for r in rows):
            raise ConfigError(f"{path}: every row needs a distinct name")
        base = path.parent

        def resolve(p: str) -> str:
            q = Path(p).expanduser()
            return str(q if q.is_absolute() else (base / q).resolve())

        config.base = resolve(config.base)
        config.output_dir = resolve(config.output_dir)
        config.eval.manifest = resolve(config.eval.manifest)
        d = config.data
        d.labelled, d.asr_only, d.synthetic = (
            [resolve(p) for p in ps] for ps in (d.labelled, d.asr_only, d.synthetic)
        )
        if any(r.synthetic_labels for r in rows) and not d.synthetic:
            raise ConfigError(
                f"{path}: a row sets synthetic_labels but data.synthetic is empty (make it with "
                "`speechllm annotate --manifest ASR_ONLY.jsonl --out SYNTHETIC.jsonl --llm NAME`)"
            )
        return config, rows


@dataclass
class RowPlan:
    """A row resolved into what it trains: its run config overrides and manifests."""

    name: str
    overrides: dict[str, Any]
    synthetic_labels: bool


def plan_rows(config: ExperimentConfig, rows: list[ExperimentRow]) -> list[RowPlan]:
    """Resolve cumulative overrides: row i's settings are rows 0..i merged (when cumulative)."""
    plans: list[RowPlan] = []
    overrides: dict[str, Any] = {}
    synthetic = False
    for row in rows:
        if config.cumulative:
            overrides = {**overrides, **row.set}
            synthetic = synthetic or row.synthetic_labels
        else:
            overrides, synthetic = dict(row.set), row.synthetic_labels
        plans.append(RowPlan(row.name, dict(overrides), synthetic))
    return plans


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "row"


def _label_free(paths: list[str], out: Path) -> str:
    """All `paths` in one manifest with entity and sentiment labels dropped (audio made absolute,
    since the new file lives elsewhere)."""
    utts = [u for p in paths for u in read_manifest(p, require_audio=True)]
    rows = [dataclasses.replace(u, entities=None, sentiment=None) for u in utts]
    write_manifest(out, rows)
    return str(out)


def row_run_config(config: ExperimentConfig, plan: RowPlan, seed: int, work: Path) -> RunConfig:
    """The run config of one (row, seed): base + the row's overrides + the shared data and
    budget. The experiment owns data, seed, budget and output folder: rows may not override them."""
    owned = {"data.train", "train.seed", "train.max_minutes", "train.output_dir"}
    clash = sorted(owned & plan.overrides.keys())
    if clash:
        raise ConfigError(f"row {plan.name!r} overrides {clash}: the experiment sets those")
    train = list(config.data.labelled)
    if plan.synthetic_labels:
        train += config.data.synthetic
    elif config.data.asr_only:
        train.append(_label_free(config.data.asr_only, work / "asr_only.jsonl"))
    run_dir = work / _slug(plan.name) / f"seed-{seed}"
    items = [f"{k}={json.dumps(v)}" for k, v in plan.overrides.items()]
    items += [
        f"data.train={json.dumps(train)}",
        f"train.seed={seed}",
        f"train.max_minutes={config.budget_minutes}",
        f"train.output_dir={json.dumps(str(run_dir))}",
    ]
    return RunConfig.load(config.base, items)


def trainable_parameters(run: RunConfig) -> dict[str, int]:
    """Trainable parameter counts of the row's model: `adapter` (the projector the paper
    compares), `total` (adapter, CTC head, classifier heads, LoRA)."""
    from speechllm.model.speechllm import SpeechLLM

    model = SpeechLLM.from_config(run.model)
    report = {part: t for part, t, _ in model.parameter_report()}
    return {"adapter": report.get("adapter", 0), "total": sum(report.values())}


Trainer = Callable[[RunConfig], Path]
Scorer = Callable[[Path, ExperimentEval, Path], dict[str, Any]]


def run_experiment(
    config: ExperimentConfig,
    rows: list[ExperimentRow],
    trainer: Trainer,
    scorer: Scorer,
    log: Callable[[str], None] = print,
    scored_only: bool = False,
) -> list[dict[str, Any]]:
    """Train and score every (row, seed) not yet scored; write results.json, results.md and
    results.png (rewritten after each run, so a stopped experiment still has its table); return
    the per-run records. `scored_only`: train nothing, tabulate the runs already scored."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    for plan in plan_rows(config, rows):
        for seed in config.seeds:
            run = row_run_config(config, plan, seed, out)
            run_dir = Path(run.train.output_dir)
            # Written (atomically) only after scoring finished: a killed row is redone.
            done = run_dir / "result.json"
            if done.is_file():
                log(f"{plan.name} (seed {seed}): already scored, kept")
                metrics = json.loads(done.read_text())
            elif scored_only:
                log(f"{plan.name} (seed {seed}): not scored yet, left out")
                continue
            else:
                log(f"{plan.name} (seed {seed}): training {config.budget_minutes} min")
                model_dir = trainer(run)
                log(f"{plan.name} (seed {seed}): scoring on {config.eval.manifest}")
                metrics = scorer(model_dir, config.eval, run_dir / "eval")
                tmp = done.with_suffix(".tmp")
                tmp.write_text(json.dumps(metrics, indent=2) + "\n")
                tmp.replace(done)
            summary_path = run_dir / "model" / "train_summary.json"
            summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
            records.append(
                {
                    "row": plan.name,
                    "seed": seed,
                    "params": trainable_parameters(run),
                    "train_minutes": summary.get("minutes"),
                    "train_steps": summary.get("steps"),
                    "metrics": metrics,
                }
            )
            _write_results(config, rows, records)
    if not records:
        raise ConfigError(f"{out}: no row has been scored yet")
    _write_results(config, rows, records)
    return records


def _write_results(
    config: ExperimentConfig, rows: list[ExperimentRow], records: list[dict[str, Any]]
) -> None:
    out = Path(config.output_dir)
    (out / "results.json").write_text(json.dumps(records, indent=2) + "\n")
    table = summarise(records, [p.name for p in plan_rows(config, rows)])
    (out / "results.md").write_text(render_results(config, table))
    plot_results(table, out / "results.png")


METRICS = ("wer", "ctc_wer", "ner_f1", "sa_macro_f1", "slue_score")
"""Columns of the table and bars of the plot; `ctc_wer` (the CTC head's own transcript, models
with one) shows how far the adapter alone reads the speech when the LLM's answers are still
poor."""


def summarise(records: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """One line per row: mean and (with several seeds) min..max of each metric over seeds; the
    adapter-parameter ratio is to the first row (the baseline projector)."""
    lines = []
    base_params = None
    for name in order:
        runs = [r for r in records if r["row"] == name]
        if not runs:
            continue
        params = runs[0]["params"]
        base_params = base_params or params["adapter"]
        line: dict[str, Any] = {
            "row": name,
            "seeds": len(runs),
            "adapter_params": params["adapter"],
            "trainable_params": params["total"],
            "adapter_ratio": base_params / params["adapter"] if params["adapter"] else None,
            "train_minutes": statistics.mean(r["train_minutes"] or 0.0 for r in runs),
        }
        for key in METRICS:
            values = [r["metrics"][key] for r in runs if r["metrics"].get(key) is not None]
            line[key] = statistics.mean(values) if values else None
            line[f"{key}_range"] = (min(values), max(values)) if len(values) > 1 else None
        lines.append(line)
    return lines


def render_results(config: ExperimentConfig, table: list[dict[str, Any]]) -> str:
    """results.md: the ablation table and how it was made."""

    def cell(line: dict[str, Any], key: str) -> str:
        value = line[key]
        if value is None:
            return "-"
        text = f"{value:.1f}"
        spread = line.get(f"{key}_range")
        if spread:
            text += f" ({spread[0]:.1f} to {spread[1]:.1f})"
        return text

    out = [
        "# Ablation results",
        "",
        f"Made by `speechllm experiment` from base run config `{Path(config.base).name}`; "
        f"every row trains {config.budget_minutes:g} minutes on the same utterances, "
        f"seeds {config.seeds}, and is scored on `{config.eval.manifest}`"
        + (
            f" (first {config.eval.max_utterances} utterances)."
            if config.eval.max_utterances
            else "."
        ),
        "With several seeds a cell is the mean, with the lowest and highest value over seeds in brackets.",
        "",
        "| row | adapter params | ratio to baseline | trainable params | WER | CTC WER | NER F1 "
        "| SA F1 | SLUE score | train min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for line in table:
        ratio = f"{line['adapter_ratio']:.2f}x" if line["adapter_ratio"] else "-"
        out.append(
            f"| {line['row']} | {line['adapter_params']:,} | {ratio} | "
            f"{line['trainable_params']:,} | {cell(line, 'wer')} | {cell(line, 'ctc_wer')} | "
            f"{cell(line, 'ner_f1')} | "
            f"{cell(line, 'sa_macro_f1')} | {cell(line, 'slue_score')} | "
            f"{line['train_minutes']:.1f} |"
        )
    out += ["", "![ablation](results.png)", ""]
    return "\n".join(out)


def plot_results(table: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars: WER, NER F1, SA F1 and SLUE score per row (the mean over seeds), with the
    min-max over seeds as error bars where there are several."""
    from speechllm.evaluation.plots import figure, save

    fig = figure((8.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(METRICS)
    for k, key in enumerate(METRICS):
        values = [line[key] if line[key] is not None else 0.0 for line in table]
        xs = [i + (k - (len(METRICS) - 1) / 2) * width for i in range(len(table))]
        spreads = [line.get(f"{key}_range") for line in table]
        errors = [
            [v - r[0] if r else 0.0 for v, r in zip(values, spreads, strict=True)],
            [r[1] - v if r else 0.0 for v, r in zip(values, spreads, strict=True)],
        ]
        ax.bar(xs, values, width, label=key, yerr=errors if any(spreads) else None, capsize=2)
    ax.set_xticks(range(len(table)))
    ax.set_xticklabels([line["row"] for line in table], rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("%")
    ax.legend(fontsize=8)
    ax.set_title("Ablation: each row adds one technique")
    save(fig, path)


def train_row(run: RunConfig) -> Path:
    """Train one row (resuming a killed one); the default trainer."""
    from speechllm.training.train import train

    return train(run, resume=True)


def score_row(model_dir: Path, settings: ExperimentEval, out: Path) -> dict[str, Any]:
    """Decode and score `settings.manifest` with the model in `model_dir` by the function
    `speechllm evaluate` runs (`inference.evaluate.evaluate`: every task each utterance has
    labels for); writes the report to `out`."""
    from speechllm.evaluation.report import write_report
    from speechllm.inference.evaluate import evaluate
    from speechllm.model.speechllm import SpeechLLM

    utts = read_manifest(settings.manifest, require_audio=True)
    if settings.max_utterances:
        utts = utts[: settings.max_utterances]
    start = time.perf_counter()
    model = SpeechLLM.load(model_dir)
    metrics, predictions = evaluate(
        model, utts, ["asr", "ner", "sa"], batch_size=settings.batch_size
    )
    metrics["wall_seconds"] = time.perf_counter() - start
    write_report(out, utts, predictions, metrics, sources={"model": str(model_dir), "manifest": ""})
    return metrics
