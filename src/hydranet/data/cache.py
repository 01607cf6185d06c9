"""The cache of decoded image sets: one safetensors file per (source content, options that change the result).

A second run on the same archive or folder loads the uint8 tensor instead of decoding every file again.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from safetensors import SafetensorError

from hydranet.config import Config
from hydranet.data.dataset import RawData
from hydranet.files import read_tensors, write_tensors

# Bump when decoding changes (resampling, channel rules, ordering) so old entries are not reused.
FORMAT_VERSION = 1
_CHUNK = 1 << 20


def cache_dir(cfg: Config | None = None) -> Path:
    """`data.cache_dir`, else $HYDRANET_CACHE, else ~/.cache/hydranet."""
    if cfg is not None and cfg.data.cache_dir:
        return Path(cfg.data.cache_dir).expanduser()
    env = os.environ.get("HYDRANET_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hydranet"


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, read in chunks (archives may not fit comfortably in memory twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def files_digest(items: Iterable[tuple[str, bytes]]) -> str:
    """sha256 of (relative path, bytes) pairs: a folder's content, independent of where it lives and of mtimes."""
    digest = hashlib.sha256()
    for name, data in sorted(items, key=lambda item: item[0]):
        encoded = name.encode()
        # Lengths make the framing unambiguous, so moving bytes between names changes the digest.
        digest.update(len(encoded).to_bytes(8, "little") + encoded + len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def cache_key(source: str, content: str, **options: Any) -> str:
    """Key of one decoded set: source name, content digest, the options that change the result, version."""
    spec = {"source": source, "content": content, "options": options, "version": FORMAT_VERSION}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def cache_path(directory: str | Path, source: str, key: str) -> Path:
    return Path(directory) / f"{source}-{key[:32]}.safetensors"


def save(path: str | Path, data: RawData) -> None:
    """Write an image RawData to a temporary file, then rename: a crash never leaves a half-written entry."""
    meta = {
        "labels": json.dumps({name: _encode_column(values) for name, values in data.labels.items()}),
        "split": json.dumps(None if data.split is None else _encode_column(data.split)),
        "version": str(FORMAT_VERSION),
    }
    write_tensors(path, {"images": data.images}, metadata=meta)  # readable by all: others may reuse the entry


def load(path: str | Path) -> RawData | None:
    """The RawData stored at `path`, or None when there is no usable entry (missing, older format, damaged)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        tensors, meta = read_tensors(path)  # checked against the SHA-256 written with it: a bit flip is a miss
        if meta.get("version") != str(FORMAT_VERSION):
            return None
        images = tensors["images"]
        labels = {name: _decode_column(column) for name, column in json.loads(meta["labels"]).items()}
        split = json.loads(meta["split"])
    except Exception:  # a damaged entry is only a cache miss: decode again and overwrite it
        return None
    return RawData(labels=labels, images=images, split=None if split is None else _decode_column(split))


def cached(cfg: Config, source: str, content: str, build: Callable[[], RawData], **options: Any) -> RawData:
    """Load the entry for (source, content digest, options) or build it and store it."""
    path = cache_path(cache_dir(cfg), source, cache_key(source, content, **options))
    data = load(path)
    if data is None:
        data = build()
        try:
            save(path, data)
        except (OSError, SafetensorError) as err:  # a read-only or full cache folder costs time, not the run
            warnings.warn(f"{path}: could not write the decoded-image cache ({err})", stacklevel=2)
    return data


def _encode_column(values: np.ndarray) -> dict[str, Any]:
    return {"dtype": values.dtype.str if values.dtype != object else "object", "values": values.tolist()}


def _decode_column(column: dict[str, Any]) -> np.ndarray:
    dtype = object if column["dtype"] == "object" else np.dtype(column["dtype"])
    return np.array(column["values"], dtype=dtype)
