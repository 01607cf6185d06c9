"""The compression methods `hydranet compress` and the `compress:` config section name, each registered with its own
options (`compress: {method: {name: prune, amount: 0.7}}`), and how one is chosen: the run's config, `--set
compress.…`, then `--method` and the command-line flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, Field, ValidationError

from hydranet import registry
from hydranet.compress.prune import PruneOptions
from hydranet.compress.qat import QATOptions, qat_run
from hydranet.compress.quantize import quantize_run
from hydranet.compress.profile import parameter_counts
from hydranet.compress.run import compress_run, record
from hydranet.config import Config, Options, apply_override, parse_override, validate
from hydranet.config.sections import CompressMethod, DistillConfig
from hydranet.errors import UserError
from hydranet.rundir import RunDir
from hydranet.train import Run, fit, load_run

WHERE = "compress.method"


@dataclass
class Compressed:
    """What a method made: a new run directory (prune, qat, distill) and/or an int8 export's report (int8-*, qat)."""

    run: Run | None = None
    quantization: dict[str, Any] | None = None


class StaticOptions(Options):
    """Options of `--method int8-static`."""

    calibration: int = Field(512, ge=1, description="train examples whose activation ranges calibrate the int8 graph")


@registry.register("compress", "prune", options=PruneOptions)
def prune(source: Path, options: PruneOptions, out: Path | None, progress: bool) -> Compressed:
    return Compressed(run=compress_run(source, options, out, progress))


@registry.register("compress", "int8-dynamic")
def int8_dynamic(source: Path, options: BaseModel, out: Path | None, progress: bool) -> Compressed:
    return Compressed(quantization=quantize_run(load_run(source), "dynamic", out))


@registry.register("compress", "int8-static", options=StaticOptions)
def int8_static(source: Path, options: StaticOptions, out: Path | None, progress: bool) -> Compressed:
    return Compressed(quantization=quantize_run(load_run(source), "static", out, options.calibration))


@registry.register("compress", "qat", options=QATOptions)
def qat(source: Path, options: QATOptions, out: Path | None, progress: bool) -> Compressed:
    run, report = qat_run(source, options, out, progress)
    return Compressed(run=run, quantization=report)


@registry.register("compress", "distill", options=DistillConfig)
def distill(source: Path, options: DistillConfig, out: Path | None, progress: bool) -> Compressed:
    """Train the source run's config again (the student: same data, model, recipe and seed) with `distill:` set to
    these options: the very path of `hydranet train --teacher`, so there is one implementation."""
    if not options.teacher:
        raise UserError(f"{WHERE}.teacher: distillation needs a teacher run (--teacher RUN)")
    settings = options.model_dump(mode="json")
    student = RunDir.open(source).read_config().model_dump(mode="json")
    cfg = validate({**student, "distill": settings, "compress": {"method": {"name": "distill", **settings}}}, stored=True)
    new = fit(cfg, out, progress=progress)
    record(new, source, "distill", options, parameter_counts(new.model))  # the student has the source's size
    return Compressed(run=new)


def choose(config: Config, method: str | None, overrides: Sequence[str], flags: dict[str, Any]) -> CompressMethod:
    """The method and its options: the run's `compress:` section, or `--method` with its own defaults when it names
    another method (the section's options, every one of them stored, were chosen for the method it names), changed
    by `--set compress.…`, then by the flags given (each error names its flag)."""
    data = {"compress": config.compress.model_dump(mode="json")}
    if method is not None and method != config.compress.method.name:
        if method not in registry.names("compress"):
            raise UserError(f"--method: {method} is not a compression method (expected {', '.join(registry.names('compress'))})")
        data["compress"]["method"] = {"name": method}
    for text in overrides:
        path, value = parse_override(text)
        if path[0] != "compress":
            raise UserError(f"--set {text}: compress takes compress.… keys only (the run's other settings made its weights)")
        apply_override(data, path, value)
    # the whole section checked as a config checks it: an unknown key or a bad value is one line naming it
    chosen = validate({**config.model_dump(mode="json"), **data}, stored=True).compress.method
    chosen.resolve(WHERE)
    return with_flags(chosen, flags)


def with_flags(chosen: CompressMethod, flags: dict[str, Any]) -> CompressMethod:
    """`chosen` with the command-line flags as its options; a flag the method has no option for, or a bad value, is
    one line naming the flag."""
    declared = type(chosen.options)
    for key in flags:
        if key not in declared.model_fields:
            raise UserError(f"--{key.replace('_', '-')}: the compression method {chosen.name} has no option {key!r} "
                            f"(its options: {', '.join(declared.model_fields) or 'none'})")
    try:
        options = declared.model_validate({**chosen.options.model_dump(), **flags})
    except ValidationError as err:
        first = err.errors()[0]
        raise UserError(f"--{first['loc'][0]}: {first['msg']}, got {first.get('input')!r}") from None
    return CompressMethod(name=chosen.name, **options.model_dump(mode="json"))


def compress(source: str | Path, chosen: CompressMethod, out: str | Path | None, progress: bool = False) -> Compressed:
    """Run the chosen method on the run at `source`. An efficient ensemble (`model.ensemble`) keeps its weights in
    layers of its own, which neither pruning nor int8 quantization knows: refused, rather than compressing nothing."""
    method = registry.get("compress", chosen.name, WHERE)
    members = RunDir.open(source).read_config().model.ensemble
    if members > 1 and chosen.name != "distill":
        raise UserError(f"{WHERE}: {chosen.name} prunes or quantizes plain conv and linear layers, and this run is an "
                        f"ensemble of {members} (model.ensemble) whose layers are neither; distill it into a plain "
                        f"student (hydranet train EXPERIMENT --teacher {source}) and compress that")
    return method(Path(source), chosen.options, None if out is None else Path(out), progress)
