"""Fairness on UCI Adult: no mitigation against `reweigh` (Kamiran & Calders 2012) and `adversarial` (Zhang, Lemoine &
Mitchell 2018), sensitive `sex` then `race`, on the single-task `adult` experiment and the two-task `adult-mtl` one
(mitigating the income task only).

For each setting and seed: train, then `audit_run` on the test split; reported per task: test accuracy, ROC-AUC,
demographic-parity difference and equalized-odds difference across the groups of the sensitive column. Prints
one JSON line per run and a table of mean ± std over the seeds.

    python benchmarks/fairness_adult.py                 # 3 seeds, about 35 minutes on 2 busy cores
    python benchmarks/fairness_adult.py --seeds 0 1 2 3 4
    python benchmarks/fairness_adult.py --only adversarial --jsonl benchmarks/results/fairness_adult.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from hydranet.config import load_config
from hydranet.fairness.audit import audit_run
from hydranet.files import write_text
from hydranet.train import fit

ROOT = Path(__file__).resolve().parents[1]
ADULT = str(ROOT.parent / "shared" / "data" / "adult" / "adult.csv.gz")

# demographic parity, α as tuned on adult/sex (docs/fairness.md says what was tried)
ADVERSARIAL = "{name: adversarial, adversary_weight: 0.3, adversary_lr: 0.01, constraint: demographic_parity}"
# (label, experiment, sensitive column, overrides): `features` keeps the column among the inputs (the experiment as
# bundled); `none` leaves it out; `reweigh` leaves it out and reweighs (adult-mtl: the income task only).
SETTINGS = [
    ("adult, sex in features", "adult", "sex", []),
    ("adult, none", "adult", "sex", ["fairness.sensitive=[sex]"]),
    ("adult, reweigh", "adult", "sex", ["fairness.sensitive=[sex]", "fairness.mitigation=reweigh"]),
    ("adult, none", "adult", "race", ["fairness.sensitive=[race]"]),
    ("adult, reweigh", "adult", "race", ["fairness.sensitive=[race]", "fairness.mitigation=reweigh"]),
    ("adult-mtl, none", "adult-mtl", "sex", ["fairness.sensitive=[sex]"]),
    ("adult-mtl, reweigh income", "adult-mtl", "sex",
     ["fairness.sensitive=[sex]", "fairness.mitigation=reweigh", "fairness.tasks=[income]"]),
    ("adult, adversarial", "adult", "sex", ["fairness.sensitive=[sex]", f"fairness.mitigation={ADVERSARIAL}"]),
    ("adult, adversarial", "adult", "race", ["fairness.sensitive=[race]", f"fairness.mitigation={ADVERSARIAL}"]),
    ("adult-mtl, adversarial income", "adult-mtl", "sex",
     ["fairness.sensitive=[sex]", f"fairness.mitigation={ADVERSARIAL}", "fairness.tasks=[income]"]),
]
REPORTED = ("accuracy", "roc_auc", "demographic_parity_difference", "equalized_odds_difference")


def one_run(experiment: str, sensitive: str, overrides: list[str], seed: int, workdir: Path) -> dict:
    """Train one setting with one seed and audit it on the test split: {task: {metric: value}}."""
    cfg = load_config(experiment, [f"data.path={ADULT}", f"seed={seed}", "train.progress=false", *overrides])
    run = fit(cfg, workdir / f"{experiment}-{sensitive}-{len(overrides)}-{seed}", progress=False)
    report = audit_run(run, [sensitive], "test")
    out = {}
    for task, result in report["tasks"].items():
        found = result["attributes"][sensitive]
        summary = {k: v["value"] for k, v in found["summary"].items()}
        out[task] = {"accuracy": found["overall"]["accuracy"], "roc_auc": found["overall"]["roc_auc"],
                     "demographic_parity_difference": summary["demographic_parity_difference"],
                     "equalized_odds_difference": summary["equalized_odds_difference"]}
    return out


def append_line(path: Path, line: str) -> None:
    """Add one line to `path` (created if absent), rewriting the file atomically."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, old + line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", default="", help="run only the settings whose label contains this text")
    parser.add_argument("--sensitive", default="", help="run only the settings of this sensitive column")
    parser.add_argument("--jsonl", type=Path, help="also append each row as a JSON line to this file")
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="extra overrides for every run (tuning)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, experiment, sensitive, overrides in SETTINGS:
            if args.only not in label or args.sensitive not in ("", sensitive):
                continue
            runs = [one_run(experiment, sensitive, [*overrides, *args.extra], seed, Path(tmp)) for seed in args.seeds]
            for task in runs[0]:
                values = {m: [r[task][m] for r in runs] for m in REPORTED}
                row = {"setting": label, "sensitive": sensitive, "task": task, "seeds": args.seeds,
                       "overrides": [*overrides, *args.extra], **values}
                print(json.dumps(row), flush=True)
                rows.append(row)
                if args.jsonl:
                    append_line(args.jsonl, json.dumps(row))
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, seeds {args.seeds}\n")
    print("| setting | sensitive | task | " + " | ".join(REPORTED) + " |")
    print("| --- " * (len(REPORTED) + 3) + "|")
    for row in rows:
        cells = [f"{statistics.mean(row[m]):.3f} ± {statistics.stdev(row[m]) if len(row[m]) > 1 else 0:.3f}"
                 for m in REPORTED]
        print(f"| {row['setting']} | {row['sensitive']} | {row['task']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
