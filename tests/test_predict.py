"""`predict` on inputs a user gets wrong: each is one line naming the file (or `input`), column and row, exit
code 2, and the previous output file is left as it was."""

import numpy as np
import pandas as pd
import pytest

import hydranet as hn
from tests.conftest import tiny_table_config

KEPT = "the previous predictions\n"


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=60)
    pd.DataFrame({"x1": x1, "x2": rng.normal(size=60), "color": rng.choice(["red", "blue"], 60),
                  "kind": np.where(x1 > 0, "up", "down"), "size": x1 * 2}).to_csv(folder / "t.csv", index=False)
    return hn.Experiment(tiny_table_config(folder / "t.csv", epochs=1, threads=1)).fit(folder / "run").dir


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("image")
    return hn.Experiment("quickstart", {"train.epochs": 1, "data.limit": 200, "train.threads": 1}).fit(folder / "run").dir


def _table_files(folder):
    good = "x1,x2,color\n0.5,1.0,red\n"
    files = {
        "header-only.csv": "x1,x2,color\n",
        "empty.csv": "",
        "ragged.csv": "x1,x2,color\n1,2,red\n3,4,blue,extra\n",
        "text.csv": "x1,x2,color\n1,2,red\n1,abc,red\n",
        "inf.csv": "x1,x2,color\n1,2,red\n1,2,red\n-inf,2,red\n",
        "missing.csv": "x2\n1\n",
        "spaces.csv": " x1,x1,x2,color\n1,1,2,red\n",
        "table.txt": good,
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "garbage.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    (folder / "garbage.parquet").write_bytes(b"PAR1 not really")
    (folder / "folder.csv").mkdir()
    (folder / "folder.csv" / "x.csv").write_text(good)
    return good


TABLE_CASES = [
    ("header-only.csv", "the table has no rows"),
    ("empty.csv", "not a readable CSV table (EmptyDataError"),
    ("ragged.csv", "not a readable CSV table (ParserError: Error tokenizing data. C error: Expected 3 fields in line 3, saw 4)"),
    ("garbage.csv", "not a readable CSV table (UnicodeDecodeError"),
    ("garbage.parquet", "not a readable Parquet table"),
    ("text.csv", "column 'x2' row 2 (counting from 1 below the header): 'abc' is not a number (the column was numeric"),
    ("inf.csv", "column 'x1' row 3 (counting from 1 below the header): -inf is not a number hydranet can learn from"),
    ("missing.csv", "no column 'x1', 'color', which the model was trained with (expected the columns x1, x2, color)"),
    ("spaces.csv", "columns ' x1' and 'x1' are one name, 'x1', once stripped of spaces"),
    ("table.txt", "this run was trained on a table (expected one .csv, .csv.gz or .parquet file)"),
    ("folder.csv", "is a folder; this run was trained on a table"),
]


@pytest.mark.parametrize("name, message", TABLE_CASES)
def test_bad_table_for_predict_is_one_line_and_keeps_the_output(cli, table_run, tmp_path, name, message):
    _table_files(tmp_path)
    (tmp_path / "out.csv").write_text(KEPT)
    code, _, err = cli("predict", table_run, tmp_path / name, "-o", tmp_path / "out.csv")
    assert code == 2 and err.startswith(f"error: {tmp_path / name}: ") and message in err, err
    assert err.count("\n") == 1 and (tmp_path / "out.csv").read_text() == KEPT


def test_table_inputs_ignore_extra_columns_and_name_the_positive_class(cli, table_run, tmp_path):
    (tmp_path / "rows.csv").write_text("id,color,x2,x1,kind\n7,red,1.0,0.5,up\n8, blue ,?,-1,\n")
    code, _, err = cli("predict", table_run, tmp_path / "rows.csv", "-o", tmp_path / "out.csv")
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "out.csv")
    assert list(pred.columns) == ["input", "kind_p(up)", "size"] and pred["kind_p(up)"].between(0, 1).all()


@pytest.mark.parametrize("output, message", [
    ("kept.csv/out.csv", "kept.csv is a file, not a folder"),
    ("a-folder", "Is a directory"),
    ("/proc/hydranet-test.csv", "cannot write here"),
])
def test_unwritable_output_is_one_line_and_keeps_what_was_there(cli, table_run, tmp_path, output, message):
    good = _table_files(tmp_path)
    (tmp_path / "rows.csv").write_text(good)
    (tmp_path / "kept.csv").write_text(KEPT)
    (tmp_path / "a-folder").mkdir()
    code, _, err = cli("predict", table_run, tmp_path / "rows.csv", "-o", output)
    assert code == 2 and err.startswith(f"error: {output}: cannot write here") and message in err, err
    assert (tmp_path / "kept.csv").read_text() == KEPT and not list((tmp_path / "a-folder").iterdir())


def test_image_run_refuses_tables_and_table_run_refuses_images(cli, table_run, image_run, tmp_path):
    good = _table_files(tmp_path)
    (tmp_path / "rows.csv").write_text(good)
    code, _, err = cli("predict", image_run, tmp_path / "rows.csv")
    assert code == 2 and err == f"error: {tmp_path / 'rows.csv'}: this run was trained on images; give image files or a folder of images\n"
    (tmp_path / "a.png").write_bytes(b"")
    code, _, err = cli("predict", table_run, tmp_path / "a.png")
    assert code == 2 and err.startswith(f"error: {tmp_path / 'a.png'}: this run was trained on a table")


PIXELS = np.arange(2 * 64, dtype=np.uint8).reshape(2, 1, 8, 8)


@pytest.mark.parametrize("images, message", [
    (PIXELS.astype(np.float32), "input: images are torch.float32; this run was trained on uint8 pixels 0..255 (N, 1, 8, 8)"),
    (PIXELS[:, 0], "input: images of shape (2, 8, 8); this model expects (N, 1, 8, 8)"),
    (np.repeat(PIXELS, 3, axis=1), "input: images of shape (2, 3, 8, 8); this model expects (N, 1, 8, 8)"),
    (PIXELS.astype(np.int64) * 3, "input: integer images range 0..381; this run was trained on pixels 0..255"),
    (PIXELS[:0], "input: no images"),
    ([[1, 2]], "input: images of shape (1, 2)"),
    (pd.DataFrame({"x": [1]}), "input: this run was trained on images; pass an (N, C, H, W) array"),
])
def test_python_api_checks_image_shape_and_dtype(image_run, images, message):
    with pytest.raises(hn.UserError) as err:
        hn.load(image_run).predict(images)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_python_api_takes_integer_pixels_as_uint8_and_checks_tables(image_run, table_run):
    model = hn.load(image_run)
    pd.testing.assert_frame_equal(model.predict(PIXELS.astype(np.int64)), model.predict(PIXELS))
    table = hn.load(table_run)
    with pytest.raises(hn.UserError, match=r"^input: column 'x2' row 1 \(counting from 1 below the header\): inf is not a number"):
        table.predict(pd.DataFrame({"x1": [1.0], "x2": [np.inf], "color": ["red"]}))
    with pytest.raises(hn.UserError, match=r"^input: the table has no rows$"):
        table.predict(pd.DataFrame(columns=["x1", "x2", "color"]))
    with pytest.raises(hn.UserError, match=r"^input: this run was trained on a table; pass a pandas DataFrame"):
        table.predict(PIXELS)
    assert list(table.predict(pd.DataFrame({"x1": [" 1"], "x2": ["?"], "color": ["red"]})).columns) == ["kind_p(up)", "size"]


def test_a_float_image_run_takes_finite_float_arrays_only(tmp_path):
    """An npz run on float images (scale 1): image files and uint8 arrays would be read 255 times too bright."""
    from hydranet.data.info import IMAGE, DataInfo
    from hydranet.predict import array_inputs, image_file_inputs

    info = DataInfo(IMAGE, (1, 8, 8), scale=1.0, mean=[0.5], std=[0.25], channels=1, size=(8, 8))
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(hn.UserError, match=r"^INPUT: this run was trained on float arrays, not 0\.\.255 pixels"):
        image_file_inputs(info, [tmp_path / "a.png"])
    with pytest.raises(hn.UserError, match=r"^input: images are torch\.uint8; this run was trained on float images"):
        array_inputs(info, PIXELS)
    with pytest.raises(hn.UserError, match=r"^input: images hold NaN or inf"):
        array_inputs(info, np.full((1, 1, 8, 8), np.nan, dtype=np.float32))
    assert array_inputs(info, np.full((1, 1, 8, 8), 0.75, dtype=np.float32)).eq(1.0).all()  # (0.75 - 0.5) / 0.25
