"""`scenes`: images of random shapes over textured backgrounds, generated in memory from the seed (no download).

Each image comes with exact per-pixel labels: `semantic` (0 background, 1 circle, 2 square, 3 triangle), `depth`
(every shape is a flat card at its own distance in front of a tilted background plane; nearer shapes look larger
and hide what lies behind them), `edges` (the outlines of what is visible: a pixel whose neighbour shows another
surface), `normals` (the cards face the camera, the plane tilts up toward it) and one image-level label, `count`
(how many shapes are visible, 1 to 4). Edges and normals follow from the drawn scene and draw no random number, so
they left every image and earlier label as it was.
"""

from __future__ import annotations

import numpy as np
import torch

from hydranet.config import Config
from hydranet.data.dataset import RawData
from hydranet.randomness import Purpose, numpy_stream
from hydranet.registry import register

SCENES = 3000  # images in all splits together; `data.limit` makes fewer
SIDE = 32  # pixels a side unless `data.image_size` says otherwise
MAX_SHAPES = 4  # each image has 1..MAX_SHAPES shapes
SHAPES = ("circle", "square", "triangle")  # semantic classes 1, 2, 3 (0 is the background)
NEAR, FAR = 2.0, 7.0  # shapes' depths, in the scene's units; the background plane lies behind them, 8 to 12
REACH = 0.8  # a shape's apparent half-size is REACH · side / depth: 0.4 to 0.11 of the side
NOISE = 8.0  # std of the pixel noise (0..255 scale)
# Unit normals in camera axes (x right, y down, z away from the camera), read orthographically with the image one
# unit wide: a card faces the camera; the plane z = 12 − 4y (`generate`'s zbuffer) has the normal (0, −4, −1)/√17,
# up and toward the camera.
CARD_NORMAL = np.array([0.0, 0.0, -1.0], dtype=np.float32)
PLANE_NORMAL = np.array([0.0, -4.0, -1.0], dtype=np.float32) / np.sqrt(17.0, dtype=np.float32)


@register("source", "scenes")
def load_scenes(cfg: Config) -> RawData:
    """`data.limit` (default 3,000) images, uint8 (N, 3, S, S), with labels semantic, depth, edges, normals and count."""
    return RawData(**generate(cfg.data.limit or SCENES, cfg.data.image_size or SIDE, cfg.seed))


def generate(n: int, side: int, seed: int) -> dict:
    """The images and labels of `n` scenes; the same for the same (n, side, seed)."""
    rng = numpy_stream(seed, Purpose.SCENES)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side  # (S, S) in [0, 1)
    scene = {"image": background(rng, n, x, y),  # (N, S, S, 3) float
             "zbuffer": np.broadcast_to(8.0 + 4.0 * (1.0 - y), (n, side, side)).copy(),  # a plane, nearer at the bottom
             "semantic": np.zeros((n, side, side), dtype=np.int64), "instance": np.zeros((n, side, side), dtype=np.int64)}
    shapes = rng.integers(1, MAX_SHAPES + 1, size=n)
    for slot in range(MAX_SHAPES):
        kind = rng.integers(1, len(SHAPES) + 1, size=n)
        distance = rng.uniform(NEAR, FAR, size=n)
        centre = rng.uniform(0.0, 1.0, size=(n, 2))
        colour = rng.uniform(0, 255, size=(n, 3))
        inside = shape_masks(kind, centre, REACH / distance, x, y) & (slot < shapes)[:, None, None]
        scene = paint(scene, inside, distance, {"semantic": kind, "instance": np.full(n, slot + 1), "image": colour})
    image = scene["image"] + rng.normal(0, NOISE, size=scene["image"].shape)
    pixels = np.clip(np.round(image), 0, 255).astype(np.uint8).transpose(0, 3, 1, 2)  # (N, 3, S, S)
    count = np.array([len(np.unique(m)) - (0 in m) for m in scene["instance"]], dtype=np.int64)  # visible shapes
    return {"images": torch.from_numpy(np.ascontiguousarray(pixels)),
            "labels": dict(semantic=scene["semantic"], depth=scene["zbuffer"].astype(np.float32),
                           edges=outlines(scene["instance"]), normals=normals(scene["instance"]), count=count)}


def outlines(instance: np.ndarray) -> np.ndarray:
    """(N, S, S) float32, 1 where a pixel's left, right, upper or lower neighbour shows another surface (another
    shape or the background), else 0: both sides of every visible outline, so the map mirrors with the image."""
    edge = np.zeros(instance.shape, dtype=bool)
    across = instance[:, :, 1:] != instance[:, :, :-1]  # between horizontal neighbours
    down = instance[:, 1:, :] != instance[:, :-1, :]  # between vertical neighbours
    edge[:, :, 1:] |= across
    edge[:, :, :-1] |= across
    edge[:, 1:, :] |= down
    edge[:, :-1, :] |= down
    return edge.astype(np.float32)


def normals(instance: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) float32 unit normals: the card's where a shape shows, the background plane's elsewhere."""
    return np.where((instance > 0)[..., None], CARD_NORMAL, PLANE_NORMAL).astype(np.float32)


def paint(scene: dict[str, np.ndarray], inside: np.ndarray, distance: np.ndarray,
          values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The scene with one shape per image drawn through a z-buffer: it shows where it covers the pixel (`inside`,
    (N, S, S)) and is nearer than what is there, so occlusion follows depth whatever order shapes are drawn in.
    `values[layer]` (N[, C]) is what the shape writes into that layer (N, S, S[, C]); `zbuffer` (the depth) gets `distance`."""
    visible = inside & (distance[:, None, None] < scene["zbuffer"])
    out = dict(scene, zbuffer=np.where(visible, distance[:, None, None], scene["zbuffer"]))
    for layer, value in values.items():
        extra = scene[layer].ndim - 3  # trailing axes (the image's colour channels)
        out[layer] = np.where(visible.reshape(*visible.shape, *[1] * extra), value.reshape(-1, 1, 1, *value.shape[1:]), scene[layer])
    return out


def background(rng: np.random.Generator, n: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, S, S, 3): each image's stripes between two random colours, at a random angle, frequency and phase."""
    angle, frequency, phase = rng.uniform(0, np.pi, n), rng.uniform(2, 6, n), rng.uniform(0, 2 * np.pi, n)
    first, second = rng.uniform(0, 255, size=(n, 3)), rng.uniform(0, 255, size=(n, 3))
    along = np.cos(angle)[:, None, None] * x + np.sin(angle)[:, None, None] * y  # (N, S, S)
    mix = 0.5 + 0.5 * np.sin(2 * np.pi * frequency[:, None, None] * along + phase[:, None, None])
    return first[:, None, None, :] * mix[..., None] + second[:, None, None, :] * (1 - mix[..., None])


def shape_masks(kind: np.ndarray, centre: np.ndarray, half: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, S, S) bool: each image's shape of class `kind` around `centre` (x, y) with half-size `half`."""
    dx = (x[None] - centre[:, 0, None, None]) / half[:, None, None]  # in units of the half-size
    dy = (y[None] - centre[:, 1, None, None]) / half[:, None, None]
    circle = dx ** 2 + dy ** 2 <= 1.0
    square = (np.abs(dx) <= 0.85) & (np.abs(dy) <= 0.85)
    triangle = (dy <= 0.8) & (np.abs(dx) <= 0.6 * (dy + 1.0))  # apex at the top, base at dy = 0.8
    return np.select([kind[:, None, None] == 1, kind[:, None, None] == 2], [circle, square], triangle)
