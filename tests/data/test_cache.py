"""The decoded-image cache: hits skip decoding, content or option changes miss, writes are atomic.

A hit is proven by making the decoder raise: the second load must not call it.
"""

import numpy as np
import pytest
import torch
from tests.data.datafiles import fake_cifar, make_tar, pixels, write_png

from hydranet import registry
from hydranet.data import cache
from hydranet.data.dataset import RawData
from hydranet.data.sources import cifar10, image_folder


def load(cfg):
    return registry.get("source", cfg.data.source)(cfg)


@pytest.fixture
def no_decoding(monkeypatch):
    """After this fixture, any attempt to decode images fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("decoded although the cache should have hit")

    monkeypatch.setattr(image_folder, "decode_many", refuse)
    monkeypatch.setattr(cifar10, "_build", refuse)


def entries(cfg):
    return sorted(cache.cache_dir(cfg).glob("*"))


@pytest.mark.parametrize("packed", [False, True])
def test_second_load_does_not_decode(make_cfg, split_folder, tmp_path, packed, request):
    path = make_tar(split_folder, tmp_path / "s.tar.gz") if packed else split_folder
    cfg = make_cfg("image_folder", path)
    first = load(cfg)
    assert [p.suffix for p in entries(cfg)] == [".safetensors"]  # one entry, no temporary left over
    request.getfixturevalue("no_decoding")
    second = load(cfg)
    assert torch.equal(first.images, second.images) and second.images.dtype == torch.uint8
    assert second.labels["label"].tolist() == first.labels["label"].tolist()
    assert second.split.tolist() == first.split.tolist()


def test_changed_content_or_size_misses(make_cfg, class_folder, monkeypatch):
    cfg = make_cfg("image_folder", class_folder)
    load(cfg)
    calls = []
    real = image_folder.decode_many
    monkeypatch.setattr(image_folder, "decode_many", lambda *a, **k: calls.append(1) or real(*a, **k))
    write_png(class_folder / "cat" / "0.png", pixels(99))  # same name, new bytes
    assert torch.equal(load(cfg).images[0], torch.from_numpy(pixels(99)).permute(2, 0, 1))
    assert load(make_cfg("image_folder", class_folder, image_size=2)).images.shape[-1] == 2
    assert len(calls) == 2 and len(entries(cfg)) == 3


def test_a_copy_elsewhere_hits_the_same_entry(make_cfg, class_folder, tmp_path, request):
    load(make_cfg("image_folder", class_folder))
    copy = tmp_path / "copy"
    for p in class_folder.rglob("*.png"):
        target = copy / p.relative_to(class_folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(p.read_bytes())
    request.getfixturevalue("no_decoding")
    assert len(load(make_cfg("image_folder", copy))) == 5  # keyed by content, not by path or mtime


def test_cifar10_cache_hit(make_cfg, tmp_path, request):
    fake_cifar(tmp_path / "c")
    cfg = make_cfg("cifar10", tmp_path / "c")
    first = load(cfg)
    request.getfixturevalue("no_decoding")
    second = load(cfg)
    assert torch.equal(first.images, second.images) and second.split.tolist() == first.split.tolist()


def test_labels_keep_their_types(tmp_path):
    raw = RawData(
        labels={"name": np.array(["a", None, "b"], dtype=object), "n": np.array([1, 2, 3]), "f": np.array([0.5, np.nan, 1.0])},
        images=torch.arange(3 * 4, dtype=torch.uint8).view(3, 1, 2, 2),
    )
    cache.save(tmp_path / "e.safetensors", raw)
    back = cache.load(tmp_path / "e.safetensors")
    assert back.labels["name"].tolist() == ["a", None, "b"] and back.split is None
    assert back.labels["n"].dtype == raw.labels["n"].dtype and np.isnan(back.labels["f"][1])
    assert torch.equal(back.images, raw.images)


def test_damaged_entry_is_a_miss(make_cfg, class_folder):
    cfg = make_cfg("image_folder", class_folder)
    expected = load(cfg).images
    (entry,) = entries(cfg)
    entry.write_bytes(entry.read_bytes()[:50])
    assert cache.load(entry) is None
    assert torch.equal(load(cfg).images, expected)  # decoded again and rewritten
    assert cache.load(entry) is not None


def test_an_entry_with_a_flipped_pixel_is_a_miss(make_cfg, class_folder):
    """A bit flipped on disk would feed wrong pixels to every later run: the entry's SHA-256 catches it."""
    cfg = make_cfg("image_folder", class_folder)
    expected = load(cfg).images
    (entry,) = entries(cfg)
    data = bytearray(entry.read_bytes())
    data[-1] ^= 0x01  # the last byte is a pixel of the last image: the file still parses
    entry.write_bytes(bytes(data))
    assert cache.load(entry) is None
    assert torch.equal(load(cfg).images, expected) and cache.load(entry) is not None


def test_cache_dir_resolution(make_cfg, monkeypatch, tmp_path):
    assert cache.cache_dir(make_cfg("digits")) == tmp_path / "cache"
    monkeypatch.setenv("HYDRANET_CACHE", str(tmp_path / "env"))
    assert cache.cache_dir(make_cfg("digits", cache_dir=None)) == tmp_path / "env"
    monkeypatch.delenv("HYDRANET_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir(make_cfg("digits", cache_dir=None)) == tmp_path / "home" / ".cache" / "hydranet"
