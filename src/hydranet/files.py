"""Atomic files: everything a command writes (JSON, text, CSV, plots, weights) goes through here, so a crash
(even SIGKILL) leaves the old file or the new one, never half of one: temporary file beside it, fsync, rename.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from hydranet.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path for writers that want a file name (matplotlib, pandas, plotly, safetensors).

    It sits in the target's folder (a rename across file systems would not be atomic) and keeps the target's
    suffix (matplotlib picks the format by it). When the block ends the file is synced and renamed onto
    `path`; when the block raises, it is removed and `path` is left as it was.
    """
    path = Path(path)
    with unwritable_as_user_error(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
        os.close(fd)
    tmp = Path(name)
    try:
        with full_disk_as_user_error(path):
            yield tmp
        with unwritable_as_user_error(path):
            _sync(tmp)
            os.chmod(tmp, 0o644)  # mkstemp makes the file private; a run directory is meant to be shared
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def unwritable_as_user_error(path: Path, what: str = "a writable file path") -> Iterator[None]:
    """An OSError while creating `path` (read-only or missing permission, a file where a folder must be, a
    folder where the file must be, a full disk) is the user's to fix: one line naming the path."""
    try:
        yield
    except OSError as err:
        file = next((p for p in Path(path).parents if p.is_file()), None)
        reason = f"{file} is a file, not a folder" if file is not None else err.strerror or str(err)
        raise UserError(f"{path}: cannot write here ({reason}); expected {what}") from None


@contextlib.contextmanager
def full_disk_as_user_error(path: Path) -> Iterator[None]:
    """A writer that runs out of space (or quota) half-way is the user's to fix too; other errors of the writer
    keep their traceback. Only the temporary file is lost: `path` still holds what it held."""
    try:
        yield
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise UserError(f"{path}: cannot write here ({err.strerror}); free some space and run the command again "
                        f"(the file was left as it was)") from None


def make_dir(path: str | Path) -> Path:
    """Create a folder (and its parents) for a command's output; an unwritable place is one line naming it."""
    path = Path(path)
    with unwritable_as_user_error(path, "a folder that can be created and written"):
        path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside `path` to fill with this module's writers (an export: several files that only
    make sense together). When the block ends it becomes `path`; a folder already there (the caller decides
    whether it may be replaced) is moved aside first and deleted after, so a reader sees the old set or the new
    one. When the block raises, the temporary folder is removed and `path` is left as it was."""
    path, what = Path(path), "a folder that can be created and written"
    with unwritable_as_user_error(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        with unwritable_as_user_error(path, what):
            os.chmod(tmp, 0o755)  # mkdtemp makes the folder private; like a run directory, it is meant to be shared
            if path.exists():
                old = tmp.with_suffix(".old")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old)
            else:
                os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sync(path: Path) -> None:
    """Flush the file's bytes to the disk, so the rename never points at data still in the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: str | Path, text: str) -> None:
    """Text as UTF-8 (bench.md and configs hold ±, Δ and other non-ASCII characters)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def append_line(path: str | Path, line: str) -> None:
    """One line added to the end of a log file with a single O_APPEND write (the only writer of the file is the
    caller): a crash loses at most this line, or leaves it cut short, which readers of the log skip. Not synced:
    the logs appended to (the serving workers' traffic) are temporary and rewritten whole by `write_text`."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def write_json(path: str | Path, value: Any, indent: int | None = 2) -> None:
    """JSON, indented for people to read unless `indent` is None (large machine-read files)."""
    write_text(path, json.dumps(value, indent=indent))


def write_csv(path: str | Path, frame: Any) -> None:
    """A pandas DataFrame as CSV, without its index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_parquet(path: str | Path, frame: Any) -> None:
    """A pandas DataFrame as Parquet, without its index (typed columns, no pickle)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_npy(path: str | Path, array: Any) -> None:
    """A numpy array as .npy (saved through a file object: np.save given a path would add its own suffix)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def write_figure(path: str | Path, figure: Any, dpi: int = 100) -> None:
    """A matplotlib figure as an image; the format follows the suffix (.png, .svg, .pdf)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi)


def figure_png(figure: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes in memory, for a page that embeds it (the report) instead of a file beside it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def write_html(path: str | Path, figure: Any, **options: Any) -> None:
    """A plotly figure as an HTML page (`options` go to its `write_html`, e.g. include_plotlyjs)."""
    with atomic_path(path) as tmp:
        figure.write_html(tmp, **options)


DIGEST_KEY = "hydranet.sha256"  # safetensors metadata: the SHA-256 of the file's own tensors (tensor_digest)


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' sorted names, dtypes, shapes and bytes: equal exactly when the contents are.

    It hashes values, not file bytes, so it can travel inside the file it describes (see write_tensors) and
    also fingerprints data held in memory."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """A flat dict of tensors as safetensors (copied to the CPU, contiguous), with optional string metadata.

    The tensors' SHA-256 goes into the same file's metadata, so digest and data are written (and renamed into
    place) together: no crash between two writes can make a sound file look corrupt."""
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata={**(metadata or {}), DIGEST_KEY: tensor_digest(cpu)})


def read_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata (without the digest) of a safetensors file, checked against the SHA-256 written
    with them; a missing, corrupt or modified file is a UserError naming it. Files without a digest (written
    before hydranet kept one, or by other programs) load unchecked."""
    if Path(path).is_dir():
        raise UserError(f"{path}: is a folder (expected a safetensors file)")
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise UserError(f"{path}: not a readable safetensors file ({err})") from None
    expected = metadata.pop(DIGEST_KEY, None)
    if expected is not None and expected != tensor_digest(tensors):
        raise UserError(f"{path}: contents do not match their SHA-256 (the file is corrupt or was modified)")
    return tensors, metadata
