"""Every built-in source on small files made in tmp_path: values, layouts, splits and error messages.

Sources only read: labels stay raw values, so these tests compare against the files they wrote.
"""

import pickle
import tarfile
import time

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits

from hydranet import registry
from hydranet.data.images import decode_image, load_image_files, resize_images
from hydranet.errors import UserError

from tests.data.datafiles import CIFAR_NAMES, SHARED_DATA, fake_cifar, make_tar, pixels, write_png


def load(cfg):
    return registry.get("source", cfg.data.source)(cfg)


def test_every_source_is_registered():
    assert {"digits", "breast_cancer", "csv", "parquet", "image_folder", "cifar10", "npz"} <= set(registry.names("source"))


# --- bundled ------------------------------------------------------------------------------------


def test_digits_images_and_three_label_kinds(make_cfg):
    raw = load(make_cfg("digits"))
    assert raw.images.shape == (1797, 1, 8, 8) and raw.images.dtype == torch.uint8
    counts = load_digits().images
    assert raw.images[0, 0, 0, 2] == round(counts[0, 0, 2] * 255 / 16)  # 5 of 16 → 80
    assert int(raw.images.max()) == 255 and raw.split is None
    assert raw.labels["digit"][:3].tolist() == [0, 1, 2]
    assert raw.labels["ink"][1] == pytest.approx(raw.images[1].float().mean().item() / 255)
    assert raw.labels["parity"][:3].tolist() == ["even", "odd", "even"]


def test_digits_image_size_resizes(make_cfg):
    assert load(make_cfg("digits", image_size=16)).images.shape == (1797, 1, 16, 16)


def test_breast_cancer_table(make_cfg):
    raw = load(make_cfg("breast_cancer"))
    assert raw.frame.shape == (569, 30) and "mean radius" in raw.frame.columns
    assert set(raw.labels["diagnosis"]) == {"malignant", "benign"}


# --- tables -------------------------------------------------------------------------------------

CSV = "age,city,income,split\n30,Paris,high,train\n?,Rome, ?,train\n41, Oslo,,val\n 25,,low,test\n,Rome,high,train\n"
TASKS = {"income": {"kind": "binary"}}


def test_csv_missing_markers_and_split(make_cfg, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    raw = load(make_cfg("csv", path, TASKS))
    assert list(raw.frame.columns) == ["age", "city"]  # task and split columns are not features
    assert raw.frame["age"].dtype.kind == "f"  # ' 25' and '?' no longer make it text
    assert raw.frame["age"].isna().tolist() == [False, True, False, False, True]
    assert raw.frame["city"].tolist()[:3] == ["Paris", "Rome", "Oslo"] and pd.isna(raw.frame["city"][3])
    assert pd.isna(raw.labels["income"][1]) and pd.isna(raw.labels["income"][2])  # ' ?' and empty
    assert raw.labels["income"][0] == "high"
    assert raw.split.tolist() == ["train", "train", "val", "test", "train"]


def test_csv_gz_and_parquet_read_the_same(make_cfg, tmp_path):
    frame = pd.read_csv(pd.io.common.StringIO(CSV))
    frame.to_csv(tmp_path / "t.csv.gz", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    a = load(make_cfg("csv", tmp_path / "t.csv.gz", TASKS))
    b = load(make_cfg("parquet", tmp_path / "t.parquet", TASKS))
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert a.split.tolist() == b.split.tolist()


def test_csv_explicit_features(make_cfg, tmp_path):
    (tmp_path / "t.csv").write_text(CSV)
    raw = load(make_cfg("csv", tmp_path / "t.csv", TASKS, features=["city"]))
    assert list(raw.frame.columns) == ["city"]


def test_csv_missing_column_lists_the_columns(make_cfg, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    with pytest.raises(UserError) as err:
        load(make_cfg("csv", path, {"salary": {}}))
    assert str(err.value) == f"{path}: no column 'salary' (columns: age, city, income, split)"
    with pytest.raises(UserError, match="no column 'height'"):
        load(make_cfg("csv", path, TASKS, features=["height"]))


def test_csv_bad_split_value(make_cfg, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,label,split\n1,x,train\n2,y,holdout\n")
    with pytest.raises(UserError, match=r"t\.csv: column 'split' has value 'holdout'.*train, val, test"):
        load(make_cfg("csv", path))


def test_csv_missing_file_and_path(make_cfg, tmp_path):
    with pytest.raises(UserError, match=r"nope\.csv: file not found.*CSV"):
        load(make_cfg("csv", tmp_path / "nope.csv"))
    with pytest.raises(UserError, match="data.path: required for source csv"):
        load(make_cfg("csv"))


@pytest.mark.parametrize("source, name, content, message", [
    ("csv", "t.csv", b" age,age,label\n1,2,x\n", "columns ' age' and 'age' are one name, 'age', once stripped of spaces"),
    ("csv", "t.csv", b"age,label,age\n1,x,2\n", "two columns are named 'age' (expected distinct column names)"),
    ("csv", "t.csv", b"label,split\nx,train\n", "no feature columns left once the task columns and `split` are set aside"),
    ("csv", "t.csv", b"age,label\n", "the table has no rows (columns: age, label)"),
    ("csv", "t.csv", b"", "not a readable CSV table (EmptyDataError"),
    ("csv", "t.csv.gz", b"\x1f\x8b\x08\x00garbage", "not a readable CSV table"),
    ("csv", "t.parquet", b"PAR1", "a .parquet file given to source csv (expected a CSV file; set data.source: parquet)"),
    ("parquet", "t.csv", b"age,label\n1,x\n", "a .csv file given to source parquet (expected a Parquet file; set data.source: csv)"),
    ("parquet", "t.parquet", b"PAR1 cut", "not a readable Parquet table"),
])
def test_unusable_table_is_one_line_naming_the_file(make_cfg, tmp_path, source, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        load(make_cfg(source, path, {"label": {}}))
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)


def test_a_file_where_a_folder_or_archive_is_expected_and_the_reverse(make_cfg, tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"a pickle, not an archive")
    (tmp_path / "arrays.npz").mkdir()
    with pytest.raises(UserError, match=r"data_batch_1: a file but not a \.tar/\.tar\.gz/\.tgz archive \(expected a cifar-10"):
        load(make_cfg("cifar10", tmp_path / "data_batch_1"))
    with pytest.raises(UserError, match=r"arrays\.npz: is a folder \(data\.path of source npz"):
        load(make_cfg("npz", tmp_path / "arrays.npz"))


# --- image folders ------------------------------------------------------------------------------


def test_image_folder_class_layout(make_cfg, class_folder):
    raw = load(make_cfg("image_folder", class_folder))
    assert raw.images.shape == (5, 3, 4, 5) and raw.images.dtype == torch.uint8
    assert raw.labels["label"].tolist() == ["cat", "cat", "dog", "dog", "dog"] and raw.split is None
    assert torch.equal(raw.images[2], torch.from_numpy(pixels(10)).permute(2, 0, 1))  # dog/0.png


def test_image_folder_from_archive_with_wrapper_and_splits(make_cfg, split_folder, tmp_path):
    archive = make_tar(split_folder, tmp_path / "split.tar.gz", wrapper="dataset")
    from_tar = load(make_cfg("image_folder", archive))
    from_dir = load(make_cfg("image_folder", split_folder))
    assert from_tar.images.shape == (10, 1, 6, 6)  # all grey → one channel
    assert torch.equal(from_tar.images, from_dir.images)
    assert from_tar.labels["label"].tolist() == from_dir.labels["label"].tolist()
    assert from_tar.split.tolist() == ["test"] * 4 + ["train"] * 6  # sorted by path
    assert from_tar.labels["label"].tolist()[4:] == ["a"] * 3 + ["b"] * 3


def test_image_folder_mixed_grey_and_colour_is_rgb(make_cfg, tmp_path):
    write_png(tmp_path / "d" / "g" / "0.png", pixels(1, grey=True))
    write_png(tmp_path / "d" / "c" / "0.png", pixels(2))
    raw = load(make_cfg("image_folder", tmp_path / "d"))
    assert raw.images.shape == (2, 3, 4, 5)
    grey = raw.images[1]  # g/0.png comes after c/0.png
    assert torch.equal(grey[0], grey[2]) and torch.equal(grey[0], torch.from_numpy(pixels(1, grey=True)))


def test_image_folder_sizes_must_match_unless_resized(make_cfg, class_folder):
    write_png(class_folder / "dog" / "9.png", pixels(3, (7, 7)))
    with pytest.raises(UserError, match=r"dog/9\.png: image is 7×7 .*cat/0\.png is 5×4.*image_size"):
        load(make_cfg("image_folder", class_folder))
    assert load(make_cfg("image_folder", class_folder, image_size=3)).images.shape == (6, 3, 3, 3)


def test_image_folder_corrupt_image_names_the_member(make_cfg, class_folder, tmp_path):
    (class_folder / "cat" / "1.png").write_bytes(b"\x89PNG not really")
    archive = make_tar(class_folder, tmp_path / "pets.tar.gz")
    with pytest.raises(UserError, match=r"pets\.tar\.gz:cat/1\.png: not a readable image"):
        load(make_cfg("image_folder", archive))
    with pytest.raises(UserError, match=r"pets/cat/1\.png: not a readable image"):
        load(make_cfg("image_folder", class_folder))


def test_image_folder_ignores_other_files_and_rejects_loose_images(make_cfg, class_folder):
    (class_folder / "README.txt").write_text("not an image")
    (class_folder / "cat" / "._0.png").write_bytes(b"macOS resource fork")
    assert len(load(make_cfg("image_folder", class_folder)).images) == 5
    write_png(class_folder / "loose.png", pixels(0))
    with pytest.raises(UserError, match=r"loose\.png: does not fit the layout"):
        load(make_cfg("image_folder", class_folder))


def test_image_folder_missing_path(make_cfg, tmp_path):
    with pytest.raises(UserError, match="not found"):
        load(make_cfg("image_folder", tmp_path / "none"))


# --- image files (shared with prediction) -------------------------------------------------------


def test_decode_image_from_bytes_and_path(tmp_path):
    write_png(tmp_path / "c.png", pixels(4))
    from_path = decode_image(tmp_path / "c.png", channels=3)
    assert torch.equal(from_path, torch.from_numpy(pixels(4)).permute(2, 0, 1))
    grey = decode_image((tmp_path / "c.png").read_bytes(), size=2, channels=1)
    assert grey.shape == (1, 2, 2) and grey.dtype == torch.uint8
    with pytest.raises(UserError, match=r"<bytes>: not a readable image"):
        decode_image(b"GIF89a broken", channels=3)


def test_load_image_files_from_a_list_or_a_folder(tmp_path, class_folder):
    listed = load_image_files([class_folder / "dog" / "1.png", class_folder / "cat" / "0.png"], size=3, channels=1)
    assert listed.shape == (2, 1, 3, 3)
    folder = load_image_files(class_folder)  # sorted: cat/0, cat/1, dog/0 …
    assert folder.shape == (5, 3, 4, 5) and torch.equal(folder[0], torch.from_numpy(pixels(0)).permute(2, 0, 1))
    with pytest.raises(UserError, match=r"missing\.png: file not found"):
        load_image_files([tmp_path / "missing.png"])


def test_resize_images_keeps_dtype_and_constant_images():
    x = torch.full((2, 3, 8, 6), 77, dtype=torch.uint8)
    y = resize_images(x, 4)
    assert y.shape == (2, 3, 4, 4) and y.dtype == torch.uint8 and bool((y == 77).all())
    assert resize_images(x, None) is x


# --- cifar10 ------------------------------------------------------------------------------------

def test_cifar10_from_folder_and_archive(make_cfg, tmp_path):
    batches = fake_cifar(tmp_path / "c" / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "c" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    for path in (tmp_path / "c", archive):
        raw = load(make_cfg("cifar10", path))
        assert raw.images.shape == (18, 3, 32, 32) and raw.images.dtype == torch.uint8
        data, labels = batches["data_batch_2"]
        # row layout: 1024 red, then 1024 green, then 1024 blue values, each 32×32 row-major
        assert torch.equal(raw.images[3, 1], torch.from_numpy(data[0, 1024:2048].reshape(32, 32)))
        assert raw.labels["label"][3:6].tolist() == [CIFAR_NAMES[k] for k in labels]
        assert raw.split.tolist() == ["train"] * 15 + ["test"] * 3


def test_cifar10_refuses_pickles_that_run_code(make_cfg, tmp_path):
    fake_cifar(tmp_path / "c")
    (tmp_path / "c" / "test_batch").write_bytes(pickle.dumps({b"data": time.sleep, b"labels": []}))
    with pytest.raises(UserError, match="test_batch: not a CIFAR-10 pickle.*refusing"):
        load(make_cfg("cifar10", tmp_path / "c"))


def test_cifar10_missing_batches(make_cfg, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no batches.meta, test_batch, data_batch_1"):
        load(make_cfg("cifar10", tmp_path / "empty"))


# --- npz ----------------------------------------------------------------------------------------


def test_npz_images_labels_and_split(make_cfg, tmp_path):
    x = np.arange(4 * 3 * 2, dtype=np.uint8).reshape(4, 3, 2)
    np.savez(tmp_path / "a.npz", x=x, label=np.array(["a", "b", "a", "b"]), size=np.arange(4.0),
             split=np.array(["train", "train", "val", "test"]))
    raw = load(make_cfg("npz", tmp_path / "a.npz"))
    assert raw.images.shape == (4, 1, 3, 2) and torch.equal(raw.images[:, 0], torch.from_numpy(x))
    assert raw.labels["label"].tolist() == ["a", "b", "a", "b"] and raw.labels["size"].tolist() == [0, 1, 2, 3]
    assert raw.split.tolist() == ["train", "train", "val", "test"] and "split" not in raw.labels


def test_npz_table_and_float_images(make_cfg, tmp_path):
    np.savez(tmp_path / "t.npz", x=np.ones((3, 2)), y=np.arange(3))
    raw = load(make_cfg("npz", tmp_path / "t.npz"))
    assert list(raw.frame.columns) == ["f0", "f1"] and raw.images is None
    np.savez(tmp_path / "f.npz", x=np.full((2, 1, 2, 2), 0.5), y=np.arange(2))
    assert load(make_cfg("npz", tmp_path / "f.npz")).images.dtype == torch.float32


def test_npz_errors(make_cfg, tmp_path):
    np.savez(tmp_path / "n.npz", features=np.ones((3, 2)))
    with pytest.raises(UserError, match=r"n\.npz: no array 'x' \(arrays: features\)"):
        load(make_cfg("npz", tmp_path / "n.npz"))
    np.savez(tmp_path / "m.npz", x=np.ones((3, 2)), y=np.arange(4))
    with pytest.raises(UserError, match=r"array 'y' has shape \(4,\)"):
        load(make_cfg("npz", tmp_path / "m.npz"))


# --- the shared data sets (slow) ----------------------------------------------------------------


@pytest.mark.slow
def test_cifar10_jpg_archive_decodes_fast_and_caches(make_cfg):
    cfg = make_cfg("image_folder", SHARED_DATA / "cifar10-jpg.tar.gz")
    start = time.perf_counter()
    raw = load(cfg)
    decode_s = time.perf_counter() - start
    assert raw.images.shape == (60000, 3, 32, 32)
    assert {s: int((raw.split == s).sum()) for s in ("train", "test")} == {"train": 50000, "test": 10000}
    assert sorted(set(raw.labels["label"])) == CIFAR_NAMES
    start = time.perf_counter()
    again = load(cfg)
    hit_s = time.perf_counter() - start
    assert torch.equal(again.images, raw.images)
    assert decode_s < 60 and hit_s < 5, (decode_s, hit_s)


@pytest.mark.slow
def test_adult_csv(make_cfg):
    raw = load(make_cfg("csv", SHARED_DATA / "adult" / "adult.csv.gz", {"income": {"kind": "binary"}}))
    assert len(raw) == 48842 and "split" not in raw.frame.columns
    assert set(raw.labels["income"]) == {"<=50K", ">50K"}
    assert raw.frame["workclass"].isna().sum() > 0  # '?' became missing
    assert int((raw.split == "train").sum()) == 32561
