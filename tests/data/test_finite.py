"""±inf and numbers beyond float32 are refused where data enters, naming the file, column and row; NaN and empty
cells stay missing values."""

import numpy as np
import pandas as pd
import pytest
import yaml

from hydranet import registry
from hydranet.data.finite import first_out_of_range
from hydranet.errors import UserError

from tests.conftest import tiny_table_config

TASKS = {"label": {"kind": "binary"}, "size": {"kind": "regression"}}
# a table as a user writes it: row 1 is the first line below the header
CSV = "age,city,label,size\n30,Paris,yes,1.5\n41,Rome,no,2.0\n25,Oslo,yes,3.0\n52,Rome,no,\n"


def load(cfg):
    return registry.get("source", cfg.data.source)(cfg)


def csv_with(tmp_path, row: int, column: str, cell: str):
    """CSV with one cell replaced (row counted from 1 below the header)."""
    lines = CSV.splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = cell
    lines[row] = ",".join(cells)
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("column, cell", [("age", "inf"), ("age", "-inf"), ("age", "1e39"), ("size", "inf"),
                                          ("size", "-1e39"), ("label", "inf")])
def test_csv_refuses_inf_and_float32_overflow_in_features_and_targets(make_cfg, tmp_path, column, cell):
    path = csv_with(tmp_path, 3, column, cell)
    shown = f"{float(cell):g}"
    if column == "label":  # a numeric label column: 0/1 with one inf
        path.write_text(CSV.replace("yes", "1").replace("no", "0").replace("Oslo,1", f"Oslo,{cell}"))
    with pytest.raises(UserError) as err:
        load(make_cfg("csv", path, TASKS))
    assert str(err.value) == (f"{path}: column {column!r} row 3 (counting from 1 below the header): {shown} is not a "
                              f"number hydranet can learn from (NaN/empty means missing)")


def test_csv_nan_empty_and_text_inf_stay_what_they_were(make_cfg, tmp_path):
    """NaN and empty cells are missing values; in a text column "inf" is a category, not a number."""
    path = tmp_path / "t.csv"
    path.write_text(CSV.replace("30,Paris", "NaN,inf").replace("41,Rome,no,2.0", ",Rome,no,nan"))
    raw = load(make_cfg("csv", path, TASKS))
    assert raw.frame["age"].isna().tolist() == [True, True, False, False]
    assert raw.frame["city"][0] == "inf" and np.isnan(raw.labels["size"][1])


def test_parquet_refuses_inf(make_cfg, tmp_path):
    frame = pd.DataFrame({"age": [30.0, np.inf, 25.0], "label": ["yes", "no", "yes"], "size": [1.5, 2.0, 3.0]})
    frame.to_parquet(tmp_path / "t.parquet")
    with pytest.raises(UserError, match=r"t\.parquet: column 'age' row 2 \(counting from 1 below the header\): inf "):
        load(make_cfg("parquet", tmp_path / "t.parquet", TASKS))


def test_only_the_columns_hydranet_reads_are_checked(make_cfg, tmp_path):
    path = csv_with(tmp_path, 2, "age", "inf")
    raw = load(make_cfg("csv", path, TASKS, features=["city"]))
    assert list(raw.frame.columns) == ["city"]


def test_npz_names_the_array_and_its_index(make_cfg, tmp_path):
    x = np.zeros((4, 3))
    x[2, 1] = np.inf
    np.savez(tmp_path / "t.npz", x=x, label=np.array([0, 1, 0, 1]))
    with pytest.raises(UserError, match=r"t\.npz: x\[2, 1\]: inf is not a number"):
        load(make_cfg("npz", tmp_path / "t.npz"))
    np.savez(tmp_path / "l.npz", x=np.zeros((4, 3)), label=np.array([0.0, 1.0, -np.inf, 1.0]))
    with pytest.raises(UserError, match=r"l\.npz: label\[2\]: -inf is not a number"):
        load(make_cfg("npz", tmp_path / "l.npz"))
    images = np.zeros((2, 1, 3, 3), dtype=np.float32)
    images[1, 0, 2, 0] = -np.inf
    np.savez(tmp_path / "i.npz", x=images, label=np.array([0, 1]))
    with pytest.raises(UserError, match=r"i\.npz: x\[1, 0, 2, 0\]: -inf"):
        load(make_cfg("npz", tmp_path / "i.npz"))


@pytest.mark.parametrize("values, found", [
    (np.array([1.0, np.nan, 2.0]), None),
    (np.array([1.0, 3.5e38, 2.0]), ((1,), 3.5e38)),  # finite in float64, inf once encoded as float32
    (np.array([1.0, 3e38], dtype=np.float32), None),
    (np.array(["a", "inf", None], dtype=object), None),  # text: categories
    (np.array([1.0, None, 1e40], dtype=object), ((2,), 1e40)),  # numbers as objects (a source's own labels)
    (np.array(["1.5", "inf"]), None),  # NumPy strings: text
    (np.array([1, 2]), None),
])
def test_first_out_of_range(values, found):
    assert first_out_of_range(values) == found


def test_cli_train_and_predict_refuse_inf_in_one_line(cli, tiny_csv, tmp_path):
    """Training stops before a run directory exists; predicting names the prediction table's cell."""
    table = pd.read_csv(tiny_csv)
    table.loc[16, "x2"] = np.inf  # row 17 below the header
    table.to_csv(tmp_path / "bad.csv", index=False)
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(tiny_table_config(tmp_path / "bad.csv", epochs=1, threads=1)))
    code, _, err = cli("train", exp, "--run-dir", "bad", "-q")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "bad.csv: column 'x2' row 17 (counting from 1 below the header): inf is not a number" in err
    assert not (tmp_path / "bad").exists()

    exp.write_text(yaml.safe_dump(tiny_table_config(tiny_csv, epochs=1, threads=1)))
    assert cli("train", exp, "--run-dir", "run", "-q")[0] == 0
    new = table.drop(columns=["kind", "size"]).head(20)
    new.to_csv(tmp_path / "new.csv", index=False)
    code, _, err = cli("predict", "run", tmp_path / "new.csv", "--output", tmp_path / "pred.csv")
    assert code == 2 and "new.csv: column 'x2' row 17 (counting from 1 below the header): inf is not" in err, err
    assert not (tmp_path / "pred.csv").exists()
