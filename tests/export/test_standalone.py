"""An export reproduces `hydranet predict` without hydranet: predict_onnx.py (ONNX Runtime, numpy, pandas, Pillow
and the export's JSON) run in an isolated interpreter where importing hydranet fails, against predict's CSV."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from tests.export.exportruns import table_frame, train_digits
from PIL import Image

import hydranet as hn
from hydranet.config import TaskConfig
from hydranet.data.targets import encode_target
from hydranet.export import standalone
from hydranet.kinds import KINDS, get_kind, is_dense
from hydranet.tasks import Task

# `python -I` ignores PYTHONPATH and the working directory; hydranet (installed in the venv) is blocked on top.
WITHOUT_HYDRANET = ("import runpy, sys; sys.modules['hydranet'] = None; sys.argv = sys.argv[1:]; "
                    "runpy.run_path(sys.argv[0], run_name='__main__')")


def standalone_predictions(tmp_path, folder, *inputs) -> pd.DataFrame:
    """predict_onnx.py's CSV for the inputs, read back as predict's is."""
    out = subprocess.run([sys.executable, "-I", "-c", WITHOUT_HYDRANET, str(folder / "predict_onnx.py"), str(folder),
                          *map(str, inputs)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    path = tmp_path / "standalone.csv"
    path.write_text(out.stdout)
    return pd.read_csv(path, keep_default_na=False)


def assert_same_predictions(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """The same headers and inputs; labels (classes, joined label sets) equal; probabilities and regression
    values within float32 noise."""
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs)
    assert list(ours["input"].astype(str)) == list(theirs["input"].astype(str))
    for task in ours.columns[1:]:
        if pd.api.types.is_numeric_dtype(ours[task]):
            np.testing.assert_allclose(ours[task], theirs[task], rtol=1e-5, atol=1e-5, err_msg=task)
        else:
            assert list(ours[task]) == list(theirs[task]), task


def test_a_table_export_reproduces_predict(cli, table_run, tmp_path):
    new = table_frame(40, seed=1).drop(columns=["grade", "kind", "size", "tags"])
    new.loc[3, "color"], new.loc[4, "color"], new.loc[5, "color"] = "purple", " red ", ""  # unseen, padded, empty
    new.loc[6, "x1"] = np.nan
    path = tmp_path / "new.csv"
    new.to_csv(path, index=False)
    code, _, err = cli("predict", table_run, path, "-o", tmp_path / "predict.csv")
    assert code == 0, err
    ours = pd.read_csv(tmp_path / "predict.csv", keep_default_na=False)
    assert set(ours["tags"]) <= {"a|b", "b", "a", ""} and set(ours["grade"]) <= {"low", "mid", "high"}
    assert list(ours.columns) == ["input", "size", "grade", "tags", "kind_p(up)"]
    assert_same_predictions(ours, standalone_predictions(tmp_path, table_run / "export", path))


def test_an_image_export_reproduces_predict(cli, tmp_path):
    run_dir = train_digits(tmp_path, train__eval_tta="flip")  # predict averages with the mirror: so must the graph
    hn.load(run_dir).export()
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(4):  # grey at the trained size, and ones predict converts (RGB) and resizes (12×12)
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(images / f"grey{i}.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(images / "colour.png")
    Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(images / "large.png")
    code, _, err = cli("predict", run_dir, images, "-o", tmp_path / "predict.csv")
    assert code == 0, err
    ours = pd.read_csv(tmp_path / "predict.csv", keep_default_na=False)
    assert_same_predictions(ours, standalone_predictions(tmp_path, run_dir / "export", images))


DENSE_LABELS = {"segmentation": lambda rng: rng.integers(0, 3, (4, 5, 6)), "depth": lambda rng: rng.uniform(1, 9, (4, 5, 6)),
                "edges": lambda rng: rng.integers(0, 2, (4, 5, 6)), "normals": lambda rng: rng.normal(size=(4, 5, 6, 3))}


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kinds_decoding_rule_gives_its_predict_column(kind):
    """outputs.json's rule, applied by predict_onnx.py to what the graph outputs (`Task.exported`), turns a head
    output into the kind's own `column`; a per-pixel kind's maps too."""
    raw = {"classification": ["cat", "dog", "bird", "cat"], "binary": ["yes", "no", "yes", "no"],
           "multilabel": ["a|b", "b", "c", "a|c"], "regression": [1.5, 2.0, 3.5, 10.0]}
    dense = is_dense(get_kind(kind))
    values = DENSE_LABELS[kind](np.random.default_rng(0)) if dense else np.array(raw[kind], dtype=object)
    cfg = TaskConfig(kind=kind)
    target, info = encode_target(values, cfg, "t")
    get_kind(kind).fit(info, target)
    task = Task("t", cfg, info)
    torch.manual_seed(0)
    features = torch.randn(4, 4, 5, 6) if dense else torch.randn(4, 4)
    pred = task.head(4, feature_map=dense)(features).detach()
    exported = task.exported(pred).numpy()
    decoded = standalone.decode(exported, json.loads(json.dumps(task.decoding())))  # as read from the JSON
    expected = list(task.column(pred))
    if isinstance(expected[0], str):  # class names, joined label sets
        assert list(decoded) == expected
    else:  # probabilities, values in the target's units, maps
        np.testing.assert_allclose(np.float64(decoded), np.float64(expected), rtol=1e-6, atol=1e-6)
    # the server's onnx backend turns the graph's output back into one that decodes as the head's own
    torch.testing.assert_close(task.decode(task.from_exported(torch.from_numpy(exported))), task.decode(pred),
                               rtol=1e-5, atol=1e-5)


def test_the_standalone_script_refuses_infinite_numbers_as_hydranet_does():
    column = {"name": "age", "kind": "numeric", "mean": 40.0, "std": 10.0}
    np.testing.assert_allclose(standalone.encode_column(pd.Series([50.0, None]), column, set()), [[1.0], [0.0]])
    for values in ([50.0, np.inf], ["50", "-inf"]):
        with pytest.raises(ValueError, match="column 'age': a value is infinite"):
            standalone.encode_column(pd.Series(values), column, set())
