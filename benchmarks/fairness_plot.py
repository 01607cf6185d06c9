"""The fairness trade-off plot: test accuracy against demographic-parity difference, mean ± std over seeds, for every
setting in benchmarks/results/fairness_adult.jsonl (any method, as benchmarks/fairness_adult.py wrote it); one
panel per sensitive column and task. A later line for the same setting, column and task replaces an earlier one.

    python benchmarks/fairness_plot.py          # → docs/img/fairness_tradeoff.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

from hydranet.files import write_figure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def latest_rows(path: Path) -> dict[tuple[str, str, str], dict]:
    """(sensitive, task, setting) → the last JSON line written for it."""
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows[(row["sensitive"], row["task"], row["setting"])] = row
    return rows


def spread(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plot(rows: dict[tuple[str, str, str], dict], out: Path) -> None:
    panels = sorted({(sensitive, task) for sensitive, task, _ in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 6.2), squeeze=False)
    for ax, (sensitive, task) in zip(axes[0], panels):
        ax.set_prop_cycle(color=plt.cm.tab20.colors)  # more settings than tab10's colours
        for (s, t, setting), row in rows.items():
            if (s, t) != (sensitive, task):
                continue
            (dp, dp_std), (acc, acc_std) = spread(row["demographic_parity_difference"]), spread(row["accuracy"])
            marker = "s" if setting.startswith("sklearn") else "o"
            ax.errorbar(dp, acc, xerr=dp_std, yerr=acc_std, fmt=marker, capsize=3, label=setting)
        ax.set_title(f"{task} by {sensitive} (test, mean ± std over seeds)", fontsize=9)
        ax.set_xlabel("demographic-parity difference (lower: fairer)")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # below: never over a point
    fig.tight_layout()
    write_figure(out, fig)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jsonl", type=Path, default=ROOT / "benchmarks" / "results" / "fairness_adult.jsonl")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "img" / "fairness_tradeoff.png")
    args = parser.parse_args()
    plot(latest_rows(args.jsonl), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
