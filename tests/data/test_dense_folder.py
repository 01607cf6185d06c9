"""The dense image_folder layout: images plus parallel folders of label maps, checked file by file."""

import numpy as np
import pytest
import torch
from PIL import Image

from hydranet.config import load_config
from hydranet.data import build_dataset
from hydranet.data.sources.dense_folder import load_dense_folder
from hydranet.errors import UserError
from tests.data.datafiles import dense_folder, pixels, write_png

TASKS = ["tasks={semantic: {kind: segmentation, column: label}, depth: {kind: depth}, normals: {kind: normals}}",
         "data.label_scale={depth: 1000}"]


def config(root, *sets):
    return load_config("scenes-mtl", ["data.source=image_folder", f"data.path={root}", "data.split.stratify=null",
                                      *TASKS, *sets])


def test_maps_become_targets_beside_their_images_and_a_missing_map_is_masked(tmp_path):
    root = dense_folder(tmp_path / "set")
    data = build_dataset(config(root))
    assert data.x.shape == (8, 3, 6, 8) and len(data.index["test"]) == 4  # the predefined test split
    order = torch.cat([data.index[s] for s in ("train", "val")]).sort().values
    assert torch.equal(order, torch.arange(4))  # train's 4 images, some of them carved into val
    semantic, depth, normals = data.targets["semantic"], data.targets["depth"], data.targets["normals"]
    assert semantic[1, :, :4].eq(1).all() and semantic[1, :, 4:].eq(0).all() and semantic.dtype == torch.int64
    torch.testing.assert_close(depth[5], torch.full((6, 8), 1.5))  # 1,500 mm at data.label_scale 1000
    assert torch.equal(normals[2], torch.tensor([0, 0, -1.0]).expand(6, 8, 3))
    for missing in (3, 7):  # the last image of each split has no maps: every pixel unlabeled
        assert semantic[missing].eq(-1).all() and depth[missing].isnan().all() and normals[missing].isnan().all()
    first = np.asarray(Image.open(root / "train" / "images" / "0.png"))
    assert torch.equal(data.x[0], torch.from_numpy(first.copy()).permute(2, 0, 1))


def break_size(root):
    write_png(root / "train" / "label" / "1.png", np.zeros((5, 8), dtype=np.uint8))
    return "train/label/1.png: label map is 8×5 (width×height) but its image is 8×6"


def break_partner(root):
    write_png(root / "test" / "depth" / "9.png", np.zeros((6, 8), dtype=np.uint16))
    return "test/depth/9.png: no image 9.* in"


def break_channels(root):
    np.save(root / "train" / "normals" / "2.npy", np.zeros((6, 8)))
    return f"train/normals/2.npy: label map has 1 channel(s) but {root}/train/normals/0.npy has 3"


def break_dtype(root):
    np.save(root / "train" / "normals" / "1.npy", np.full((6, 8, 3), "x"))
    return "train/normals/1.npy: a label map holds numbers, found dtype <U1"


def break_mode(root):
    Image.fromarray(pixels(0, (6, 8))).convert("RGBA").save(root / "train" / "label" / "0.png")
    return "train/label/0.png: a label PNG has one channel (classes, depths, edges) or three (normals as RGB), found mode RGBA"


def break_file(root):
    (root / "train" / "depth" / "0.png").write_bytes(b"not a png")
    return "train/depth/0.png: not a readable PNG"


def break_split(root):
    (root / "val" / "label").mkdir(parents=True)
    return "val: a split folder of the dense layout needs an images/ folder"


@pytest.mark.parametrize("damage", [break_size, break_partner, break_channels, break_dtype, break_mode, break_file,
                                    break_split])
def test_a_bad_map_is_one_line_naming_the_file(tmp_path, damage):
    root = dense_folder(tmp_path / "set")
    expected = damage(root)
    with pytest.raises(UserError) as caught:
        load_dense_folder(root, config(root))
    assert expected in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("sets, expected", [
    (["data.image_size=4"], "data.image_size: the dense image_folder layout .* keeps the images' own size"),
    (["data.label_scale={dpeth: 1000}"], "data.label_scale: .* has no label folder 'dpeth' .*label folders: depth, label, normals"),
])
def test_settings_the_layout_cannot_honour_are_refused(tmp_path, sets, expected):
    root = dense_folder(tmp_path / "set")
    with pytest.raises(UserError, match=expected):
        load_dense_folder(root, config(root, *sets))


def test_the_cli_trains_on_the_layout_and_reports_a_bad_map_in_one_line(tmp_path, cli):
    root = dense_folder(tmp_path / "set")
    sets = [f"data.path={root}", "data.source=image_folder", "data.split.stratify=null", *TASKS, "train.epochs=1",
            "train.batch_size=2", "train.progress=false", "model.trunk.channels=[4]", "model.trunk.decoder=4",
            "monitor.reference_rows=2"]
    code, _, err = cli("train", "scenes-mtl", "--run-dir", tmp_path / "run", "-q", *[a for s in sets for a in ("--set", s)])
    assert code == 0, err
    break_size(root)
    code, _, err = cli("train", "scenes-mtl", "--run-dir", tmp_path / "run2", "-q", *[a for s in sets for a in ("--set", s)])
    assert code == 2 and err.count("\n") == 1 and "label/1.png: label map is 8×5" in err and not (tmp_path / "run2").exists()


def test_a_scale_that_is_not_positive_is_refused_by_the_config():
    with pytest.raises(UserError, match="data.label_scale: the scale of 'depth' must be a number > 0, got 0.0"):
        load_config("scenes-mtl", ["data.label_scale={depth: 0}"])
