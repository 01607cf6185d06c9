"""Threshold post-processing (Hardt, Price & Srebro 2016, "Equality of Opportunity in Supervised Learning"): per
binary task and group, Fairlearn's ThresholdOptimizer fitted on the val split, stored as plain JSON in
thresholds.json and applied here, so predict, evaluate, the audit and the server decide alike.

ThresholdOptimizer's fitted rule per group is: with probability p0 decide `score op0 t0`, with probability p1
`score op1 t1` (equalized odds adds: with probability p_ignore, a constant). Its `predict` draws that choice from
a global random state; here the draw of each row is a hash of the row's encoded features and its group, keyed by
the run's seed (Purpose.THRESHOLD), so the same row gets the same decision from every command, every time.

Scores are the head's uncalibrated logits: temperature scaling (logit / T, T > 0) is monotone, so thresholds on
the raw logit give the same decisions whether `hydranet calibrate` ran before or after `hydranet threshold`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import numpy as np
import torch
from pydantic import Field
from sklearn import metrics as skm
from sklearn.base import BaseEstimator

from hydranet.config import Options
from hydranet.data import Dataset, build_dataset
from hydranet.errors import UserError
from hydranet.fairness.groups import check_groups, joint_groups, sensitive_columns
from hydranet.fairness.metrics import BinaryAudit, audit_for
from hydranet.randomness import Purpose, purpose_seed
from hydranet.registry import register
from hydranet.rundir import RunDir
from hydranet.train.evaluation import eval_settings, predict_batches
from hydranet.train.run import Run

CONSTRAINTS = ("demographic_parity", "equalized_odds")


class ThresholdOptions(Options):
    constraint: Literal["demographic_parity", "equalized_odds"] = Field(
        "demographic_parity", description="what the group thresholds equalize: selection rates (demographic_parity) "
                                          "or true- and false-positive rates (equalized_odds)")


@register("mitigation", "threshold", options=ThresholdOptions)
class Threshold:
    """The `threshold` mitigation: post-processing, so training is unchanged (no example weights); `hydranet train`
    ends by fitting the thresholds (`fit_thresholds`), and `hydranet threshold RUN` fits them on any trained run."""

    def __init__(self, options: ThresholdOptions | None = None):
        self.options = options or ThresholdOptions()

    def example_weights(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """No task's training loss is reweighted: the mitigation acts on the trained model's decisions."""
        return {}

    def after_training(self, run: Run) -> dict[str, Any]:
        return fit_thresholds(run, self.options.constraint)


@dataclass(frozen=True)
class Rule:
    """One group's fitted interpolation: P(positive | score) = p_ignore·constant + (1 − p_ignore)·(p0·[score op0
    t0] + p1·[score op1 t1])."""

    p0: float
    operation0: tuple[str, float]
    p1: float
    operation1: tuple[str, float]
    p_ignore: float = 0.0
    constant: float = 0.0

    @classmethod
    def from_fairlearn(cls, bunch: Any) -> Rule:
        def operation(op: Any) -> tuple[str, float]:
            return op.operator, float(op.threshold)
        return cls(float(bunch.p0), operation(bunch.operation0), float(bunch.p1), operation(bunch.operation1),
                   float(bunch.get("p_ignore", 0.0)), float(bunch.get("prediction_constant", 0.0)))

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> Rule:
        def operation(op: Any) -> tuple[str, float]:
            operator, threshold = op
            if operator not in (">", "<"):
                raise ValueError(f"operator {operator!r} is not > or <")
            return operator, float(threshold)  # float() also reads the "inf" / "-inf" that JSON cannot hold
        rule = cls(float(entry["p0"]), operation(entry["operation0"]), float(entry["p1"]),
                   operation(entry["operation1"]), float(entry.get("p_ignore", 0.0)), float(entry.get("constant", 0.0)))
        probabilities = (rule.p0, rule.p1, rule.p_ignore, rule.constant)
        if not all(0.0 <= p <= 1.0 for p in probabilities):
            raise ValueError(f"probabilities {probabilities} are not all within [0, 1]")
        return rule

    def to_json(self) -> dict[str, Any]:
        def operation(op: tuple[str, float]) -> list[Any]:
            return [op[0], op[1] if math.isfinite(op[1]) else str(op[1])]
        return {"p0": self.p0, "operation0": operation(self.operation0), "p1": self.p1,
                "operation1": operation(self.operation1), "p_ignore": self.p_ignore, "constant": self.constant}

    def positive_probability(self, scores: np.ndarray) -> np.ndarray:
        """What ThresholdOptimizer's `_pmf_predict` gives for these scores: 0 or 1 except where the two
        operations disagree (or p_ignore > 0)."""
        def holds(op: tuple[str, float]) -> np.ndarray:
            return scores > op[1] if op[0] == ">" else scores < op[1]
        mixed = self.p0 * holds(self.operation0) + self.p1 * holds(self.operation1)
        return self.p_ignore * self.constant + (1 - self.p_ignore) * mixed


@dataclass(frozen=True)
class Thresholds:
    """thresholds.json: the constraint, the rule per group of each thresholded task, and the seed of the per-row
    draws. A row's group comes from the run's `fairness.sensitive` columns (and `bins`), as in fitting."""

    constraint: str
    seed: int
    tasks: dict[str, dict[str, Rule]]

    @classmethod
    def of(cls, run: Run) -> Thresholds | None:
        """The run's stored thresholds; None for a run that has none."""
        rundir = RunDir(run.dir)
        if not rundir.thresholds.exists():
            return None
        return rundir.read_thresholds(lambda report: cls.from_json(report, run))

    @classmethod
    def from_json(cls, report: dict[str, Any], run: Run) -> Thresholds:
        tasks = {}
        for name, entry in report["tasks"].items():
            if name not in run.tasks:
                raise ValueError(f"task {name!r} is not a task of this run ({', '.join(run.tasks)})")
            tasks[name] = {str(group): Rule.from_json(rule) for group, rule in entry["groups"].items()}
        return cls(str(report["constraint"]), int(report["seed"]), tasks)

    def decide(self, run: Run, outputs: Mapping[str, torch.Tensor], x: torch.Tensor, groups: np.ndarray,
               where: str) -> dict[str, np.ndarray]:
        """{task: 0/1 decision per row} for the thresholded tasks, from the model's (possibly calibrated) outputs,
        the encoded rows `x` and each row's group."""
        draws = row_draws(x, groups, self.seed)
        decisions = {}
        for name, rules in self.tasks.items():
            check_known(groups, rules, where)
            scores = raw_logits(run, name, outputs[name])
            probability = np.zeros(len(scores))
            for group, rule in rules.items():
                rows = groups == group
                probability[rows] = rule.positive_probability(scores[rows])
            decisions[name] = (draws < probability).astype(np.int64)
        return decisions


def split_decisions(run: Run, data: Dataset, split: str, outputs: Mapping[str, torch.Tensor]
                    ) -> tuple[dict[str, np.ndarray], str | None]:
    """The stored thresholds' decisions on a split of the run's own data, and their constraint; ({}, None) for a
    run without thresholds.json."""
    thresholds = Thresholds.of(run)
    if thresholds is None:
        return {}, None
    groups = joint_groups(run.config.fairness, sensitive_columns(run.config, None))[data.index[split].numpy()]
    return thresholds.decide(run, outputs, data.split(split)["x"], groups, f"the {split} split"), thresholds.constraint


def decision_metrics(target: np.ndarray, decided: np.ndarray) -> dict[str, float]:
    """Accuracy and F1 of 0/1 decisions over the labelled rows (a binary target is NaN where missing)."""
    labelled = ~np.isnan(target)
    y, y_hat = target[labelled].astype(int), decided[labelled]
    return {"accuracy": float(skm.accuracy_score(y, y_hat)), "f1": float(skm.f1_score(y, y_hat, zero_division=0))}


def raw_logits(run: Run, task: str, output: torch.Tensor) -> np.ndarray:
    """A head's uncalibrated logits (the outputs times the task's temperature, 1 when not calibrated)."""
    return output.detach().cpu().double().numpy() * run.model.temperatures.get(task, 1.0)


def row_draws(x: torch.Tensor, groups: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per row, a keyed hash of the row's encoded features and group: the same row gets
    the same number in every command and server, independently of the other rows in its batch."""
    key = purpose_seed(seed, Purpose.THRESHOLD).to_bytes(8, "little")
    rows = x.detach().cpu().float().reshape(len(x), -1).numpy()
    digests = [hashlib.blake2b(row.tobytes() + str(group).encode(), key=key, digest_size=8).digest()
               for row, group in zip(rows, groups)]
    return np.array([int.from_bytes(d, "little") for d in digests], dtype=np.float64) / 2.0**64


def check_known(groups: np.ndarray, rules: Mapping[str, Rule], where: str) -> None:
    """A group the thresholds were not fitted for has no rule: one line naming its first row."""
    unknown = ~np.isin(groups.astype(str), list(rules))
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise UserError(f"{where}: row {row + 1} is in group {groups[row]!r}, which the fairness thresholds were not "
                        f"fitted for (groups: {', '.join(rules)})")


def row_groups(run: Run, columns: Mapping[str, Any], where: str) -> np.ndarray:
    """Each row's group over the run's sensitive columns, from a table of new rows (a DataFrame or a mapping of
    columns); a missing sensitive column is one line naming it."""
    sensitive = run.config.fairness.sensitive
    missing = [c for c in sensitive if c not in columns]
    if missing:
        raise UserError(f"{where}: no column {missing[0]!r}, which this run's fairness thresholds need to know each "
                        f"row's group (fairness.sensitive: {', '.join(sensitive)})")
    return joint_groups(run.config.fairness, {c: np.asarray(columns[c], dtype=object) for c in sensitive})


class _Scores(BaseEstimator):
    """The 'estimator' handed to ThresholdOptimizer: its input is already the score (one column)."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Scores:
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X)[:, 0]

    def __sklearn_is_fitted__(self) -> bool:
        return True


def fit_rules(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, constraint: str) -> dict[str, Rule]:
    """ThresholdOptimizer (accuracy objective) fitted on these scores; its rule per group."""
    from fairlearn.postprocessing import ThresholdOptimizer  # lazy: fairlearn loads pandas' plotting stack

    for group in np.unique(groups.astype(str)):
        if len(np.unique(labels[groups.astype(str) == group])) < 2:
            raise UserError(f"fairness.sensitive: group {str(group)!r} has a single label in the val split; thresholds "
                            f"need both labels in every group (merge small groups, or use reweigh)")
    optimizer = ThresholdOptimizer(estimator=_Scores(), constraints=constraint, objective="accuracy_score",
                                   prefit=True, predict_method="predict")
    optimizer.fit(scores[:, None], labels.astype(int), sensitive_features=groups.astype(str))
    fitted = optimizer.interpolated_thresholder_.interpolation_dict
    return {str(group): Rule.from_fairlearn(bunch) for group, bunch in fitted.items()}


def thresholded_tasks(run: Run, tasks: list[str] | None) -> list[str]:
    """The tasks thresholds apply to: `tasks`, else `fairness.tasks`, else every yes/no (binary) task."""
    chosen = tasks or run.config.fairness.tasks
    where = "--tasks" if tasks else "fairness.tasks"
    for name in chosen:
        if name not in run.tasks:
            raise UserError(f"{where}: {name!r} is not a task of this run (tasks: {', '.join(run.tasks)})")
        if audit_for(run.tasks[name].spec) is not BinaryAudit:
            raise UserError(f"{where}: thresholds need a binary task, and {name!r} is {run.tasks[name].kind}")
    found = chosen or [t for t, task in run.tasks.items() if audit_for(task.spec) is BinaryAudit]
    if not found:
        raise UserError(f"{run.dir}: no binary task to threshold (tasks: "
                        f"{', '.join(f'{t.name} ({t.kind})' for t in run.tasks.values())})")
    return found


def fit_thresholds(run: Run, constraint: str | None = None, tasks: list[str] | None = None) -> dict[str, Any]:
    """Fit each thresholded task's group rules on the run's val split, write thresholds.json (replacing an earlier
    one: the fit reads only the model and val, so refitting loses nothing) and return its content.

    `constraint`: demographic_parity or equalized_odds; default: the run's `fairness.mitigation` option when that
    is threshold, else demographic_parity. `tasks`: the binary tasks to threshold (default: `fairness.tasks`, else
    every binary task)."""
    cfg = run.config
    constraint = constraint or configured_constraint(run)
    if constraint not in CONSTRAINTS:
        raise UserError(f"--constraint: {constraint!r} is not a constraint (expected {' or '.join(CONSTRAINTS)})")
    if not cfg.fairness.sensitive:
        raise UserError("fairness.sensitive: thresholds need the columns whose groups they protect (e.g. --set "
                        "fairness.sensitive=[sex] when training)")
    tasks = thresholded_tasks(run, tasks)
    data = build_dataset(cfg)
    val = data.index["val"].numpy()
    if len(val) == 0:
        raise UserError("data.split.val: this run has no val split, and the thresholds are fitted on val (train "
                        "with data.split.val > 0)")
    groups = joint_groups(cfg.fairness, sensitive_columns(cfg, None))[val]
    check_groups(" × ".join(cfg.fairness.sensitive), groups, "the val split", cfg.fairness.min_group_size)
    outputs = predict_batches(run.model, data.split("val")["x"], *eval_settings(cfg.train))
    report: dict[str, Any] = {"method": "threshold", "constraint": constraint, "fitted_on": "val",
                              "sensitive": cfg.fairness.sensitive, "seed": cfg.seed, "tasks": {}}
    for name in tasks:
        target = data.targets[name][val]
        labelled = run.tasks[name].spec.labeled(target).numpy()
        rules = fit_rules(raw_logits(run, name, outputs[name])[labelled], target.numpy()[labelled],
                          groups[labelled], constraint)
        report["tasks"][name] = {"groups": {g: rule.to_json() for g, rule in rules.items()}}
    RunDir(run.dir).write_thresholds(report)
    return report


def configured_constraint(run: Run) -> str:
    """The constraint the run's config names (fairness.mitigation: {name: threshold, constraint: …})."""
    mitigation = run.config.fairness.mitigation
    return mitigation.options.constraint if mitigation.name == "threshold" else "demographic_parity"
