"""Fairness on UCI Adult: no mitigation against `reweigh` (Kamiran & Calders 2012), `adversarial` (Zhang, Lemoine &
Mitchell 2018, demographic parity) and `threshold` (Hardt et al. 2016, demographic parity and equalized odds),
sensitive `sex` then `race`, on the single-task `adult` experiment and the two-task `adult-mtl` one (mitigating the
income task only); plus, for orientation, a scikit-learn logistic
regression with and without Fairlearn's ThresholdOptimizer on the same file.

For each setting and seed: train, then `audit_run` on the test split; reported per task: test accuracy, ROC-AUC,
demographic-parity difference and equalized-odds difference across the groups of the sensitive column. The
threshold rows post-process the `none` runs' models (`fit_thresholds` on val, then the audit applies them), so they
cost no training. Prints one JSON line per setting and task (appended to `--jsonl` when given) and a table of
mean ± std over the seeds.

    python benchmarks/fairness_adult.py                 # 3 seeds, about an hour on 2 busy cores
    python benchmarks/fairness_adult.py --methods none threshold sklearn --runs /tmp/adult-runs \\
        --jsonl benchmarks/results/fairness_adult.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hydranet.config import load_config
from hydranet.errors import UserError
from hydranet.fairness import fit_thresholds
from hydranet.fairness.audit import audit_run
from hydranet.files import write_text
from hydranet.rundir import RunDir
from hydranet.train import fit, load_run

ROOT = Path(__file__).resolve().parents[1]
ADULT = str(ROOT.parent / "shared" / "data" / "adult" / "adult.csv.gz")

# demographic parity, α as tuned on adult/sex (docs/fairness.md says what was tried)
ADVERSARIAL = "{name: adversarial, adversary_weight: 0.3, adversary_lr: 0.01, constraint: demographic_parity}"
# (label, method, experiment, sensitive column, overrides): `features` keeps the column among the inputs (the
# experiment as bundled); `none` leaves it out; `reweigh` leaves it out and reweighs (adult-mtl: the income task only).
SETTINGS = [
    ("adult, sex in features", "features", "adult", "sex", []),
    ("adult, none", "none", "adult", "sex", ["fairness.sensitive=[sex]"]),
    ("adult, reweigh", "reweigh", "adult", "sex", ["fairness.sensitive=[sex]", "fairness.mitigation=reweigh"]),
    ("adult, none", "none", "adult", "race", ["fairness.sensitive=[race]"]),
    ("adult, reweigh", "reweigh", "adult", "race", ["fairness.sensitive=[race]", "fairness.mitigation=reweigh"]),
    ("adult-mtl, none", "none", "adult-mtl", "sex", ["fairness.sensitive=[sex]"]),
    ("adult-mtl, reweigh income", "reweigh", "adult-mtl", "sex",
     ["fairness.sensitive=[sex]", "fairness.mitigation=reweigh", "fairness.tasks=[income]"]),
    ("adult, adversarial", "adversarial", "adult", "sex",
     ["fairness.sensitive=[sex]", f"fairness.mitigation={ADVERSARIAL}"]),
    ("adult, adversarial", "adversarial", "adult", "race",
     ["fairness.sensitive=[race]", f"fairness.mitigation={ADVERSARIAL}"]),
    ("adult-mtl, adversarial income", "adversarial", "adult-mtl", "sex",
     ["fairness.sensitive=[sex]", f"fairness.mitigation={ADVERSARIAL}", "fairness.tasks=[income]"]),
]
# Thresholds fitted on each `none` run's income task (adult-mtl: never_married is left as it was).
CONSTRAINTS = {"dp": "demographic_parity", "eo": "equalized_odds"}
METHODS = ("features", "none", "reweigh", "adversarial", "threshold", "sklearn")
REPORTED = ("accuracy", "roc_auc", "demographic_parity_difference", "equalized_odds_difference")


def trained(experiment: str, sensitive: str, method: str, overrides: list[str], seed: int, runs: Path):
    """The run of one setting and seed: trained into `runs`, or reused when a finished run is already there."""
    folder = runs / f"{experiment}-{sensitive}-{method}-{seed}"
    if RunDir(folder).summary.exists():
        return load_run(folder)
    cfg = load_config(experiment, [f"data.path={ADULT}", f"seed={seed}", "train.progress=false", *overrides])
    return fit(cfg, folder, progress=False)


def audited(run, sensitive: str) -> dict:
    """Audit the run on the test split: {task: {metric: value}} (point values: no bootstrap intervals)."""
    fairness = run.config.fairness.model_copy(update={"bootstrap": 0})
    report = audit_run(dataclasses.replace(run, config=run.config.model_copy(update={"fairness": fairness})),
                       [sensitive], "test")
    out = {}
    for task, result in report["tasks"].items():
        found = result["attributes"][sensitive]
        summary = {k: v["value"] for k, v in found["summary"].items()}
        out[task] = {"accuracy": found["overall"]["accuracy"], "roc_auc": found["overall"]["roc_auc"],
                     "demographic_parity_difference": summary["demographic_parity_difference"],
                     "equalized_odds_difference": summary["equalized_odds_difference"]}
    return out


def hydranet_results(methods: list[str], seeds: list[int], runs: Path) -> dict[tuple[str, str], list[dict]]:
    """(label, sensitive) → per seed {task: metrics}, for the chosen methods (threshold: on the `none` runs)."""
    results: dict[tuple[str, str], list[dict]] = {}
    for label, method, experiment, sensitive, overrides in SETTINGS:
        thresholds = method == "none" and "threshold" in methods
        if method not in methods and not thresholds:
            continue
        for seed in seeds:
            run = trained(experiment, sensitive, method, overrides, seed, runs)
            RunDir(run.dir).thresholds.unlink(missing_ok=True)  # a reused run audited unmitigated first
            results.setdefault((label, sensitive), []).append(audited(run, sensitive))
            progress(label, sensitive, seed, results)
            if not thresholds:
                continue
            for short, constraint in CONSTRAINTS.items():
                try:
                    fit_thresholds(run, constraint, ["income"])
                except UserError as err:  # e.g. a small race group with one label in val: no row for this setting
                    print(f"{label} {sensitive} seed {seed}: {err}", file=sys.stderr, flush=True)
                    continue
                name = label.replace("none", f"threshold {short}" + (" income" if experiment == "adult-mtl" else ""))
                results.setdefault((name, sensitive), []).append(audited(run, sensitive))
                progress(name, sensitive, seed, results)
            RunDir(run.dir).thresholds.unlink(missing_ok=True)
    return results


def progress(label: str, sensitive: str, seed: int, results: dict) -> None:
    """One seed's numbers on stderr as they come (a long benchmark that is stopped still leaves them)."""
    print(json.dumps({"setting": label, "sensitive": sensitive, "seed": seed, **results[(label, sensitive)][-1]}),
          file=sys.stderr, flush=True)


def adult_frame() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Adult's features (numbers standardized on train, categories one-hot, `?` a category), income > 50K and the
    train mask of the file's `split` column."""
    frame = pd.read_csv(ADULT)
    y = (frame.pop("income") == ">50K").to_numpy(int)
    train = (frame.pop("split") == "train").to_numpy()
    numeric = frame.select_dtypes("number").columns
    frame[numeric] = (frame[numeric] - frame[numeric][train].mean()) / frame[numeric][train].std()
    return pd.get_dummies(frame, dtype=float), y, train


def sklearn_results(seeds: list[int]) -> dict[tuple[str, str], list[dict]]:
    """The issue's orientation: logistic regression on every column (sex and race included), then Fairlearn's
    ThresholdOptimizer fitted on the train split with the LR's probabilities; its random choice seeded per seed."""
    import fairlearn.metrics as fl
    from fairlearn.postprocessing import ThresholdOptimizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score

    x, y, train = adult_frame()
    raw = pd.read_csv(ADULT)
    model = LogisticRegression(max_iter=2000).fit(x[train], y[train])
    score = model.predict_proba(x[~train])[:, 1]
    results: dict[tuple[str, str], list[dict]] = {}

    def row(y_pred: np.ndarray, groups: pd.Series) -> dict:
        both = dict(y_true=y[~train], y_pred=y_pred, sensitive_features=groups)
        return {"income": {"accuracy": accuracy_score(y[~train], y_pred), "roc_auc": roc_auc_score(y[~train], score),
                           "demographic_parity_difference": fl.demographic_parity_difference(**both),
                           "equalized_odds_difference": fl.equalized_odds_difference(**both)}}

    for sensitive in ("sex", "race"):
        groups = raw[sensitive]
        results[("sklearn LR", sensitive)] = [row(model.predict(x[~train]), groups[~train])] * len(seeds)
        for short, constraint in CONSTRAINTS.items():
            optimizer = ThresholdOptimizer(estimator=model, constraints=constraint, prefit=True,
                                           predict_method="predict_proba")
            optimizer.fit(x[train], y[train], sensitive_features=groups[train])
            results[(f"sklearn LR + ThresholdOptimizer {short}", sensitive)] = [
                row(optimizer.predict(x[~train], sensitive_features=groups[~train], random_state=seed),
                    groups[~train]) for seed in seeds]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="which rows (threshold: fitted on the none runs, which are trained for it)")
    parser.add_argument("--runs", type=Path, help="train into this folder and reuse finished runs found there "
                                                  "(default: a temporary folder)")
    parser.add_argument("--jsonl", type=Path, help="append the JSON lines to this file")
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = sklearn_results(args.seeds) if "sklearn" in args.methods else {}
    with tempfile.TemporaryDirectory() as tmp:
        results |= hydranet_results(args.methods, args.seeds, args.runs or Path(tmp))
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}"
    rows = [{"setting": label, "sensitive": sensitive, "task": task, "seeds": args.seeds,
             **{m: [r[task][m] for r in runs] for m in REPORTED},
             "machine": machine, "date": datetime.date.today().isoformat()}
            for (label, sensitive), runs in results.items() for task in runs[0]]
    lines = [json.dumps(row) for row in rows]
    print("\n".join(lines), flush=True)
    if args.jsonl is not None:
        old = args.jsonl.read_text(encoding="utf-8") if args.jsonl.exists() else ""
        write_text(args.jsonl, old + "".join(line + "\n" for line in lines))
    print(f"\n{machine}, seeds {args.seeds}\n")
    print("| setting | sensitive | task | " + " | ".join(REPORTED) + " |")
    print("| --- " * (len(REPORTED) + 3) + "|")
    for row in rows:
        cells = [f"{statistics.mean(row[m]):.3f} ± {statistics.stdev(row[m]) if len(row[m]) > 1 else 0:.3f}"
                 for m in REPORTED]
        print(f"| {row['setting']} | {row['sensitive']} | {row['task']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
