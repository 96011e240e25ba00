"""The report's PNG plots: NER F1 per tag, the sentiment confusion matrix, WER by length.

Bare matplotlib Figures on the Agg canvas (no pyplot: no global backend switch, no GUI), of a
fixed size in pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechllm.evaluation.metrics import display_label
from speechllm.labels import SLUE_TAGS

DPI = 100
NER_PLOT_SIZE = (8.0, 4.5)
CONFUSION_PLOT_SIZE = (6.0, 5.0)
WER_PLOT_SIZE = (8.0, 4.5)
"""Plot sizes in inches; at `DPI` dots per inch the PNGs are 800x450, 600x500 and 800x450."""


def figure(size: tuple[float, float]) -> Any:
    """A Figure of `size` inches at `DPI` on the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Any, path: Path) -> None:
    """Lay out and write `fig` as a PNG of exactly its size x `DPI` pixels."""
    fig.tight_layout()
    # No bbox_inches="tight": the PNG keeps exactly size x DPI pixels.
    fig.savefig(path, dpi=DPI, format="png")


def plot_ner_f1(metrics: dict[str, Any], path: Path) -> None:
    """Per-tag NER F1 and label-F1 bars (tags in SLUE order, then any other)."""
    per_tag, label_per_tag = metrics["ner_per_tag"], metrics["ner_label_per_tag"]
    tags = [t for t in SLUE_TAGS if t in per_tag] + sorted(set(per_tag) - set(SLUE_TAGS))
    fig = figure(NER_PLOT_SIZE)
    ax = fig.add_subplot()
    x = list(range(len(tags)))
    width = 0.4
    ax.bar([i - width / 2 for i in x], [per_tag[t]["f1"] for t in tags], width, label="F1")
    ax.bar(
        [i + width / 2 for i in x],
        [label_per_tag.get(t, {}).get("f1", 0.0) for t in tags],
        width,
        label="label-F1",
    )
    ax.set_xticks(x, [f"{t}\n(n={per_tag[t]['n_gold']})" for t in tags])
    # Headroom above 100 keeps the legend clear of full bars.
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("%")
    ax.set_title(
        f"NER per tag: micro F1 {metrics['ner_f1']:.1f}, label-F1 {metrics['ner_label_f1']:.1f}"
    )
    ax.legend(loc="upper right", ncols=2)
    save(fig, path)


def plot_confusion(metrics: dict[str, Any], path: Path) -> None:
    """Sentiment confusion matrix: counts, shaded by the share of each gold row."""
    confusion = metrics["sa_confusion"]
    matrix = confusion["matrix"]
    shares = [[c / (sum(row) or 1) for c in row] for row in matrix]
    fig = figure(CONFUSION_PLOT_SIZE)
    ax = fig.add_subplot()
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                color="white" if shares[i][j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(confusion["predicted"])), map(display_label, confusion["predicted"]))
    ax.set_yticks(range(len(confusion["gold"])), confusion["gold"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(f"Sentiment: macro F1 {metrics['sa_macro_f1']:.1f}")
    save(fig, path)


def plot_wer_by_length(metrics: dict[str, Any], path: Path) -> None:
    """WER per reference-length bucket, each bar labelled with its number of utterances."""
    buckets = metrics["wer_by_length"]
    fig = figure(WER_PLOT_SIZE)
    ax = fig.add_subplot()
    x = list(range(len(buckets)))
    bars = ax.bar(x, [b["wer"] for b in buckets])
    ax.bar_label(bars, labels=[f"n={b['n']}" for b in buckets])
    ax.set_xticks(x, [b["words"] for b in buckets])
    ax.set_xlabel("reference length (words)")
    ax.set_ylabel("WER (%)")
    ax.set_ylim(0, max([100.0, *(b["wer"] * 1.1 for b in buckets)]))
    ax.set_title(f"WER by utterance length: overall {metrics['wer']:.1f}")
    save(fig, path)
