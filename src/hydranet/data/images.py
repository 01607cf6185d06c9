"""Image decoding shared by the image sources and by prediction on new image files.

Files become uint8 tensors (C, H, W) or stacks (N, C, H, W); batched resizing of already decoded sets.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from hydranet.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
# PIL modes without colour: a set made only of these is loaded with one channel.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def is_image_name(name: str) -> bool:
    """An image file worth reading: a known suffix and no hidden component (macOS `._x.jpg`, `.DS_Store`)."""
    parts = name.replace("\\", "/").split("/")
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not any(p.startswith(".") for p in parts)


def _open(data: bytes, name: str, size: int | None, mode: str | None) -> Image.Image:
    """Decode one image, converted to `mode` ('L', 'RGB'; None: 'L' if grey else 'RGB') and resized."""
    try:
        image = Image.open(io.BytesIO(data))
        if mode is None:
            mode = "L" if image.mode in GREY_MODES else "RGB"
        if size is not None:
            # JPEG can decode at 1/2, 1/4, 1/8 scale directly, far cheaper than decoding then shrinking.
            image.draft(mode, (size, size))
        image = image.convert(mode) if image.mode != mode else image
        if size is not None and image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        image.load()
    except UserError:
        raise
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError …) for broken files
        raise UserError(f"{name}: not a readable image ({type(err).__name__}: {err})") from None
    return image


def decode_image(data: bytes | str | Path, size: int | None = None, channels: int = 3) -> torch.Tensor:
    """One image file (bytes or path) → uint8 (C, H, W) with C = `channels` (1 or 3)."""
    name = "<bytes>"
    if not isinstance(data, bytes):
        name, data = str(data), read_image_file(Path(data))
    array = np.asarray(_open(data, name, size, _mode(channels)))
    return torch.from_numpy(array.reshape(array.shape[0], array.shape[1], -1).copy()).permute(2, 0, 1).contiguous()


def decode_many(items: Sequence[tuple[str, bytes]], size: int | None = None, channels: int | None = None) -> torch.Tensor:
    """Named encoded images → uint8 (N, C, H, W).

    `channels` None picks 1 when every image is grey and 3 otherwise. Without `size`, every image must
    have the size of the first; the error names the first file that does not.
    """
    if not items:
        return torch.empty((0, channels or 3, size or 0, size or 0), dtype=torch.uint8)
    mode = None if channels is None else _mode(channels)
    buffer: np.ndarray | None = None
    all_grey = True
    for i, (name, data) in enumerate(items):
        image = _open(data, name, size, mode)
        if buffer is None:
            width, height = image.size
            # (N, H, W, 3): PIL's own layout, so each image is one memcpy; grey ones are broadcast.
            buffer = np.empty((len(items), height, width, 3), dtype=np.uint8)
            first = name
        elif image.size != (width, height):
            raise UserError(
                f"{name}: image is {image.size[0]}×{image.size[1]} (width×height) but {first} is {width}×{height} "
                "(set data.image_size to resize every image to one square side)"
            )
        array = np.asarray(image)
        if array.ndim == 2:
            buffer[i] = array[:, :, None]
        else:
            buffer[i] = array
            all_grey = False
    keep = 1 if (channels == 1 or (channels is None and all_grey)) else 3
    return torch.from_numpy(buffer[..., :keep]).permute(0, 3, 1, 2).contiguous()


def image_files(folder: str | Path) -> list[Path]:
    """Every image file under a folder (recursively), sorted so the order never depends on the file system."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(str(p.relative_to(root))))


def load_image_files(paths: str | Path | Iterable[str | Path], size: int | None = None, channels: int | None = None) -> torch.Tensor:
    """A list of image files, or a folder of them, → uint8 (N, C, H, W) (channels None: 1 if all grey)."""
    if isinstance(paths, (str, Path)):
        path = Path(paths)
        paths = image_files(path) if path.is_dir() else [path]
        if not paths:
            raise UserError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    items = [(str(p), read_image_file(Path(p))) for p in paths]
    return decode_many(items, size, channels)


def resize_images(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Batched bilinear (antialiased) resize of (N, C, H, W) to size×size, keeping the dtype; no-op if already so."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    out = []
    for chunk in images.split(4096):  # bounded float32 temporaries for large sets
        resized = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(resized.round().clamp(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else resized.to(images.dtype))
    return torch.cat(out)


def _mode(channels: int) -> str:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return "L" if channels == 1 else "RGB"


def read_image_file(path: Path) -> bytes:
    """The bytes of one image file; a missing file or a folder is one line naming it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found (expected an image file)") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected an image file") from None
