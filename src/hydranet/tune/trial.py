"""One trial of a study: sample a config, train it as an ordinary run in `<study dir>/trials/<number>`, report
each epoch to the pruner, and return the objective values (or keep why it failed).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydranet.errors import UserError
from hydranet.files import write_text
from hydranet.train import fit
from hydranet.train.callbacks import monitored_value
from hydranet.tune.interrupts import Interrupts
from hydranet.tune.objectives import model_latency_ms, summary_value
from hydranet.tune.settings import Settings
from hydranet.tune.space import suggest, trial_config


class PruningReporter:
    """Trainer callback: report the objective's val metric to the trial each epoch, and stop training
    (as early stopping does, so the epoch's metrics and checkpoint are still written) when the pruner says so."""

    def __init__(self, trial: Any, metric: str):
        self.trial, self.metric = trial, metric
        self.pruned_at: int | None = None

    def on_epoch_end(self, trainer: Any, record: dict) -> None:
        value = monitored_value(record, self.metric)
        if value is None:
            return
        self.trial.report(value, record["epoch"])
        if self.trial.should_prune():
            self.pruned_at = record["epoch"]
            trainer.should_stop = True


class TrialRunner:
    """The objective Optuna calls: sample a config, train it into trials/<number>, return the objectives."""

    def __init__(self, settings: Settings, echo: Callable[[str], None], optuna: Any, interrupts: Interrupts):
        self.settings, self.echo, self.optuna, self.interrupts = settings, echo, optuna, interrupts
        self.search = settings.search
        self.prune = settings.pruner != "none"

    def __call__(self, trial: Any) -> float | list[float]:
        run_dir = Path(self.settings.dir) / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")
        try:
            cfg = trial_config(self.settings.base, suggest(trial, self.search))
            trial.set_user_attr("config", cfg.model_dump(mode="json"))
            reporter = PruningReporter(trial, self.settings.objectives[0].name) if self.prune else None
            with self.interrupts.immediate():  # Ctrl-C stops the training at once
                run = fit(cfg, run_dir, progress=False, callbacks=[reporter] if reporter else [])
                values = self._measure(run)
            trial.set_user_attr("config", run.config.model_dump(mode="json"))  # as trained (a large table's default grows)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as err:
            self._failed(trial, run_dir, err)
            raise
        trial.set_user_attr("epochs", run.summary["epochs"])
        if reporter is not None and reporter.pruned_at is not None:
            self.echo(f"trial {trial.number} pruned at epoch {reporter.pruned_at}  {_params(trial.params)}")
            raise self.optuna.TrialPruned(f"pruned at epoch {reporter.pruned_at}")
        shown = "  ".join(f"{o.name} {v:.4g}" for o, v in zip(self.settings.objectives, values))
        self.echo(f"trial {trial.number} {shown}  ({run.summary['epochs']} epochs)  {_params(trial.params)}")
        return values[0] if len(values) == 1 else values

    def _measure(self, run: Any) -> list[float]:
        values = []
        for objective in self.settings.objectives:
            if objective.name == "params":
                values.append(float(run.summary["params"]))
            elif objective.name == "latency":
                values.append(model_latency_ms(run.model, run.info.input_shape, run.config.train.precision))
            else:
                value = summary_value(run.summary, objective.name)
                if value is None:
                    raise UserError(f"--objectives: {objective.name} needs a val split (data.split.val is 0)")
                values.append(float(value))
        return values

    def _failed(self, trial: Any, run_dir: Path, err: Exception) -> None:
        """Keep why the trial failed: one line in the study (and on screen), the traceback in its run directory."""
        trial.set_user_attr("error", f"{type(err).__name__}: {err}")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "error.txt", "".join(traceback.format_exception(err)))
        self.echo(f"trial {trial.number} failed: {err}  {_params(trial.params)}")


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
