"""Episodes over an ordinary source's classes (`meta.source: data`) and `hydranet meta adapt` end to end: a tiny
ProtoNet meta-trained on digits 0–4 classifies a user's own folders of held-out digits; a table run adapts from a
CSV; user mistakes are one line, exit 2."""

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from hydranet.config import load_config, validate
from hydranet.errors import UserError
from hydranet.meta import loop
from hydranet.meta.classes import source_pools
from hydranet.meta.evaluate import evaluate_run
from hydranet.meta.setup import build
from tests.data.datafiles import write_png

DIGITS = {
    "name": "digits-fewshot", "seed": 0, "data": {"source": "digits"}, "tasks": {"digit": {"kind": "classification"}},
    "model": {"trunk": {"name": "cnn", "channels": [16], "dense": []}}, "train": {"threads": 1, "progress": False},
    "meta": {"source": "data", "test_classes": ["5", "6", "7", "8", "9"], "per_class": 40,
             "method": "protonet", "ways": 3, "shots": 1, "queries": 3, "meta_batch": 2, "iterations": 20,
             "eval_every": 20, "eval_episodes": 10},
}


def test_the_classes_of_a_source_split_into_disjoint_pools():
    train, val, test, info = source_pools(validate(DIGITS)).parts()
    assert train.names == ["0", "1", "2", "3", "4"] and test.names == val.names == ["5", "6", "7", "8", "9"]
    assert train.images.shape == (5, 40, 1, 8, 8) and info.input_shape == (1, 8, 8)
    digits = load_digits()
    first_five = digits.images[digits.target == 5][0] * 255 / 16  # the source's order: its first 5 leads class "5"
    normalized = (np.round(first_five) / 255 - info.mean[0]) / info.std[0]
    np.testing.assert_allclose(test.images[0, 0, 0].numpy(), normalized, atol=1e-5)


@pytest.mark.parametrize("change, message", [
    ({"test_classes": ["5", "eleven"]}, "meta.test_classes: 'eleven' is not a class of column 'digit'"),
    ({"test_classes": [str(d) for d in range(9)]}, "expected at least 2 held-out classes and 2 left"),
    ({"val_classes": ["4"]}, "meta.ways: 3-way episodes need 3 classes; the meta-validation pool has 1"),
    ({"per_class": 3}, "meta.shots + meta.queries: 1 + 3 examples per class; the meta-train pool has 3 per class"),
])
def test_a_bad_class_split_is_named(change, message):
    with pytest.raises(UserError, match=re.escape(message)):
        build(validate({**DIGITS, "meta": {**DIGITS["meta"], **change}}))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("meta") / "run"
    loop.train(validate(DIGITS), run, progress=False)
    return run


def test_meta_eval_scores_the_held_out_classes(digits_run):
    """Episodes of the five test classes, meta.queries per class (not every remaining example), no Lake's runs."""
    result = evaluate_run(digits_run, ways=5, shots=1, episodes=20)
    assert result["queries"] == 3 and "lake_runs" not in result and result["mean"] > 0.5, result


def user_files(folder, per_class=(2, 2, 2), queries=4):
    """Support folders 5/, 6/, 7/ of the digits' own pixels (the user's PNGs) and a query folder of other ones."""
    digits = load_digits()
    for label, shots in zip((5, 6, 7), per_class):
        images = np.round(digits.images[digits.target == label] * 255 / 16).astype(np.uint8)
        (folder / "support" / str(label)).mkdir(parents=True)
        for i in range(shots):
            write_png(folder / "support" / str(label) / f"{i}.png", images[i])
        (folder / "query").mkdir(exist_ok=True)
        for i in range(shots, shots + queries):
            write_png(folder / "query" / f"{label}_{i}.png", images[i])
    return folder / "support", folder / "query"


def test_meta_adapt_classifies_the_users_own_classes(cli, digits_run, tmp_path):
    """Classes never meta-trained on, given as folders: a wrong label order or support/query mix-up drops to ~33%."""
    support, query = user_files(tmp_path)
    code, out, err = cli("meta", "adapt", digits_run, support, query, "-o", tmp_path / "preds.csv")
    assert code == 0, err
    preds = pd.read_csv(tmp_path / "preds.csv", dtype={"prediction": str})
    assert list(preds.columns) == ["input", "prediction", "p_5", "p_6", "p_7"] and len(preds) == 12
    truth = preds["input"].map(lambda p: p.rsplit("/", 1)[1].split("_")[0])
    assert (preds["prediction"] == truth).mean() >= 0.9, preds
    np.testing.assert_allclose(preds[["p_5", "p_6", "p_7"]].sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("case, message", [
    ("empty", "/support/7: no image files (SUPPORT: each class folder needs at least one example)"),
    ("one class", "support examples of 1 class (5); expected at least 2 classes"),
    ("no run", "nowhere: not a folder"),
])
def test_adapt_mistakes_are_one_line(cli, digits_run, tmp_path, case, message):
    support, query = user_files(tmp_path, per_class=(2, 2, 0) if case == "empty" else (2, 2, 2))
    if case == "one class":
        for label in ("6", "7"):
            for f in (support / label).iterdir():
                f.unlink()
            (support / label).rmdir()
    run = tmp_path / "nowhere" if case == "no run" else digits_run
    code, _, err = cli("meta", "adapt", run, support, query, "-o", tmp_path / "preds.csv")
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "preds.csv").exists()


def test_a_table_run_adapts_from_a_csv_and_refuses_missing_columns(cli, tmp_path):
    """Four Gaussian blobs as classes a–d of a CSV: meta-train on a, b; adapt to c, d from a support table."""
    rng = np.random.default_rng(0)
    centres = {"a": (4, 0), "b": (-4, 0), "c": (0, 4), "d": (0, -4)}
    rows = [(x + rng.normal(), y + rng.normal(), label) for label, (x, y) in centres.items() for _ in range(20)]
    frame = pd.DataFrame(rows, columns=["x1", "x2", "label"])
    frame.to_csv(tmp_path / "blobs.csv", index=False)
    cfg = {"name": "blobs", "data": {"source": "csv", "path": str(tmp_path / "blobs.csv")},
           "tasks": {"label": {"kind": "classification"}}, "model": {"trunk": {"name": "mlp", "hidden": [8]}},
           "train": {"progress": False},
           "meta": {"source": "data", "test_classes": ["c", "d"], "method": "protonet", "ways": 2, "queries": 2,
                    "meta_batch": 2, "iterations": 10, "eval_every": 10, "eval_episodes": 5}}
    loop.train(validate(cfg), tmp_path / "run", progress=False)
    support = frame[frame["label"].isin(["c", "d"])].groupby("label").head(2)
    support.to_csv(tmp_path / "support.csv", index=False)
    frame[["x1", "x2"]].iloc[[45, 75]].to_csv(tmp_path / "query.csv", index=False)  # one c, one d
    code, _, err = cli("meta", "adapt", tmp_path / "run", tmp_path / "support.csv", tmp_path / "query.csv", "-o", "p.csv")
    assert code == 0, err
    assert pd.read_csv(tmp_path / "p.csv")["prediction"].tolist() == ["c", "d"]
    support.drop(columns="x2").to_csv(tmp_path / "support.csv", index=False)
    code, _, err = cli("meta", "adapt", tmp_path / "run", tmp_path / "support.csv", tmp_path / "query.csv")
    assert code == 2 and "no column 'x2', which the model was trained with" in err, err


def test_a_sinusoid_run_adapts_to_the_users_points_of_one_curve(cli, tmp_path):
    """MAML meta-trained briefly, then given 10 points of y = 3·sin(x − 1): its predictions at 50 new x follow the
    curve (a support/query mix-up, no inner steps or a dropped y column leave the error near the curve's power)."""
    cfg = load_config("sinusoid", ["meta.iterations=150", "meta.meta_batch=10", "meta.eval_every=150",
                                   "meta.outer_lr=0.01", "meta.eval_episodes=20", "train.progress=false",
                                   "meta.method={name: maml, inner_lr: 0.02, eval_steps: 10}"])
    loop.train(cfg, tmp_path / "run", progress=False)
    curve = lambda x: 3 * np.sin(x - 1)  # noqa: E731
    x = np.linspace(-5, 5, 10)
    pd.DataFrame({"x": x, "y": curve(x)}).to_csv(tmp_path / "support.csv", index=False)
    new_x = np.linspace(-4.9, 4.9, 50)
    pd.DataFrame({"x": new_x}).to_csv(tmp_path / "query.csv", index=False)
    code, out, err = cli("meta", "adapt", tmp_path / "run", tmp_path / "support.csv", tmp_path / "query.csv",
                         "-o", tmp_path / "preds.csv")
    assert code == 0 and "adapted to your curve" in out, err
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert list(preds.columns) == ["input", "x", "prediction"]
    np.testing.assert_allclose(preds["x"], new_x, rtol=1e-6)
    error = np.mean((preds["prediction"] - curve(new_x)) ** 2)
    assert error < 0.3 * np.mean(curve(new_x) ** 2), error
    pd.DataFrame({"x": x, "y": ["abc", ""] + list(curve(x[2:]))}).to_csv(tmp_path / "bad.csv", index=False)
    for support, message in [(tmp_path / "query.csv", "query.csv: no column 'y' (SUPPORT: a table with columns x, y)"),
                             (tmp_path / "bad.csv", "bad.csv: row 1 of column 'y' is 'abc'; expected a number")]:
        code, _, err = cli("meta", "adapt", tmp_path / "run", support, tmp_path / "query.csv", "-o", tmp_path / "p2.csv")
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "p2.csv").exists()
