"""The sequence source from a long table: rows grouped by id, ordered by time, padded and masked; labels once per
id; every mistake (missing id or time column, text among the features, a label that varies within an id, two rows
at one time) refused with one line."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from hydranet.config import load_config
from hydranet.data import build_dataset
from hydranet.data.build import load_raw
from hydranet.errors import UserError


def long_rows(ids: int = 12) -> pd.DataFrame:
    """Sequence i has 2 + i % 4 steps; feature `level` is 10·i + step, `slope` is -step; rows shuffled."""
    rows = [{"series": f"s{i}", "step": step, "level": 10.0 * i + step, "slope": -step,
             "kind": "odd" if i % 2 else "even", "size": 2.0 + i % 4}
            for i in range(ids) for step in range(2 + i % 4)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


ID_AND_TIME = {"id": "series", "time": "step"}


def long_config(path, sequence: dict = ID_AND_TIME) -> dict:
    return {"name": "long", "data": {"source": "sequence", "path": str(path), "sequence": sequence},
            "tasks": {"kind": {}, "size": {"kind": "regression"}}, "model": {"trunk": {"name": "gru", "width": 8}},
            "train": {"epochs": 1, "progress": False, "threads": 1}}


def raw_of(frame: pd.DataFrame, tmp_path, sequence: dict = ID_AND_TIME):
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    return load_raw(load_config(long_config(path, sequence)))


def test_rows_become_one_time_ordered_sequence_per_id(tmp_path):
    frame = long_rows()
    raw = raw_of(frame, tmp_path)
    order = list(dict.fromkeys(frame["series"]))  # ids in order of first appearance
    assert raw.series.shape == (12, 5, 3)  # the longest id has 5 steps; features level, slope + validity
    for n, name in enumerate(order):
        i = int(name[1:])
        steps = 2 + i % 4
        expected = torch.tensor([[10.0 * i + s, -s, 1.0] for s in range(steps)])
        assert torch.equal(raw.series[n, :steps], expected)
        assert (raw.series[n, steps:] == 0).all()
        assert raw.labels["kind"][n] == ("odd" if i % 2 else "even") and raw.labels["size"][n] == 2 + i % 4


def test_dates_order_the_steps_and_split_and_labels_are_read_once_per_id(tmp_path):
    frame = long_rows()
    frame.loc[frame["step"] == 0, "kind"] = None  # a label given on some rows of an id only (every id has 2+)
    frame["step"] = pd.to_datetime("2026-01-01") + pd.to_timedelta(frame["step"], unit="D")
    frame["split"] = frame["series"].map(lambda s: "test" if int(s[1:]) < 3 else "train")
    raw = raw_of(frame, tmp_path)
    order = [int(s[1:]) for s in dict.fromkeys(frame["series"])]
    assert [int(raw.series[n, 0, 0]) for n in range(12)] == [10 * i for i in order]  # the earliest date first
    assert list(raw.split) == ["test" if i < 3 else "train" for i in order]
    assert list(raw.labels["kind"]) == ["odd" if i % 2 else "even" for i in order]


def test_features_are_standardized_from_train(tmp_path):
    path = tmp_path / "long.csv"
    long_rows(40).to_csv(path, index=False)
    data = build_dataset(load_config(long_config(path)))
    train = data.x[data.index["train"]]
    valid = train[..., -1] > 0.5
    assert torch.allclose(train[..., :2][valid].mean(0), torch.zeros(2), atol=1e-5)


@pytest.mark.parametrize("change,message", [
    (lambda f: f.drop(columns="series"), r"data\.sequence\.id: .*long\.csv: no column 'series' \(columns: step,"),
    (lambda f: f.drop(columns="step"), r"data\.sequence\.time: .*long\.csv: no column 'step'"),
    (lambda f: f.assign(slope=f["slope"].astype(str).where(f.index != 4, "steep")),
     r"long\.csv: column 'slope' row 5 \(counting from 1 below the header\) holds 'steep'; expected a number in every step"),
    (lambda f: f.assign(level=f["level"].where(f.index != 2)), r"column 'level' row 3 .* is empty; expected a number"),
    (lambda f: f.assign(kind=f["kind"].where(f.index != 0, "other")),
     r"long\.csv: column 'kind' holds '(odd|even|other)' in row \d+ and '(odd|even|other)' in row \d+, both of one id; "
     r"expected one value per id"),
    (lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True),
     r"data\.sequence\.time: .*long\.csv: rows 1 and \d+ .* are both id 's\d+' at the same time; expected one row per id and time"),
    (lambda f: f.assign(step=f["step"].astype(str).where(f.index != 1, "soon")),
     r"data\.sequence\.time: .*column 'step' row 2 .* holds 'soon'; expected a number or a date in every row"),
    (lambda f: f.assign(series=f["series"].where(f.index != 3)),
     r"data\.sequence\.id: .*column 'series' row 4 .* is empty; expected an id in every row"),
])
def test_the_long_table_source_refuses(tmp_path, change, message):
    with pytest.raises(UserError, match=message) as caught:
        raw_of(change(long_rows()), tmp_path)
    assert "\n" not in str(caught.value)


def test_a_long_table_needs_its_id_and_time_columns_named(tmp_path):
    with pytest.raises(UserError, match=r"data\.sequence\.time: required to read long\.csv as a long table"):
        raw_of(long_rows(), tmp_path, {"id": "series"})


def test_the_cli_refuses_a_bad_long_table_in_one_line(tmp_path, cli):
    path = tmp_path / "long.csv"
    long_rows().drop(columns="step").to_csv(path, index=False)
    (tmp_path / "long.yaml").write_text(json.dumps(long_config(path)))  # JSON is YAML
    code, _, err = cli("train", tmp_path / "long.yaml", "--run-dir", tmp_path / "run", "-q")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no column 'step'" in err
    assert not (tmp_path / "run").exists()
