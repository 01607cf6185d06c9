"""The `hydranet` command line: train, pretrain, probe, evaluate, calibrate, predict, explain, export, profile,
compress, monitor, audit, serve, report, attack, tune, experiments, config, bench mtl, meta train, meta eval, meta adapt.

User errors end with one line on stderr and exit code 2 (no traceback); internal errors keep theirs. Each command
imports what it runs when it runs (lazily), so `hydranet --help` and `hydranet config` start without loading torch.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from hydranet.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="hydranet: multi-task deep learning — one shared trunk, one head per task.")
console = Console(soft_wrap=True)  # paths and one-line messages are never broken across lines

EXPERIMENT = typer.Argument(None, help="built-in experiment name or YAML file (default: quickstart)")
SET = typer.Option([], "--set", "-s", help="override a config field: --set train.epochs=5 (repeatable)")
RUN_DIR = typer.Option(None, "--run-dir", help="where to write the run (default: runs/<name>-<time>)")
QUIET = typer.Option(False, "--quiet", "-q", help="no progress bar")


def _version(value: bool) -> None:
    if value:
        import hydranet

        console.print(f"hydranet {hydranet.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print hydranet's version and exit"),
          allow_plugins: bool = typer.Option(False, "--allow-plugins",
                                             help="let a run directory's config import the plugin modules it names "
                                                  "(evaluate, predict, attack, probe, --resume); off: refused")) -> None:
    """hydranet: multi-task deep learning — one shared trunk, one head per task."""
    if allow_plugins:
        import os

        from hydranet.config.loading import ALLOW_ENV

        os.environ[ALLOW_ENV] = "*"  # this process (and the workers it starts) only


def at_least_one(*flags: tuple[str, int | None]) -> None:
    """Counts given on the command line (steps, examples, seeds) must be ≥ 1: one line naming the flag."""
    for flag, value in flags:
        if value is not None and value < 1:
            raise UserError(f"{flag}: expected at least 1, got {value}")


def start_or_resume(experiment, overrides, run_dir, resume, quiet, start, continue_):
    """`start(config, run_dir, progress=…)` a new run, or `continue_(resume, progress=…)` an interrupted one;
    a resumed run keeps its own config, so EXPERIMENT, --set and --run-dir are refused with --resume.

    Ctrl-C is caught here, inside the command: typer's own main turns KeyboardInterrupt into a silent exit 130
    before `main` could see it.
    A run that finished already is not trained again; its stored summary is returned to be shown."""
    from hydranet.config import load_config
    from hydranet.rundir import RunFinished, RunInterrupted

    try:
        if resume is None:
            return start(load_config(experiment, overrides), run_dir, progress=not quiet)
        if experiment is not None or overrides or run_dir is not None:
            raise UserError("--resume: continues the run as it was configured; give no EXPERIMENT, --set or --run-dir with it")
        return continue_(resume, progress=not quiet)
    except RunFinished as finished:
        print(finished, file=sys.stderr)
        return finished  # has the run's dir and stored summary, as a Run has
    except RunInterrupted as stop:
        print(f"interrupted: {stop}", file=sys.stderr)
        raise typer.Exit(130) from None


@app.command()
def train(
    experiment: Optional[str] = EXPERIMENT,
    overrides: List[str] = SET,
    run_dir: Optional[Path] = RUN_DIR,
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue an interrupted run directory"),
    teacher: List[str] = typer.Option([], "--teacher", help="distill from this trained run (repeatable: each teaches "
                                                            "the tasks it has); short for --set distill.teacher=…"),
    quiet: bool = QUIET,
    nproc: Optional[int] = typer.Option(None, "--nproc", help="train as N processes of this machine (torchrun "
                                                              "--nproc-per-node N); train.batch_size stays the global batch"),
) -> None:
    """Train an experiment and write a run directory (with fairness.mitigation threshold, also thresholds.json)."""
    if nproc is not None:
        at_least_one(("--nproc", nproc))
        raise typer.Exit(_relaunch("train", nproc, experiment, overrides, run_dir, resume, quiet, teacher))
    from hydranet.distributed.context import is_main
    from hydranet.fairness import after_training
    from hydranet.rundir import RunFinished
    from hydranet.train import fit
    from hydranet.train import resume as resume_run

    if teacher:  # JSON is YAML: the paths stay strings whatever characters they hold
        overrides = [*overrides, f"distill.teacher={json.dumps(teacher[0] if len(teacher) == 1 else teacher)}"]
    run = start_or_resume(experiment, overrides, run_dir, resume, quiet, fit, resume_run)
    if not is_main():  # torchrun's other ranks: rank 0 post-processes and reports the run
        return
    if not isinstance(run, RunFinished):  # a finished run was post-processed when it finished
        after_training(run)
    console.print(metrics_table(run.summary, title=f"{run.summary['experiment']} — {run.summary['epochs']} epochs, "
                                                   f"{run.summary['train_seconds']:.1f}s, {run.summary['params']:,} params"))
    console.print(f"run directory: [bold]{run.dir}[/bold]")


def _relaunch(command, nproc, experiment, overrides, run_dir, resume, quiet, teacher=()) -> int:
    """`train`, `pretrain` or `meta train` again as `nproc` processes under torchrun, with the same arguments (less
    --nproc)."""
    from hydranet.distributed.launch import relaunch

    args = [experiment] if experiment is not None else []
    args += [a for o in overrides for a in ("--set", o)] + [a for t in teacher for a in ("--teacher", t)]
    args += ["--run-dir", str(run_dir)] if run_dir is not None else []
    args += ["--resume", str(resume)] if resume is not None else []
    return relaunch(nproc, [*command.split(), *args, *(["--quiet"] if quiet else [])])


@app.command()
def pretrain(
    experiment: Optional[str] = EXPERIMENT,
    overrides: List[str] = SET,
    run_dir: Optional[Path] = RUN_DIR,
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue an interrupted pretraining run directory"),
    quiet: bool = QUIET,
    nproc: Optional[int] = typer.Option(None, "--nproc", help="pretrain as N processes of this machine (torchrun "
                                                              "--nproc-per-node N); train.batch_size stays the global batch"),
) -> None:
    """Pretrain the trunk without labels (ssl.method); writes a run directory with trunk.safetensors."""
    if nproc is not None:
        at_least_one(("--nproc", nproc))
        raise typer.Exit(_relaunch("pretrain", nproc, experiment, overrides, run_dir, resume, quiet))
    from hydranet.distributed.context import is_main
    from hydranet.rundir import RunDir
    from hydranet.ssl import pretrain as pretrain_run
    from hydranet.ssl import resume_pretrain

    run = start_or_resume(experiment, overrides, run_dir, resume, quiet, pretrain_run, resume_pretrain)
    if not is_main():  # torchrun's other ranks: rank 0 reports the run
        return
    s = run.summary
    knn = "  ".join(f"kNN {t} accuracy {m['accuracy']:.4f}" for t, m in s["knn"].items())
    console.print(f"{s['experiment']}: {s['method']} {s['epochs']} epochs, {s['train_seconds']:.1f}s, "
                  f"{s['params']:,} trunk params, loss {s['loss']:.4f}  {knn}")
    console.print(f"run directory: [bold]{run.dir}[/bold] (trunk: {RunDir(run.dir).trunk})")


@app.command()
def probe(
    run_dir: Path = typer.Argument(..., help="a pretraining or training run directory"),
    mode: str = typer.Option("linear", "--mode", help="linear | knn"),
    labels_fraction: Optional[float] = typer.Option(None, "--labels-fraction", help="use this fraction of the train labels, class-balanced (default: the experiment's data.labels_fraction)"),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="probe on another experiment's data and tasks (default: the run's own)"),
    overrides: List[str] = SET,
) -> None:
    """Evaluate a run's frozen trunk features on tasks: linear probe or kNN; writes probe-<mode>.json."""
    from hydranet.config import load_config
    from hydranet.rundir import RunDir
    from hydranet.ssl import probe as probe_run

    if overrides and experiment is None:
        raise UserError("--set: give --experiment too (without it the run's own config is probed as it was)")
    cfg = load_config(experiment, overrides) if experiment is not None else None
    result = probe_run(run_dir, mode, labels_fraction, experiment=cfg)
    title = (f"{mode} probe of {run_dir} on {result['experiment']} — {result['train_examples']} labeled train examples, "
             f"{result['seconds']:.1f}s")
    console.print(metrics_table(result, title, ("val", "test")))
    console.print(f"wrote {RunDir(run_dir).probe_file(mode)}")


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    split: str = typer.Option("test", "--split", help="test | val | train"),
) -> None:
    """Score a trained run on one split; writes eval-<split>.json."""
    from hydranet.predict import evaluate_run
    from hydranet.rundir import RunDir
    from hydranet.train import load_run

    metrics = evaluate_run(load_run(run_dir), split)
    console.print(metrics_table({split: metrics}, title=f"{run_dir} — {split}"))
    console.print(f"wrote {RunDir(run_dir).eval_file(split)}")


@app.command()
def baseline(target: str = typer.Argument(..., help="a run directory, or an experiment (built-in name or YAML file)")) -> None:
    """Boosted trees (LightGBM, else HistGradientBoosting) and logistic/ridge regression per task on the run's own
    train/val/test rows, beside the run's test metrics; a run directory gets baselines.json."""
    from hydranet.baseline import baselines, by_model

    report = baselines(target)
    models = by_model(report)
    console.print(metrics_table(models, f"{target} — test ({report['rows']['test']} rows)", tuple(models)))
    for task, why in report["skipped"].items():
        console.print(f"{task}: skipped ({why})")
    if "run" in report:
        console.print(f"wrote {Path(target) / 'baselines.json'}")


@app.command()
def calibrate(run_dir: Path = typer.Argument(..., help="a run directory (with a val split)")) -> None:
    """Temperature scaling: fit one T per classification/binary/multilabel head on val; writes calibration.json
    (replacing an earlier one), which evaluate, predict, export and serving then apply."""
    from hydranet.calibrate import calibrate_run
    from hydranet.rundir import RunDir
    from hydranet.train import load_run

    report = calibrate_run(load_run(run_dir, calibrated=False))
    table = Table("task", "T", "split", "NLL before", "NLL after", "ECE before", "ECE after",
                  title=f"{run_dir} — temperature scaling fitted on val (ECE: {report['ece_bins']} bins)")
    for task, entry in report["tasks"].items():
        for split in ("val", "test"):
            numbers = entry.get(split, {})
            table.add_row(task, f"{entry['temperature']:.3f}", split, *(
                _fmt(numbers.get(f"{metric}_{when}")) for metric in ("nll", "ece") for when in ("before", "after")))
    console.print(table)
    console.print(f"wrote {RunDir(run_dir).calibration}")


@app.command()
def threshold(
    run_dir: Path = typer.Argument(..., help="a run directory (trained on a table, with fairness.sensitive)"),
    constraint: Optional[str] = typer.Option(None, "--constraint", help="demographic_parity | equalized_odds "
                                             "(default: the run's fairness.mitigation option, else demographic_parity)"),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="binary tasks to threshold, comma-separated (default: "
                                        "the run's fairness.tasks, else every binary task)"),
) -> None:
    """Fairness thresholds (Hardt et al. 2016): fit a threshold rule per group of each binary task on val; writes
    thresholds.json (replacing an earlier one), which predict, evaluate, audit and serving then apply."""
    from hydranet.fairness import fit_thresholds
    from hydranet.rundir import RunDir
    from hydranet.train import load_run

    chosen = [t.strip() for t in tasks.split(",") if t.strip()] if tasks is not None else None
    report = fit_thresholds(load_run(run_dir), constraint, chosen)
    table = Table("task", "group", "P(positive | logit)", title=f"{run_dir} — thresholds ({report['constraint']}) "
                                                              f"fitted on val")
    for task, entry in report["tasks"].items():
        for group, rule in entry["groups"].items():
            table.add_row(task, group, rule_text(rule))
    console.print(table)
    console.print(f"wrote {RunDir(run_dir).thresholds}")


def rule_text(rule: dict) -> str:
    """`0.40·[logit > -0.31] + 0.60·[logit > -1.39]`, with equalized odds' constant part when it has one."""
    text = " + ".join(f"{p:.2f}·[logit {op} {float(t):.3g}]" for p, (op, t) in
                      ((rule["p0"], rule["operation0"]), (rule["p1"], rule["operation1"])) if p > 0)
    if rule["p_ignore"] > 0:
        text = f"{rule['p_ignore']:.2f}·{rule['constant']:.3f} + {1 - rule['p_ignore']:.2f}·({text})"
    return text


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    inputs: List[Path] = typer.Argument(..., help="a CSV/Parquet file (table runs) or image files/folders (image runs)"),
    output: Path = typer.Option(Path("predictions.csv"), "--output", "-o", help="CSV to write"),
) -> None:
    """Predict every task for new inputs; writes a CSV with one column per task."""
    from hydranet.predict import predict_paths
    from hydranet.train import load_run

    frame = predict_paths(load_run(run_dir), inputs, output)
    console.print(f"wrote {len(frame)} predictions to {output}")


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    fmt: str = typer.Option("onnx", "--format", help="onnx (the only format)"),
    out: Optional[Path] = typer.Option(None, "--output", "-o", help="folder to write (default: RUN/export); must be "
                                       "missing, empty, or a previous export of this run, which is replaced"),
) -> None:
    """Export a trained run to ONNX with its preprocessing as JSON; checks ONNX Runtime against PyTorch."""
    from hydranet.export import export_run
    from hydranet.train import load_run

    if fmt != "onnx":
        raise UserError(f"--format: {fmt!r} is not an export format (expected onnx)")
    result = export_run(load_run(run_dir), out)
    table = Table("output", "max |onnxruntime − torch|", title=f"parity on {result['examples']} {result['split']} "
                  f"examples, batch sizes {', '.join(map(str, result['batch_sizes']))} (tolerance {result['tolerance']:g})")
    for task, diff in result["max_abs_diff"].items():
        table.add_row(task, f"{diff:.2e}")
    console.print(table)
    files = ", ".join(sorted(path.name for path in Path(result["folder"]).iterdir()))
    console.print(f"exported in {result['export_seconds']:.1f}s to [bold]{result['folder']}[/bold] ({files})")


@app.command()
def profile(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    repeats: int = typer.Option(20, "--repeats", help="timed forward passes per batch size (after 3 untimed)"),
    precision: str = typer.Option("fp32", "--precision", help="fp32 | bf16 (autocast)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: torch's, one per core)"),
) -> None:
    """What the model costs: parameters (trunk, heads, shared), FLOPs per example, weights on disk, peak memory,
    latency at batch 1 and 64; writes profile.json (replacing an earlier one)."""
    from hydranet.compress.profile import profile_run
    from hydranet.rundir import RunDir
    from hydranet.train import load_run

    if precision not in ("fp32", "bf16"):
        raise UserError(f"--precision: {precision!r} is not a precision (expected fp32 or bf16)")
    at_least_one(("--repeats", repeats), ("--threads", threads))
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    report = profile_run(load_run(run_dir), repeats, precision)
    console.print(profile_table(report, title=f"{run_dir} — profile"))
    console.print(f"wrote {RunDir(run_dir).profile}")


def profile_table(report: dict, title: str) -> Table:
    """profile.json as a two-column table (the latency row says at how many threads and which precision)."""
    params, memory, lat = report["params"], report["peak_memory_bytes"], report["latency"]
    table = Table("measure", "value", title=title)
    table.add_row("parameters", f"{params['total']:,} (nonzero {params['nonzero']:,})")
    table.add_row("  trunk / shared", f"{params['trunk']:,} / {params['shared']:,}")
    for task, count in params["heads"].items():
        table.add_row(f"  head {task}", f"{count:,}")
    table.add_row("FLOPs per example", f"{report['flops_per_example']:,}")
    table.add_row("weights on disk", f"{report['weights_bytes'] / 1024:,.1f} KiB")
    table.add_row("peak memory, batch 64", f"{memory['total'] / 1024:,.1f} KiB (weights {memory['weights'] / 1024:,.1f}, "
                  f"activations {memory['activations'] / 1024:,.1f})")
    for key in ("batch_1_ms", "batch_64_ms"):
        table.add_row(f"latency {key.removesuffix('_ms').replace('_', ' ')}", f"{lat[key]:.3f} ms (median of "
                      f"{lat['repeats']}, {lat['threads']} threads, {lat['precision']})")
    return table


@app.command()
def compress(
    run_dir: Path = typer.Argument(..., help="a trained run directory"),
    out: Optional[Path] = typer.Option(None, "--output", "-o", help="the new run directory (default: runs/<name>-"
                                       "<time>; int8: RUN/export-int8-MODE); must be missing or empty"),
    method: Optional[str] = typer.Option(None, "--method", help="prune | int8-dynamic | int8-static | qat | distill "
                                         "(default: the run's compress.method)"),
    overrides: List[str] = SET,
    structure: Optional[str] = typer.Option(None, "--structure", help="prune: unstructured (zero weights) | channels "
                                            "(remove channels and neurons: smaller and faster)"),
    amount: Optional[float] = typer.Option(None, "--amount", help="prune: sparsity (unstructured) or fraction of channels removed"),
    importance: Optional[str] = typer.Option(None, "--importance", help="prune, channels: l1 | taylor"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="prune: oneshot | gradual (Zhu & Gupta's cubic "
                                           "schedule while fine-tuning; unstructured)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="prune, qat: fine-tuning epochs through the normal trainer"),
    end: Optional[float] = typer.Option(None, "--end", help="prune, gradual: fraction of the fine-tuning steps that reach the sparsity"),
    every: Optional[int] = typer.Option(None, "--every", help="prune, gradual: steps between pruning steps"),
    calibration: Optional[int] = typer.Option(None, "--calibration", help="int8-static, qat: train examples that calibrate activations"),
    teacher: List[str] = typer.Option([], "--teacher", help="distill: the teacher run (repeatable: each teaches the tasks it has)"),
    quiet: bool = QUIET,
) -> None:
    """Compress a trained run with the method of --method or of the run's `compress:` section (options from it,
    `--set compress.method.…` and the flags): prune or qat or distill into a new run directory that evaluate,
    predict, export and serve take (compress.json says what was done), int8 quantize its ONNX export."""
    from hydranet.compress.methods import choose
    from hydranet.compress.methods import compress as compress_with
    from hydranet.rundir import RunDir

    flags = {"structure": structure, "amount": amount, "importance": importance, "schedule": schedule, "epochs": epochs,
             "end": end, "every": every, "calibration": calibration,
             "teacher": (teacher[0] if len(teacher) == 1 else teacher) or None}
    chosen = choose(RunDir.open(run_dir).read_config(), method, overrides, {k: v for k, v in flags.items() if v is not None})
    done = compress_with(run_dir, chosen, out, progress=not quiet)
    if done.quantization is not None:
        console.print(quantization_table(done.quantization, f"{run_dir} — int8 {done.quantization['mode']} (ONNX "
                                         f"Runtime, {done.quantization['split']} split, {done.quantization['threads']} threads)"))
        console.print(f"wrote [bold]{done.quantization['folder']}[/bold] (model.onnx int8, quantization.json)")
    if done.run is not None:
        console.print(metrics_table({k: done.run.summary.get(k, {}) for k in ("val", "test")},
                                    title=f"{done.run.dir} — {chosen.name}"))
        console.print(f"run directory: [bold]{done.run.dir}[/bold]")


def quantization_table(report: dict, title: str) -> Table:
    """An int8 export against its fp32 graph: sizes, latencies and every test metric."""
    table = Table("", "fp32", "int8", title=title)
    table.add_row("model.onnx", *(f"{report[k]['bytes'] / 1024:,.1f} KiB" for k in ("fp32", "int8")))
    for batch in (1, 64):
        table.add_row(f"latency batch {batch}", *(f"{report[k][f'batch_{batch}_ms']:.3f} ms" for k in ("fp32", "int8")))
    for task, metrics in report["fp32"]["metrics"].items():
        for metric, value in metrics.items():
            table.add_row(f"{task} {metric}", _fmt(value), _fmt(report["int8"]["metrics"][task][metric]))
    return table


@app.command()
def monitor(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    data: list[Path] = typer.Argument(..., help="new inputs as predict takes them: one .csv, .csv.gz or .parquet "
                                      "file (table and text runs), image files or folders (image runs), one .npz "
                                      "(sequence runs)"),
    out: Optional[Path] = typer.Option(None, "--output", "-o", help="folder for drift.json, drift.png and "
                                       "drift.html (default: RUN/monitor)"),
    reference_rows: Optional[int] = typer.Option(None, "--reference-rows", help="train rows of the reference "
                                                 "(default: the run's monitor.reference_rows, the stored sample; "
                                                 "≤ 1000: statistical tests; more: distances)"),
) -> None:
    """Data drift of new inputs and of the predictions on them against the reference stored with the run."""
    from hydranet.monitor.report import format_score, monitor_run
    from hydranet.train import load_run

    folder = out if out is not None else Path(run_dir) / "monitor"
    report = monitor_run(load_run(run_dir), data, folder, reference_rows)
    for key, rows in (("features", "features"), ("predictions", "tasks")):
        result = report[key]
        table = Table("name", "method", "p / distance", "drift",
                      title=f"{key}: {result['drifted']} of {len(result[rows])} drifted")
        for r in result[rows]:
            table.add_row(str(r["feature"]), r["method"], format_score(r), "yes" if r["drift"] else "no")
        console.print(table)
    console.print(f"reference: {report['reference']}; wrote drift.json, drift.png and drift.html to "
                  f"[bold]{folder}[/bold]")


@app.command()
def audit(
    run_dir: Path = typer.Argument(..., help="a run directory (trained on a table)"),
    sensitive: Optional[str] = typer.Option(None, "--sensitive", help="sensitive columns, comma-separated (default: "
                                            "the run's fairness.sensitive)"),
    split: str = typer.Option("test", "--split", help="test | val | train"),
    out: Optional[Path] = typer.Option(None, "--output", "-o", help="folder for audit.json, audit.md and audit.png "
                                       "(default: RUN/audit)"),
) -> None:
    """Fairness audit: each task's metrics per group of the sensitive columns, with bootstrap 95% intervals."""
    from hydranet.fairness.audit import audit_run
    from hydranet.train import load_run

    folder = out if out is not None else Path(run_dir) / "audit"
    columns = [c.strip() for c in sensitive.split(",") if c.strip()] if sensitive is not None else None
    report = audit_run(load_run(run_dir), columns, split, folder)
    for task, result in report["tasks"].items():
        for attribute, found in result["attributes"].items():
            table = Table("summary", "value", "95% interval", title=f"{task} by {attribute} ({split})")
            for name, s in found["summary"].items():
                table.add_row(name, _fmt(s["value"]), f"{_fmt(s['low'])} – {_fmt(s['high'])}")
            console.print(table)
    for warning in report["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(f"wrote audit.json, audit.md and audit.png to [bold]{folder}[/bold]")


@app.command()
def serve(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, "--port", help="TCP port"),
    backend: str = typer.Option("torch", "--backend", help="torch | onnx (ONNX Runtime on RUN/export, exported "
                                "first when missing or stale) | onnx-int8-dynamic | onnx-int8-static (RUN/export-int8-MODE, "
                                "made by hydranet compress)"),
    workers: int = typer.Option(1, "--workers", help="server processes sharing the port (each batches on its own; /metrics and /drift cover all)"),
    max_batch: int = typer.Option(64, "--max-batch", help="most rows per model call; 1: no batching"),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="how long a request waits for others to join its batch"),
    max_body_mb: float = typer.Option(10.0, "--max-body-mb", help="largest request body (larger: 413)"),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="environment variable holding the key "
                                              "requests must send (Authorization: Bearer or X-API-Key)"),
    window: int = typer.Option(1000, "--window", help="recent rows kept for /drift"),
) -> None:
    """Serve a run's predictions over HTTP (/predict, /health, /metadata, /metrics, /drift, /docs)."""
    from hydranet.serve.server import serve_run
    from hydranet.serve.settings import ServeSettings

    settings = ServeSettings(host=host, port=port, backend=backend, workers=workers, max_batch=max_batch,
                             max_wait_ms=max_wait_ms, max_body_mb=max_body_mb, api_key_env=api_key_env, window=window)
    serve_run(run_dir, settings)


@app.command()
def explain(
    run_dir: Path = typer.Argument(..., help="a run directory"),
    inputs: Optional[List[Path]] = typer.Argument(None, help="a CSV/Parquet file (table and text runs), image "
                                                  "files/folders (image runs) or an .npz (sequence runs); or use "
                                                  "--split"),
    task: Optional[str] = typer.Option(None, "--task", help="the task whose head to explain (default: the only one; "
                                       "--global: all)"),
    method: Optional[str] = typer.Option(None, "--method", help="saliency | integrated_gradients | gradcam | occlusion "
                                         "| kernel_shap | lime (default: integrated_gradients for images, texts and "
                                         "sequences, kernel_shap for tables)"),
    target: Optional[str] = typer.Option(None, "--target", help="class or label (name or index) to explain "
                                         "(default: the predicted one; per-pixel tasks: see --region)"),
    region: Optional[str] = typer.Option(None, "--region", help="per-pixel tasks: the pixels whose summed logits "
                                         "(segmentation) or mean value is explained: predicted (the pixels "
                                         "predicted as the target; depth, normals: all) | all | R0:R1,C0:C1"),
    n: Optional[int] = typer.Option(None, "--n", help="examples: drawn from --split (default 8, --global 200) "
                                    "or the first N inputs"),
    split: Optional[str] = typer.Option(None, "--split", help="explain examples of the run's own split: test | val | train"),
    global_: bool = typer.Option(False, "--global", help="tables: mean |attribution| per source column and task"),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="zeros | mean (of train) | blur (images); "
                                           "default: zeros for images, mean for tables"),
    steps: int = typer.Option(50, "--steps", help="integrated_gradients: steps on the path"),
    samples: int = typer.Option(200, "--samples", help="kernel_shap, lime: coalitions per example"),
    layer: Optional[str] = typer.Option(None, "--layer", help="gradcam: a module name, e.g. trunk.features.3 "
                                        "(default: the last convolutional feature map)"),
    patch: Optional[int] = typer.Option(None, "--patch", help="images, for kernel_shap, lime, occlusion: patch side "
                                        "in pixels (default: an 8x8 grid)"),
    segments: str = typer.Option("grid", "--segments", help="images, for kernel_shap, lime, occlusion: grid (square "
                                 "patches) | slic (superpixels)"),
    n_segments: int = typer.Option(64, "--n-segments", help="images, --segments slic: about this many superpixels"),
    out: Optional[Path] = typer.Option(None, "--output", "-o", help="folder to write (default: "
                                       "RUN/explain/<task>-<method>); missing, empty or an earlier explanation"),
) -> None:
    """Attributions of one task's predictions (Captum): PNGs, attributions.csv or importance.csv."""
    from hydranet.explain import Settings, explain_run
    from hydranet.train import load_run

    at_least_one(("--n", n), ("--steps", steps), ("--samples", samples), ("--patch", patch))
    settings = Settings(method=method, target=target, baseline=baseline, steps=steps, samples=samples,
                        layer=layer, region=region, patch=patch, segments=segments, n_segments=n_segments)
    result = explain_run(load_run(run_dir), inputs or [], split, task, n, out, global_, settings)
    for task_name, gap in result["completeness"].items():
        relative = "-" if gap["max_relative_delta"] is None else f"{gap['max_relative_delta']:.2%}"
        console.print(f"{task_name}: integrated gradients completeness error within the bound for "
                      f"{gap['within_bound']}/{gap['examples']} examples ({gap['bound']}); largest relative {relative}, "
                      f"{gap['near_zero_gaps']} near-zero gaps; steps {min(gap['steps'])}-{max(gap['steps'])}")
    console.print(f"explained {len(result['inputs'])} examples with {result['method']} in {result['seconds']:.1f}s; "
                  f"wrote [bold]{result['folder']}[/bold]")


@app.command()
def attack(
    run_dir: Path = typer.Argument(..., help="a run directory (image runs)"),
    name: str = typer.Option("pgd", "--attack", help="fgsm | pgd | apgd"),
    eps: Optional[str] = typer.Option(None, "--eps", help="budget in raw pixels [0, 1], e.g. 8/255; with --sweep a comma list"),
    norm: str = typer.Option("linf", "--norm", help="linf | l2"),
    steps: Optional[int] = typer.Option(None, "--steps", help="gradient steps (default: pgd 10, apgd 100)"),
    restarts: int = typer.Option(1, "--restarts", help="random restarts; each example keeps its worst"),
    task: Optional[str] = typer.Option(None, "--task", help="attack this task's loss (default: the sum of all)"),
    split: str = typer.Option("test", "--split", help="test | val | train"),
    limit: Optional[int] = typer.Option(None, "--limit", help="attack N examples of the split, drawn at random (seeded by the run's seed)"),
    target: Optional[str] = typer.Option(None, "--target", help="targeted attack on --task: a class name or index, or "
                                         "random (a random class other than the label, per example)"),
    sweep: bool = typer.Option(False, "--sweep", help="several eps (default linf 0…16/255, l2 0…2) with gradient-masking checks"),
) -> None:
    """Attack a trained run; writes attack-<name>.json (or attack-<name>-sweep.json)."""
    from hydranet.robust import attack_run, sweep_run
    from hydranet.rundir import RunDir
    from hydranet.train import load_run

    at_least_one(("--steps", steps), ("--restarts", restarts), ("--limit", limit))
    run = load_run(run_dir)
    options = dict(norm=norm, steps=steps, restarts=restarts, task=task, split=split, limit=limit)
    if sweep and target is not None:
        raise UserError("--target: the sweep's gradient-masking checks are for untargeted attacks (drop --sweep or --target)")
    if sweep:
        result = sweep_run(run, name, eps.split(",") if eps else None, **options)
        console.print(sweep_table(result))
        for warning in result["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {warning}")
        console.print(f"wrote {RunDir(run_dir).attack_file(name, sweep=True)}")
        return
    if eps is None:
        raise UserError("--eps: give the attack budget, e.g. --eps 8/255 (or use --sweep)")
    result = attack_run(run, name, eps, target=target, **options)
    aim = f", target {target} on {result['task']}" if target is not None else ""
    title = (f"{name} {norm} eps={result['eps']:.4g}, {result['steps']} steps, {result['restarts']} restarts{aim} — "
             f"{result['examples']} examples, {result['seconds']:.1f}s, success rate {_fmt(result['success_rate'])}")
    console.print(metrics_table({"clean": result["clean"], "robust": result["robust"]}, title, ("clean", "robust")))
    console.print(f"wrote {RunDir(run_dir).attack_file(name)}")


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def sweep_table(result: dict) -> Table:
    """eps (and eps·255 for L∞) | robust accuracy | success rate, then the steps, restarts and reach checks."""
    levels = result["norm"] == "linf"  # pixel levels of an 8-bit image mean something for L∞ only
    table = Table("eps", *(["eps·255"] if levels else []), "robust accuracy", "success rate",
                  title=f"{result['attack']} {result['norm']} sweep — clean accuracy {_fmt(result['clean_accuracy'])}")

    def row(eps: float, accuracy: float | None, last: str) -> None:
        table.add_row(f"{eps:.4g}", *([f"{eps * 255:.3g}"] if levels else []), _fmt(accuracy), last)

    for p in result["points"]:
        row(p["eps"], p["robust_accuracy"], _fmt(p["success_rate"]))
    for name, check in result["checks"].items():
        row(check["eps"], check["robust_accuracy"],
            f"{name} check: {check['attack']}, {check['steps']} steps, {check['restarts']} restarts")
    return table


@app.command()
def report(
    folder: Path = typer.Argument(..., help="a run directory, or a study directory (studies/NAME)"),
    out: Optional[Path] = typer.Option(None, "--output", "-o", help="HTML file to write (default: FOLDER/report.html)"),
) -> None:
    """One self-contained HTML report of a run (config, data, curves, metrics, errors, robustness) or a study."""
    from hydranet.report.run import write_report

    result = write_report(folder, out)
    console.print(f"wrote {result['path']} ({len(result['sections'])} sections, {result['seconds']:.1f}s)")


@app.command()
def experiments() -> None:
    """List the built-in experiments."""
    from hydranet.config import experiment_description, experiment_names

    table = Table("name", "description", title="built-in experiments")
    for name in experiment_names():
        table.add_row(name, experiment_description(name))
    console.print(table)


@app.command()
def config(experiment: Optional[str] = EXPERIMENT, overrides: List[str] = SET) -> None:
    """Print the resolved, validated config as YAML: every field, except a table default's trunk and encoder, which
    its data chooses (a YAML comment says how), so the printed file trains as the experiment does."""
    import yaml

    from hydranet.config import load_config
    from hydranet.config.sections import LARGE_TABLE, LARGE_TABLE_ROWS

    cfg = load_config(experiment, overrides)
    typer.echo(yaml.safe_dump(cfg.as_experiment(), sort_keys=False), nl=False)
    if cfg.grows_with_rows:
        flow = {key: yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000).strip()
                for key, value in LARGE_TABLE.items()}
        typer.echo(f"# model.trunk and data.encoder are left to the data: the plain {cfg.model.trunk.name} below "
                   f"{LARGE_TABLE_ROWS:,} rows (after data.limit), from then on model.trunk {flow['trunk']} and "
                   f"data.encoder {flow['encoder']} (those of model.init_from's run when it names one); the run's "
                   f"config.yaml names them")


bench_app = typer.Typer(no_args_is_help=True, help="Compare methods over seeds against single-task baselines.")
app.add_typer(bench_app, name="bench")


@bench_app.command("mtl")
def bench_mtl(
    experiment: Optional[str] = EXPERIMENT,
    balancers: Optional[str] = typer.Option(None, "--balancers", help="comma-separated balancers (default: every registered one)"),
    sharings: str = typer.Option("hard", "--sharings", help="comma-separated sharing architectures"),
    seeds: int = typer.Option(3, "--seeds", help="seeds per method (seed, seed+1, …)"),
    overrides: List[str] = SET,
    out: Optional[Path] = typer.Option(None, "--out", help="folder for the runs and bench.md/json/png (default: runs/bench-<name>-<time>)"),
) -> None:
    """Each task alone, then every balancer × sharing: main metric per task, Δm and time per epoch."""
    from hydranet.mtl.bench import run_bench

    at_least_one(("--seeds", seeds))

    def names(text: Optional[str]) -> Optional[list[str]]:
        return None if text is None else [n.strip() for n in text.split(",") if n.strip()]

    run_bench(experiment, names(balancers), names(sharings), seeds, overrides, out,
              command="hydranet " + shlex.join(sys.argv[1:]), echo=typer.echo)


meta_app = typer.Typer(no_args_is_help=True, help="Few-shot meta-learning: protonet, maml, fomaml, anil, reptile, finetune.")
app.add_typer(meta_app, name="meta")


@meta_app.command("train")
def meta_train(
    experiment: Optional[str] = EXPERIMENT,
    overrides: List[str] = SET,
    run_dir: Optional[Path] = RUN_DIR,
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue an interrupted meta-training run directory"),
    quiet: bool = QUIET,
    nproc: Optional[int] = typer.Option(None, "--nproc", help="meta-train as N processes of this machine (torchrun "
                                                              "--nproc-per-node N); meta.meta_batch stays the global "
                                                              "meta-batch"),
) -> None:
    """Meta-train `meta.method` on episodes of `meta.source` (built-in experiments: omniglot, sinusoid)."""
    if nproc is not None:
        at_least_one(("--nproc", nproc))
        raise typer.Exit(_relaunch("meta train", nproc, experiment, overrides, run_dir, resume, quiet))
    from hydranet.distributed.context import is_main
    from hydranet.meta.loop import resume as resume_meta
    from hydranet.meta.loop import train as train_meta

    run = start_or_resume(experiment, overrides, run_dir, resume, quiet, train_meta, resume_meta)
    if not is_main():  # torchrun's other ranks: rank 0 reports the run
        return
    shown = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in run.summary.items()
                      if k != "method")
    console.print(f"meta-trained: {shown}")
    console.print(f"run directory: [bold]{run.dir}[/bold]")


@meta_app.command("eval")
def meta_eval(
    run_dir: Path = typer.Argument(..., help="a meta-training run directory"),
    ways: int = typer.Option(5, "--ways", help="classes per episode (ignored for regression)"),
    shots: int = typer.Option(1, "--shots", help="support examples per class (sinusoid: support points)"),
    episodes: int = typer.Option(600, "--episodes", help="episodes to average over"),
) -> None:
    """Adapt to new few-shot tasks of held-out classes: mean score ± 95% CI (Omniglot: also Lake's 20 runs)."""
    from hydranet.meta.evaluate import evaluate_run

    at_least_one(("--ways", ways), ("--shots", shots), ("--episodes", episodes))
    result = evaluate_run(run_dir, ways, shots, episodes)
    task = f"{ways}-way {shots}-shot" if result["metric"] == "accuracy" else f"{shots}-shot"
    console.print(f"{task}, {result['episodes']} episodes: {result['metric']} {result['mean']:.4f} ± {result['ci95']:.4f}")
    if "lake_runs" in result:
        lake = result["lake_runs"]
        console.print(f"Lake's 20 one-shot runs (20-way 1-shot): accuracy {lake['mean']:.4f} ± {lake['ci95']:.4f}")


@meta_app.command("adapt")
def meta_adapt(
    run_dir: Path = typer.Argument(..., help="a meta-training run directory"),
    support: Path = typer.Argument(..., help="labelled examples: one sub-folder of images per class (a table source: a CSV/Parquet file with the class column; sinusoid: a table with columns x, y)"),
    query: List[Path] = typer.Argument(..., help="inputs to classify: image files or folders (a table source: one table file; sinusoid: a table with column x)"),
    output: Path = typer.Option(Path("predictions.csv"), "--output", "-o", help="CSV to write"),
) -> None:
    """Adapt to your own few examples per class and classify new inputs (class and probability per class); a
    sinusoid run adapts to your points of one curve and predicts y at new x."""
    from hydranet.meta.adapt import adapt_run

    frame = adapt_run(run_dir, support, query, output)
    adapted = "your curve" if "x" in frame.columns else f"{frame.shape[1] - 2} classes"
    console.print(f"adapted to {adapted}; wrote {len(frame)} predictions to {output}")


@app.command()
def tune(
    experiment: Optional[str] = EXPERIMENT,
    overrides: List[str] = SET,
    trials: int = typer.Option(20, "--trials", "-n", help="finished trials the study should hold; rerunning the command resumes it up to this"),
    workers: int = typer.Option(1, "--workers", "-w", help="worker processes on this machine, sharing the study's storage"),
    storage: Optional[str] = typer.Option(None, "--storage", help="database URL that workers on several machines share, e.g. postgresql+psycopg://user@host/db (default: a journal file in the study directory)"),
    study: Optional[str] = typer.Option(None, "--study", help="study name (default: the experiment's name)"),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe | random | cmaes | grid"),
    pruner: Optional[str] = typer.Option(None, "--pruner", help="median | asha | hyperband | none (default: median; none for several objectives)"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="start no new trial after this many seconds"),
    objectives: Optional[str] = typer.Option(None, "--objectives", help="NAME[:min|max],… of val/<task>/<metric>, val/loss, params, latency (default: the early-stopping monitor, else val/loss)"),
    out: Optional[Path] = typer.Option(None, "--dir", help="study directory (default: studies/<study>)"),
) -> None:
    """Search the experiment's `search:` space on Optuna: one training run per trial, pruned, resumable."""
    from hydranet.distributed.context import launched

    if launched():
        raise UserError("hydranet tune: runs its trials in its own worker processes (--workers, --storage); start it "
                        "without torchrun, and train the chosen config with torchrun afterwards")
    from hydranet.config import load_config
    from hydranet.tune.report import best_table
    from hydranet.tune.study import tune as run_tune

    cfg = load_config(experiment, overrides)
    try:
        result = run_tune(cfg, trials, workers, storage, study, sampler, pruner, timeout, objectives, out, echo=typer.echo)
    except KeyboardInterrupt:
        print("interrupted: the finished trials are kept; run the same command again to resume the study", file=sys.stderr)
        raise typer.Exit(130) from None
    if result.best is not None or result.pareto:
        console.print(best_table(result))


def metrics_table(summary: dict, title: str, columns: tuple[str, ...] = ("train", "val", "test")) -> Table:
    """task | metric | one column per split (or other column) present in the summary (val, test)."""
    splits = [s for s in columns if summary.get(s)]
    table = Table("task", "metric", *splits, title=title)
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for split in splits:
        for task, metrics in summary[split].items():
            for metric, value in metrics.items():
                rows.setdefault((task, metric), {})[split] = value
    for (task, metric), values in rows.items():
        table.add_row(task, metric, *(f"{values[s]:.4f}" if s in values else "" for s in splits))
    return table


def usage_error_line(err: typer.TyperException) -> str:
    """A command-line mistake (unknown option, missing argument, `--steps abc`) as one line naming the command,
    instead of click's boxed, multi-line panel: `error: hydranet attack: No such option: --step …`."""
    ctx = getattr(err, "ctx", None)
    subcommands = ctx.command_path.split()[len(ctx.find_root().command_path.split()):] if ctx is not None else []
    return f"error: {' '.join(['hydranet', *subcommands])}: {' '.join(err.format_message().split())}"


def main() -> None:
    """Console entry point: turn UserError and usage errors into one stderr line and exit code 2; warnings are one
    line too. click runs outside its standalone mode, so its errors reach us instead of its own printer."""
    import warnings

    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        code = app(standalone_mode=False)  # --help, --version and typer.Exit return their exit code
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except typer.TyperException as err:  # click's usage errors (exit code 2) and its few others
        if type(err).__name__ != "NoArgsIsHelpError":  # that one has printed the help already, as before
            print(usage_error_line(err), file=sys.stderr)
        sys.exit(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C outside a run (click turns it into Abort); a run says more
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
