"""The reference a run stores at the end of training (`hydranet.monitor.reference`) and `hydranet monitor` reading
it: statistics equal to numpy/pandas on the same rows, the stored sample equal to the rebuilt one, runs without a
reference, `monitor.keep_rows: false`, and image runs."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

import hydranet as hn
from hydranet.data import build_dataset
from hydranet.data.build import load_raw
from hydranet.monitor.drift import frame_drift, summary_drift
from hydranet.monitor.reference import QUANTILES, summarize_frame
from hydranet.monitor.report import reference_frame
from hydranet.predict import decode_outputs
from hydranet.train import load_run
from hydranet.train.evaluation import predict_batches
from tests.conftest import tiny_table_config
from tests.data.datafiles import write_png
from tests.test_monitor import frame


def train(cli, tmp_path, cfg, name="run"):
    exp = tmp_path / f"{name}.yaml"
    exp.write_text(yaml.safe_dump(cfg))
    code, _, err = cli("train", exp, "--run-dir", tmp_path / name, "-q")
    assert code == 0, err
    return tmp_path / name


def shifted_csv(tiny_csv, tmp_path):
    new = pd.read_csv(tiny_csv)
    new["x1"] += 2.0
    new.to_csv(tmp_path / "new.csv", index=False)
    return tmp_path / "new.csv"


def test_stored_statistics_and_sample_equal_numpy_and_a_rebuild_and_older_runs_still_work(cli, tiny_csv, tmp_path):
    cfg = tiny_table_config(tiny_csv, epochs=1)
    cfg["monitor"] = {"reference_rows": 50}  # fewer than the 144 train rows: a real draw
    run_dir = train(cli, tmp_path, cfg)
    stored = json.loads((run_dir / "reference.json").read_text())
    run = load_run(run_dir)
    data = build_dataset(run.config)
    train_rows = load_raw(run.config).frame.iloc[data.index["train"].numpy()]
    assert stored["train_rows"] == len(train_rows) == 144 and stored["sample_rows"] == 50

    x1 = train_rows["x1"].to_numpy()
    counts, edges = np.histogram(x1, bins=1000)
    assert stored["features"]["x1"]["mean"] == pytest.approx(x1.mean())
    assert stored["features"]["x1"]["std"] == pytest.approx(x1.std())
    assert list(stored["features"]["x1"]["quantiles"].values()) == pytest.approx(np.percentile(x1, QUANTILES))
    assert stored["features"]["x1"]["histogram"] == {"edges": pytest.approx(edges.tolist()), "counts": counts.tolist()}
    color = train_rows["color"]  # tiny_csv's "?" cells are missing
    assert stored["features"]["color"]["frequencies"] == color.dropna().value_counts().to_dict()
    assert stored["features"]["color"]["missing"] == pytest.approx(color.isna().mean()) and color.isna().any()

    val = decode_outputs(run, predict_batches(run.model, data.split("val")["x"], 1024))
    assert stored["predictions"]["rows"] == len(val)
    assert stored["predictions"]["columns"]["size"]["mean"] == pytest.approx(val["size"].mean(), rel=1e-5)

    sample = reference_frame(run, 50)
    assert "stored at training time" in sample.attrs["reference"]
    new = shifted_csv(tiny_csv, tmp_path)
    assert cli("monitor", run_dir, new, "-o", tmp_path / "stored")[0] == 0
    stored_report = json.loads((tmp_path / "stored" / "drift.json").read_text())
    assert "stored at training time" in stored_report["reference"]
    assert [f["feature"] for f in stored_report["features"]["features"] if f["drift"]] == ["x1"]
    page = (tmp_path / "stored" / "drift.html").read_text()
    assert "data:image/png;base64," in page and "<script" not in page
    assert (tmp_path / "stored" / "drift.png").read_bytes()[:4] == b"\x89PNG"

    (run_dir / "reference.json").rename(tmp_path / "reference.json")  # as a run from before references
    rebuilt = reference_frame(run, 50)
    assert "rebuilt" in rebuilt.attrs["reference"]
    pd.testing.assert_frame_equal(sample, rebuilt)
    code, _, err = cli("monitor", run_dir, new, "-o", tmp_path / "rebuilt")
    assert code == 0, err
    rebuilt_report = json.loads((tmp_path / "rebuilt" / "drift.json").read_text())
    assert "rebuilt" in rebuilt_report["reference"]
    assert {k: rebuilt_report[k] for k in ("features", "predictions")} == \
        {k: stored_report[k] for k in ("features", "predictions")}


def test_without_kept_rows_drift_is_measured_against_the_stored_statistics(cli, tiny_csv, tmp_path):
    cfg = tiny_table_config(tiny_csv, epochs=1)
    cfg["monitor"] = {"keep_rows": False}
    run = train(cli, tmp_path, cfg)
    assert not (run / "reference_rows.parquet").exists()
    assert json.loads((run / "reference.json").read_text())["sample_rows"] == 0
    report = hn.load(run).drift(shifted_csv(tiny_csv, tmp_path))
    assert "no rows kept" in report["reference"]
    features = report["features"]["features"]
    assert [f["feature"] for f in features if f["drift"]] == ["x1"]
    assert {f["method"] for f in features} == {"Wasserstein (normed, stored histogram)", "Jensen-Shannon (stored counts)"}
    assert report["predictions"]["tasks"][0]["feature"] == "kind_p(up)" and report["predictions"]["tasks"][0]["drift"]
    # its own rows: a tenth of the shift's distance (on 144 rows, sampling noise alone is near the 0.1 threshold)
    unshifted = {f["feature"]: f for f in hn.load(run).drift(tiny_csv)["features"]["features"]}
    assert unshifted["x1"]["distance"] < features[0]["distance"] / 10


def test_stored_statistics_give_the_distances_rows_give():
    """On a reference larger than 1,000 rows both use distances: Jensen–Shannon of the same counts is exact,
    Wasserstein on the 1,000-bin histogram is within half a bin of the one on rows."""
    rng = np.random.default_rng(5)
    reference = frame(rng, 5000)
    for shift in (0.0, 0.3, 1.0):
        current = frame(rng, 800, shift=shift)
        rows = {f["feature"]: f for f in frame_drift(reference, current, ["color"])["features"]}
        stats = summary_drift(summarize_frame(reference, ["color"]), current, len(reference))
        for result in stats["features"]:
            expected = rows[result["feature"]]
            assert result["distance"] == pytest.approx(expected["distance"], abs=0.01)
            assert result["drift"] == expected["drift"]
        assert stats["drifted"] == (shift > 0)
    constant = pd.DataFrame({"zero": np.zeros(50)})  # numpy bins a constant over ±0.5 around it
    assert summary_drift(summarize_frame(constant), constant, 50)["features"][0]["distance"] == 0


def image_folder(folder, count, seed, change=lambda image, rng: image):
    """`count` seeded 8x8 grey-ish colour images (pixels about N(128, 20)) in two class folders, each passed
    through `change(image, rng)` first."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = change(rng.normal(128, 20, (8, 8, 3)), rng)
        write_png(folder / ("a" if i % 2 else "b") / f"{i:03d}.png", np.clip(image, 0, 255).astype(np.uint8))
    return folder


def flagged(report_dir):
    return {f["feature"] for f in json.loads((report_dir / "drift.json").read_text())["features"]["features"] if f["drift"]}


def test_image_run_flags_darkened_and_noised_images_but_not_its_own(cli, tmp_path):
    images = image_folder(tmp_path / "images", 60, seed=0)
    run = train(cli, tmp_path, {
        "name": "img", "data": {"source": "image_folder", "path": str(images)},
        "tasks": {"label": {"kind": "classification"}}, "model": {"trunk": {"name": "cnn", "channels": [4], "dense": [8]}},
        "train": {"epochs": 1, "batch_size": 16, "progress": False}})
    stored = json.loads((run / "reference.json").read_text())
    assert set(stored["features"]) == {f"{s}_c{c}" for s in ("mean", "std") for c in range(3)}
    assert set(stored["pixels"]) == {"c0", "c1", "c2"}

    code, _, err = cli("monitor", run, images, "-o", tmp_path / "same")  # its own images: the train ones and more
    assert code == 0, err
    same = json.loads((tmp_path / "same" / "drift.json").read_text())
    assert same["features"]["drifted"] == 0 and same["predictions"]["drifted"] == 0
    assert "stored at training time" in same["reference"]

    dark = image_folder(tmp_path / "dark", 30, seed=1, change=lambda image, rng: image / 2)
    assert cli("monitor", run, dark, "-o", tmp_path / "dark_drift")[0] == 0
    assert {"mean_c0", "mean_c1", "mean_c2"} <= flagged(tmp_path / "dark_drift")
    noisy = image_folder(tmp_path / "noisy", 30, seed=2, change=lambda image, rng: image + rng.normal(0, 40, image.shape))
    assert cli("monitor", run, noisy, "-o", tmp_path / "noisy_drift")[0] == 0
    assert flagged(tmp_path / "noisy_drift") == {"std_c0", "std_c1", "std_c2"}

    for name in ("reference.json", "reference_rows.parquet"):  # a run from before references: rebuilt, same result
        (run / name).unlink()
    assert cli("monitor", run, dark, "-o", tmp_path / "dark_rebuilt")[0] == 0
    assert json.loads((tmp_path / "dark_rebuilt" / "drift.json").read_text())["features"] == \
        json.loads((tmp_path / "dark_drift" / "drift.json").read_text())["features"]
