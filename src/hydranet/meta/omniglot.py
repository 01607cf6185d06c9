"""Omniglot (Lake et al. 2015) from its zip files: the two small background sets as class pools (Greek and Latin,
in both zips as identical files, counted once) and Lake's 20 one-shot runs as the evaluation classes.
"""

from __future__ import annotations

import io
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from hydranet.errors import UserError
from hydranet.meta.episodes import ClassPool, Episodes

BACKGROUND = ("images_background_small1.zip", "images_background_small2.zip")
RUNS = "all_runs.zip"
RUN_COUNT, RUN_WAYS = 20, 20


def _archive(folder: Path, name: str) -> zipfile.ZipFile:
    path = folder / name
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise UserError(f"{path}: cannot be read as a zip archive ({err}); meta.path must name the Omniglot folder "
                        f"holding {', '.join((*BACKGROUND, RUNS))}") from None


def _decode(archive: zipfile.ZipFile, member: str, size: int) -> Tensor:
    try:
        data = archive.read(member)
    except (OSError, zipfile.BadZipFile) as err:
        raise UserError(f"{archive.filename}: {member}: not a readable image ({err})") from None
    return decode_drawing(data, f"{archive.filename}: {member}", size)


def decode_drawing(data: bytes, where: str, size: int) -> Tensor:
    """One drawing as (1, size, size) ink in [0, 1] (strokes 1, paper 0), box-filtered (area mean) from 105×105;
    `meta adapt` reads a user's drawings with it too, so they become what the run was trained on."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            small = image.convert("L").resize((size, size), Image.Resampling.BOX)
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{where}: not a readable image ({err})") from None
    return 1.0 - torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0)[None]


def background(folder: str | Path, size: int) -> dict[str, dict[str, Tensor]]:
    """alphabet → character → (20, 1, size, size) drawings of both small background sets; a character in both
    zips (Greek, Latin) is read once."""
    members: dict[str, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    archives = {name: _archive(Path(folder), name) for name in BACKGROUND}
    for name, archive in archives.items():
        for member in archive.namelist():
            parts = member.split("/")
            if len(parts) == 4 and parts[3].endswith(".png"):
                members[parts[1]][parts[2]].setdefault(parts[3], f"{name}\0{member}")
    out: dict[str, dict[str, Tensor]] = {}
    for alphabet, characters in sorted(members.items()):
        out[alphabet] = {}
        for character, files in sorted(characters.items()):
            drawings = [_decode(archives[ref.split("\0")[0]], ref.split("\0")[1], size) for _, ref in sorted(files.items())]
            out[alphabet][character] = torch.stack(drawings)
    return out


def pools(folder: str | Path, size: int, val_alphabets: list[str]) -> tuple[ClassPool, ClassPool]:
    """(meta-train, meta-val) pools: every character of the background sets, the `val_alphabets` held out."""
    alphabets = background(folder, size)
    unknown = [a for a in val_alphabets if a not in alphabets]
    if unknown:
        raise UserError(f"meta.val_alphabets: {unknown[0]!r} is not a background alphabet (known: {', '.join(alphabets)})")
    split: dict[bool, list[tuple[str, Tensor]]] = {True: [], False: []}
    for alphabet, characters in alphabets.items():
        for character, drawings in characters.items():
            split[alphabet in val_alphabets].append((f"{alphabet}/{character}", drawings))
    if not split[False] or not split[True]:
        raise UserError(f"meta.val_alphabets: must hold out at least one background alphabet and leave at least one "
                        f"to meta-train on, got {val_alphabets}")
    train, val = (ClassPool(torch.stack([d for _, d in split[held]]), [n for n, _ in split[held]]) for held in (False, True))
    return train, val


def evaluation_pool(folder: str | Path, size: int) -> ClassPool:
    """Lake's 20 runs as 400 classes of two drawings each: [0] the run's training image, [1] its test image; run r
    is classes 20r … 20r+19 (the runs' characters come from the evaluation alphabets, none in the background)."""
    archive = _archive(Path(folder), RUNS)
    images, names = [], []
    for run in range(1, RUN_COUNT + 1):
        labels = f"run{run:02d}/class_labels.txt"
        try:
            lines = archive.read(labels).decode().split()
        except (KeyError, UnicodeDecodeError) as err:
            raise UserError(f"{archive.filename}: {labels}: missing or unreadable ({err})") from None
        test_of = dict(zip(lines[1::2], lines[0::2]))  # training image → the test image of the same character
        for k in range(1, RUN_WAYS + 1):
            train = f"run{run:02d}/training/class{k:02d}.png"
            if train not in test_of:
                raise UserError(f"{archive.filename}: {labels}: names no test image of {train}")
            images.append(torch.stack([_decode(archive, train, size), _decode(archive, test_of[train], size)]))
            names.append(train)
    return ClassPool(torch.stack(images), names)


def official_runs(pool: ClassPool) -> Episodes:
    """Lake's 20 one-shot runs as 20 episodes of 20-way 1-shot, one query per class."""
    x = pool.images.view(RUN_COUNT, RUN_WAYS, 2, *pool.images.shape[2:])
    labels = torch.arange(RUN_WAYS).expand(RUN_COUNT, RUN_WAYS)
    classes = torch.arange(RUN_COUNT * RUN_WAYS).view(RUN_COUNT, RUN_WAYS)
    return Episodes(x[:, :, 0], labels, x[:, :, 1], labels, classes)
