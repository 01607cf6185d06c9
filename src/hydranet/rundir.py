"""A run directory, the unit users share: its file names and the code that creates, reads and writes it, so
training, pretraining, `hn.load`, evaluate, predict, attack, probe and `init_from` agree on one layout.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shlex
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

import torch
import yaml

import hydranet
from hydranet.config import Config, for_rows, to_yaml, validate
from hydranet.errors import UserError
from hydranet.files import make_dir, read_tensors, unwritable_as_user_error, write_json, write_text

MODEL_FILE = "model.safetensors"
TRUNK_FILE = "trunk.safetensors"
CLAIM = ".claiming"  # exclusively created while a new run writes its first files
RUN_ID_KEY = "hydranet.run"  # safetensors metadata: the id of the run that wrote the weights
# config.yaml opens and closes with these lines: every field has a default, so a config cut short at a line
# boundary would otherwise load with its tail silently defaulted. A config without the opening line (a run from
# before them, or one rewritten without comments) is read as it stands.
CONFIG_HEAD = "# hydranet run config; complete only with the `# end` line at the bottom\n"
CONFIG_END = "# end\n"


class RunFinished(UserError):
    """`--resume` of a run that finished: nothing is trained; `dir` and `summary` are what a caller shows instead."""

    def __init__(self, path: Path, summary: dict[str, Any]):
        super().__init__(f"{path}: this run finished already (run.json status finished); nothing was retrained")
        self.dir, self.summary = path, summary


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after run.json was marked interrupted; carries the command that continues it."""

    def __init__(self, path: Path, kind: str):
        super().__init__(f"continue with hydranet {kind} --resume {shlex.quote(str(path))}")
        self.path, self.kind = path, kind


class RunDir:
    """The named paths of one run directory, and its reads and writes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config = self.path / "config.yaml"  # the resolved config: what a resume continues and a reader rebuilds
        self.run_json = self.path / "run.json"  # provenance, kind (train | pretrain) and status (running | finished)
        self.data = self.path / "data.json"  # DataInfo.to_dict(): preprocessing fitted on train, what each task predicts
        self.metrics = self.path / "metrics.jsonl"  # one line per epoch
        self.model = self.path / MODEL_FILE  # the final weights of a training run
        self.trunk = self.path / TRUNK_FILE  # the final trunk of a pretraining run
        self.checkpoint_dir = self.path / "checkpoint"
        self.last = self.checkpoint_dir / "last.safetensors"  # the whole training state after the last epoch
        self.best = self.checkpoint_dir / "best.safetensors"  # early stopping's best weights
        self.best_robust = self.checkpoint_dir / "best_robust.safetensors"  # the robustness guard's best weights
        self.summary = self.path / "summary.json"
        self.calibration = self.path / "calibration.json"  # `hydranet calibrate`: a temperature per task, applied on load
        self.thresholds = self.path / "thresholds.json"  # `hydranet threshold`: fairness thresholds per task and group
        self.baselines = self.path / "baselines.json"  # `hydranet baseline`: boosted trees and linear models per task
        self.plots = self.path / "plots"
        self.profile = self.path / "profile.json"  # `hydranet profile`: parameters, FLOPs, memory, latency
        self.compress = self.path / "compress.json"  # `hydranet compress`: the source run, method, options, what changed
        self.init = self.path / "init.json"  # what `model.init_from` loaded
        self.tensorboard = self.path / "tensorboard"
        self.reference = self.path / "reference.json"  # monitoring: train statistics and val predictions (monitor/reference.py)
        self.reference_rows = self.path / "reference_rows.parquet"  # monitoring: the seeded sample (monitor.keep_rows)
        self.id: str | None = None  # the run's uuid (run.json "id"), stamped into its weights; None for older runs

    def eval_file(self, split: str) -> Path:
        return self.path / f"eval-{split}.json"

    def attack_file(self, attack: str, sweep: bool = False) -> Path:
        return self.path / f"attack-{attack}{'-sweep' if sweep else ''}.json"

    def probe_file(self, mode: str) -> Path:
        return self.path / f"probe-{mode}.json"

    # --- a new run --------------------------------------------------------------------------------

    @classmethod
    def plan(cls, cfg: Config, path: str | Path | None) -> RunDir:
        """The folder a new run will claim (default runs/<name>-<time>) and its new id, nothing written yet: a
        run is assembled (data, model, optimizer, `init_from`) before `claim` creates anything, so a refused
        command leaves no folder behind. A folder that cannot hold a new run is refused here already."""
        if path is None:
            stem = Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            path, n = stem, 1
            while path.exists():  # two runs started in the same second
                path, n = stem.with_name(f"{stem.name}-{n}"), n + 1
        run = cls(path)
        run.id = uuid.uuid4().hex
        run._check_free()
        return run

    def _check_free(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path}: exists and is not a folder")
        if self.config.exists():
            raise UserError(f"{self.path}: already holds a run (use --resume {self.path} to continue it, or another --run-dir)")
        if self.path.is_dir():
            self._refuse_held()

    def _refuse_held(self) -> None:
        """A new run needs a missing or empty folder, so nothing a user keeps in it is overwritten."""
        held = sorted(p.name for p in self.path.iterdir() if p.name != CLAIM)
        if held:
            shown = ", ".join(held[:3]) + (", …" if len(held) > 3 else "")
            raise UserError(f"{self.path}: is not empty ({shown}); a new run needs a missing or empty folder, "
                            f"so nothing in it is overwritten (or --resume a run)")

    def claim(self, cfg: Config, kind: str, data_sha256: str | None = None) -> None:
        """Create the planned folder with config.yaml and run.json (status running, the id, the data fingerprint).

        One that already holds a run, or anything else, is refused, so nothing saved is overwritten."""
        self._check_free()
        make_dir(self.path)
        with self._claimed():
            self.checkpoint_dir.mkdir()
            write_text(self.config, CONFIG_HEAD + to_yaml(cfg) + CONFIG_END)
            write_json(self.run_json, {"id": self.id, "kind": kind, **_provenance(), "data_sha256": data_sha256,
                                       "status": "running"})

    @classmethod
    def create(cls, cfg: Config, path: str | Path | None, kind: str, data_sha256: str | None = None) -> RunDir:
        """`plan` and `claim` at once (for callers with nothing to assemble in between)."""
        run = cls.plan(cfg, path)
        run.claim(cfg, kind, data_sha256)
        return run

    @contextmanager
    def _claimed(self) -> Iterator[None]:
        """Hold the folder by exclusively creating a claim file, and refuse one that holds anything else: a user's
        own files are never overwritten, and of two runs started in one folder at once, one is refused."""
        claim = self.path / CLAIM
        with unwritable_as_user_error(self.path, "a folder you can write"):
            try:
                os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                raise UserError(f"{self.path}: another run is being started in this folder; use another --run-dir") from None
        try:
            self._refuse_held()
            yield
        finally:
            claim.unlink(missing_ok=True)

    def write_status(self, status: str, reason: str | None = None) -> None:
        """run.json's status: running, interrupted (Ctrl-C), failed (with the `reason`; any other status drops it)
        or finished; the provenance stays as written."""
        meta = {k: v for k, v in self.read_run_json().items() if k != "reason"}
        write_json(self.run_json, {**meta, "status": status, **({"reason": reason} if reason is not None else {})})

    def stamp(self) -> dict[str, str]:
        """Metadata for the run's weights and checkpoints: its id, so weights copied from another run are refused."""
        return {RUN_ID_KEY: self.id} if self.id else {}

    def write_data_info(self, info: dict[str, Any]) -> None:
        write_json(self.data, info, indent=None)  # read by programs, and large for tables with many categories

    def write_init_report(self, report: dict[str, Any]) -> None:
        write_json(self.init, report)

    def write_calibration(self, report: dict[str, Any]) -> None:
        """calibration.json, replacing an earlier one: temperatures are always fitted on the uncalibrated outputs,
        so recalibrating loses nothing (it reproduces or updates the file)."""
        write_json(self.calibration, report)

    def write_thresholds(self, report: dict[str, Any]) -> None:
        """thresholds.json, replacing an earlier one: they are fitted on the model's val outputs alone, so refitting
        loses nothing."""
        write_json(self.thresholds, report)

    def finish(self, summary: dict[str, Any]) -> None:
        """summary.json, then run.json marked finished: the last two writes of a complete run."""
        write_json(self.summary, summary)
        self.write_status("finished")

    # --- reading a run ----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory with its id; a folder that is not a run is a clear error."""
        run = cls(path)
        if not run.path.is_dir():
            raise UserError(f"{run.path}: not a folder (expected a run directory)")
        if not run.config.exists():
            raise UserError(f"{run.path}: not a hydranet run directory (no config.yaml)")
        if run.run_json.exists():
            run.id = run.read_run_json().get("id")
        return run

    def read_config(self) -> Config:
        """The run's resolved config, validated as a new experiment would be (an older layout is upgraded)."""
        stored = read_file(self.config, "the run's config as a YAML mapping", _whole_config)
        try:
            return validate(stored, stored=True)
        except UserError as err:  # a field that no longer validates (edited, truncated): say which file holds it
            raise UserError(f"{self.config}: {err}") from None

    def read_run_json(self) -> dict[str, Any]:
        return read_file(self.run_json, "the run's provenance and status as a JSON object", _json_object)

    def require(self, *paths: Path) -> None:
        """Refuse a run whose training never wrote these files, saying how to finish it."""
        for needed in paths:
            if not needed.exists():
                raise UserError(f"{self.path}: run has no {needed.name} (did training finish? `hydranet train --resume {self.path}`)")

    def read_data_info(self, decode: Callable[[dict[str, Any]], Any] = dict) -> Any:
        """data.json, turned into a DataInfo by `decode` (DataInfo.from_dict) inside the same one-line error."""
        return read_file(self.data, "the data's preprocessing as a JSON object",
                         lambda text: decode(_json_object(text)))

    def read_summary(self, required: bool = False) -> dict[str, Any]:
        """summary.json; {} for a run that has not finished unless `required` (then missing is an error)."""
        if not required and not self.summary.exists():
            return {}
        return read_file(self.summary, "the run's results as a JSON object", _json_object)

    def read_temperatures(self, tasks: Collection[str]) -> dict[str, float]:
        """calibration.json's temperature per task, {} for a run never calibrated. `tasks` are the run's tasks whose
        outputs can be temperature-scaled; any other task name, or a temperature that is not a finite number > 0, is
        one line naming the file."""
        if not self.calibration.exists():
            return {}
        expected = "a temperature > 0 per task, as `hydranet calibrate RUN` writes it; rerun that to replace the file"
        return read_file(self.calibration, expected, lambda text: _temperatures(_json_object(text), tasks))

    def read_thresholds(self, decode: Callable[[dict[str, Any]], Any]) -> Any:
        """thresholds.json, turned into fairness thresholds by `decode` inside the same one-line error."""
        expected = "fairness thresholds per task and group, as `hydranet threshold RUN` writes them; rerun that"
        return read_file(self.thresholds, expected, lambda text: decode(_json_object(text)))

    def read_reference(self) -> dict[str, Any] | None:
        """reference.json, monitoring's stored statistics; None for a run from before runs stored one."""
        if not self.reference.exists():
            return None
        return read_file(self.reference, "monitoring's reference statistics as a JSON object", _json_object)

    def read_weights(self, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """A weights or checkpoint file of this run (checksum verified by read_tensors); one stamped with another
        run's id was copied in from elsewhere and is refused (files without an id, from older runs, load)."""
        tensors, metadata = read_tensors(path)
        owner = metadata.get(RUN_ID_KEY)
        if self.id and owner and owner != self.id:
            raise UserError(f"{path}: belongs to another run (run id {owner}, this run's is {self.id}); weights copied "
                            "between run directories are refused (start from them with model.init_from instead)")
        return tensors, metadata

    def identity(self) -> str:
        """What tells this run from any other wherever its folder is moved, for files made from it elsewhere (an
        export): its id, or for a run from before ids a hash of its config and the time it was created."""
        if self.id:
            return self.id
        created = self.read_run_json().get("created", "") if self.run_json.exists() else ""
        return hashlib.sha256(self.config.read_bytes() + created.encode()).hexdigest()[:16]

    def weights(self) -> Path | None:
        """The weights another run starts from (`model.init_from`): the pretrained trunk, else the whole model."""
        return next((p for p in (self.trunk, self.model) if p.exists()), None)


def sized(cfg: Config, rows: int, pretrained: str | Path | None) -> Config:
    """`for_rows` for a new run on `rows` examples whose trunk may load weights from the run directory `pretrained`
    (`model.init_from`, a probe's run): a table default takes that run's trunk and encoder, so that they fit."""
    if not cfg.grows_with_rows:
        return cfg
    run = RunDir(pretrained) if pretrained is not None else None
    return for_rows(cfg, rows, run.read_config() if run is not None and run.config.is_file() else None)


def read_file(path: Path, expected: str, parse: Callable[[str], Any]) -> Any:
    """Read and `parse` one file of a run directory. Whatever is wrong with it (missing, a folder, empty, not
    UTF-8, truncated, not the right syntax or structure) becomes one line naming the file and what was expected,
    so every reader of a run gets the same clear error instead of a traceback."""
    def refuse(problem: str) -> UserError:
        return UserError(f"{path}: {problem} (expected {expected})")

    if path.is_dir():
        raise refuse("is a folder")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise refuse("missing") from None
    except OSError as err:
        raise refuse(f"unreadable: {err.strerror}") from None
    if not raw.strip():
        raise refuse("is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise refuse(f"is not UTF-8 text (byte {err.start})") from None
    try:
        return parse(text)
    except UserError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())[:160]
        raise refuse(f"is corrupt or truncated ({type(err).__name__}: {detail})") from None


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    return value


def _temperatures(report: dict[str, Any], tasks: Collection[str]) -> dict[str, float]:
    entries = report["tasks"]
    if not isinstance(entries, dict):
        raise ValueError(f"'tasks' is a JSON {type(entries).__name__}, not an object")
    temperatures = {}
    for name, entry in entries.items():
        if name not in tasks:
            raise ValueError(f"task {name!r} is not a task of this run with logits to scale ({', '.join(tasks) or 'none'})")
        value = entry.get("temperature") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"tasks.{name}.temperature is {value!r}, not a finite number > 0")
        temperatures[name] = float(value)
    return temperatures


def _whole_config(text: str) -> dict[str, Any]:
    """config.yaml's mapping; one that opens with CONFIG_HEAD must close with CONFIG_END."""
    if text.startswith(CONFIG_HEAD) and not text.rstrip().endswith(CONFIG_END.strip()):
        raise ValueError(f"cut short: no closing {CONFIG_END.strip()!r} line")
    return _yaml_mapping(text)


def _yaml_mapping(text: str) -> dict[str, Any]:
    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise ValueError(f"a YAML {type(value).__name__}, not a mapping")
    return value


def check_fits(model: torch.nn.Module | dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse a state dict that does not fit `model` (a module, or the tensors it expects) exactly, naming the file
    and the first key that differs (torch's own error lists every key over many lines)."""
    expected = model if isinstance(model, dict) else model.state_dict()
    for key, value in expected.items():
        if key not in tensors:
            raise UserError(f"{path}: does not fit the model the run's config builds: {key} is missing")
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise UserError(f"{path}: does not fit the model the run's config builds: {key} has shape "
                            f"{list(tensors[key].shape)}, the model {list(value.shape)}")
    extra = next((key for key in tensors if key not in expected), None)
    if extra is not None:
        raise UserError(f"{path}: does not fit the model the run's config builds: {extra} is not in the model")


def _provenance() -> dict[str, Any]:
    """hydranet version, git commit, torch, machine: so a result can be traced and repeated."""
    return {"hydranet": hydranet.__version__, "git_commit": _git_commit(), "torch": torch.__version__,
            "python": platform.python_version(), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cpus": torch.get_num_threads(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
