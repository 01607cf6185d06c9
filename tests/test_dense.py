"""Dense tasks end to end: a short scenes-mtl run learns per-pixel classes, edges and normals, evaluate reports the
dense metrics, predict writes one file per map; export, serve and report ship its maps (the same numbers as
predict's); explain attributes a region's score of each per-pixel task; and the commands that do not handle
per-pixel outputs yet refuse in one line."""

import json
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import hydranet as hn
from hydranet.cli import main
from hydranet.data import build_dataset
from hydranet.data.sources.scenes import generate
from hydranet.kinds.edges import edge_fscore
from hydranet.kinds.normals import normal_metrics
from hydranet.kinds.pixels import map_values
from hydranet.report.run import write_report
from hydranet.train import load_run
from hydranet.train.evaluation import forward_tta

# One epoch on 60 scenes of 16×16 and a narrow U-Net: enough for the outputs and refusals, in a few seconds.
TINY = ["data.limit=60", "data.image_size=16", "train.epochs=1", "train.batch_size=16", "train.progress=false",
        "model.trunk.channels=[8,16]", "model.trunk.decoder=8", "monitor.reference_rows=8",
        "train.precision=fp32"]  # the export and serving checks compare with predict exactly
# The learning check: scenes-mtl's data and schedule (3,000 scenes, 8 epochs; about 70 s on two idle cores,
# docs/dense.md) with the three tasks it was measured with; the five-task default is not measured yet.
SHORT = ["train.progress=false",
         "tasks={semantic: {kind: segmentation}, depth: {kind: depth}, count: {kind: classification}}"]
# The edges and normals learning check: those two tasks alone on a narrower unet and fewer scenes, one thread, so
# that it fits in about two minutes on one core.
EDGES_NORMALS = ["train.progress=false", "train.threads=1", "data.limit=1000", "train.batch_size=32", "data.split.stratify=null",
                 "model.trunk.channels=[16,32]", "model.trunk.decoder=16",
                 "tasks={edges: {kind: edges}, normals: {kind: normals}}"]


def hydranet(*args) -> int:
    """Run the CLI in-process (outside a test's capsys, for a module-scoped run); its exit code."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["hydranet", *map(str, args)])
        try:
            main()
        except SystemExit as exit_:
            return int(exit_.code or 0)
    return 0


def train(folder, settings: list[str]):
    sets = [arg for value in settings for arg in ("--set", value)]
    assert hydranet("train", "scenes-mtl", "--run-dir", folder, "-q", *sets) == 0
    return folder


@pytest.fixture(scope="module")
def scenes_run(tmp_path_factory):
    return train(tmp_path_factory.mktemp("scenes") / "run", TINY)


def test_evaluate_reports_the_dense_metrics(scenes_run, cli):
    code, out, err = cli("evaluate", scenes_run)
    assert code == 0, err
    metrics = json.loads((scenes_run / "eval-test.json").read_text())
    assert set(metrics["semantic"]) == {"loss", "miou", "pixel_accuracy"}
    assert set(metrics["depth"]) == {"loss", "abs_err", "abs_rel", "rmse", "delta1"}
    assert set(metrics["edges"]) == {"loss", "fscore", "precision", "recall"}
    assert set(metrics["normals"]) == {"loss", "mean_angle", "median_angle", "within_11", "within_22", "within_30"}
    assert "accuracy" in metrics["count"] and "miou" in out


@pytest.mark.slow
def test_a_short_run_beats_the_majority_class_clearly(tmp_path):
    run = train(tmp_path / "run", SHORT)
    metrics = json.loads((run / "summary.json").read_text())
    labels = generate(3000, 32, seed=0)["labels"]["semantic"]
    majority = float((labels == 0).mean()) / 4  # all background: IoU its pixel share, 0 for the three shapes
    miou = metrics["test"]["semantic"]["miou"]
    assert miou > majority + 0.1, (miou, majority)


@pytest.mark.slow
def test_a_short_run_beats_the_trivial_edges_and_normals(tmp_path):
    """On the run's own test split: the edge F-score beats the all-edge predictor's (the all-zero one scores 0),
    and the mean angle error of the normals beats two constant predictors fitted on the train pixels: their mean
    normal, and their most frequent normal (the background plane's, which is right on about 78% of the pixels)."""
    run = train(tmp_path / "run", EDGES_NORMALS)
    test = json.loads((run / "summary.json").read_text())["test"]
    data = build_dataset(load_run(run).config)
    edges = data.split("test")["edges"].numpy()
    all_edges = edge_fscore(np.ones(edges.shape, dtype=bool), edges)["fscore"]
    assert test["edges"]["fscore"] > all_edges, (test["edges"], all_edges)
    train_normals = data.split("train")["normals"].flatten(0, 2)
    train_normals = train_normals[~train_normals.isnan().any(-1)]
    mean = train_normals.double().mean(0)
    vectors, counts = train_normals.unique(dim=0, return_counts=True)
    normals = data.split("test")["normals"].numpy()
    for constant in (mean / mean.norm(), vectors[counts.argmax()]):
        error = normal_metrics(np.broadcast_to(constant.numpy(), normals.shape), normals)["mean_angle"]
        assert test["normals"]["mean_angle"] < error, (test["normals"], constant, error)


def test_predict_writes_a_file_per_map_and_image(scenes_run, cli, tmp_path):
    images = generate(2, 16, seed=9)["images"].permute(0, 2, 3, 1).numpy()
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    code, _, err = cli("predict", scenes_run, tmp_path / "0.png", tmp_path / "1.png", "-o", tmp_path / "out" / "p.csv")
    assert code == 0, err
    table = (tmp_path / "out" / "p.csv").read_text().splitlines()
    assert table[0] == "input,semantic,depth,edges,normals,count"
    assert table[1].split(",")[1:5] == ["p-semantic/00000.png", "p-depth/00000.npy", "p-edges/00000.png", "p-normals/00000.npy"]
    out = tmp_path / "out"
    mask, edges = np.asarray(Image.open(out / "p-semantic" / "00001.png")), np.asarray(Image.open(out / "p-edges" / "00001.png"))
    depth, normals = np.load(out / "p-depth" / "00001.npy"), np.load(out / "p-normals" / "00001.npy")
    assert mask.shape == (16, 16, 3) and depth.shape == (16, 16) and depth.dtype == np.float32
    assert edges.shape == (16, 16) and edges.dtype == np.uint8  # the edge probability × 255
    assert normals.shape == (16, 16, 3) and np.allclose(np.linalg.norm(normals, axis=-1), 1, atol=1e-5)


@pytest.mark.parametrize("command", [["audit", "--sensitive", "count"], ["attack", "--eps", "2/255"]])
def test_commands_without_per_pixel_outputs_refuse_in_one_line(scenes_run, cli, command):
    code, _, err = cli(command[0], scenes_run, *command[1:])
    assert code == 2 and err.count("\n") == 1, err
    assert f"error: tasks: hydranet {command[0]} does not handle per-pixel tasks yet" in err
    assert "semantic (segmentation), depth (depth)" in err


def test_explain_attributes_a_region_of_each_per_pixel_task(scenes_run, cli, tmp_path):
    """Segmentation: IG of a class's logits summed over its predicted pixels, complete per example, the regions
    saved with the attributions and outlined in the pictures; edges, depth and normals by the other methods."""
    code, out, err = cli("explain", scenes_run, "--split", "test", "--task", "semantic", "--n", "2",
                         "-o", tmp_path / "semantic")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "semantic").iterdir()) == [
        "attributions.safetensors", "example-0.png", "example-1.png", "explanation.json"]
    summary = json.loads((tmp_path / "semantic" / "explanation.json").read_text())
    report = summary["completeness"]["semantic"]
    assert report["within_bound"] == report["examples"] == 2
    tensors = load_file(tmp_path / "semantic" / "attributions.safetensors")
    assert tensors["attributions"].shape == (2, 3, 16, 16) and tensors["regions"].shape == (2, 16, 16)
    for name, region in zip(summary["targets"]["semantic"], tensors["regions"]):
        assert name.startswith("logit of ") and f"{int(region.sum())} " in name
    for task, method, region, named in [
            ("edges", "gradcam", "predicted", "edge logit averaged over "),
            ("depth", "saliency", "4:12,4:12", "standardized depth averaged over rows 4:12, columns 4:12 (64 pixels)"),
            ("normals", "occlusion", "all", " of the unit normal averaged over all 256 pixels")]:
        code, _, err = cli("explain", scenes_run, "--split", "test", "--task", task, "--method", method,
                           "--region", region, "--n", "2", "-o", tmp_path / task)
        assert code == 0, err
        names = json.loads((tmp_path / task / "explanation.json").read_text())["targets"][task]
        assert len(names) == 2 and all(named in name for name in names), names
    code, _, err = cli("explain", scenes_run, "--split", "test", "--task", "count", "--region", "all", "--n", "1")
    assert code == 2 and err.startswith("error: --region: task 'count' (classification) predicts one value")


def test_flip_tta_mirrors_dense_outputs_back():
    """A map predicted for the mirrored image is mirrored back before averaging; an example's scores are not."""
    def model(x):  # mirror-equivariant per pixel, plus a per-example output
        return {"map": x[:, 0], "scores": x.mean(dim=(1, 2, 3))[:, None]}

    x = torch.randn(2, 1, 3, 4)
    out = forward_tta(model, x, "flip")
    assert torch.equal(out["map"], x[:, 0]) and torch.allclose(out["scores"], model(x)["scores"])


def scene_images(folder, count: int, size: int = 16, seed: int = 9) -> list:
    """`count` new scenes as PNG files in `folder`; their paths."""
    folder.mkdir(exist_ok=True)
    paths = []
    for i, image in enumerate(generate(count, size, seed=seed)["images"].permute(0, 2, 3, 1).numpy()):
        paths.append(folder / f"{i:02}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def shipped(scenes_run, tmp_path_factory):
    """The run exported to RUN/export (which the server's onnx backend then reads), and predict's maps of three
    new scenes, as arrays per task."""
    parity = hn.load(scenes_run).export()
    folder = tmp_path_factory.mktemp("shipped")
    images = scene_images(folder / "images", 3)
    assert hydranet("predict", scenes_run, *images, "-o", folder / "out" / "p.csv") == 0
    maps = {"semantic": [np.asarray(Image.open(folder / "out" / "p-semantic" / f"{i:05}.png")) for i in range(3)],
            "depth": [np.load(folder / "out" / "p-depth" / f"{i:05}.npy") for i in range(3)],
            "normals": [np.load(folder / "out" / "p-normals" / f"{i:05}.npy") for i in range(3)]}
    return parity, images, maps


def test_export_gives_predicts_maps_at_any_size(scenes_run, shipped):
    """One output per task; depth in the data's units and unit normals, as predict writes them; height and width
    dynamic (checked by the parity at a second, odd size), batch too."""
    import onnxruntime as ort

    from hydranet.export.standalone import predict as standalone_predict
    from hydranet.kinds.segmentation import PALETTE

    parity, images, maps = shipped
    assert parity["passed"] and parity["image_sizes"] == [[16, 16], [25, 21]]
    spec = json.loads((scenes_run / "export" / "outputs.json").read_text())
    assert spec["input"]["shape"] == ["batch", 3, "height", "width"]
    assert spec["tasks"]["semantic"]["shape"] == ["batch", "height", "width", 4]
    assert spec["tasks"]["normals"]["decode"] == spec["tasks"]["depth"]["decode"] == "identity"
    frame = standalone_predict(scenes_run / "export", images)
    for i in range(3):
        assert np.array_equal(PALETTE[frame["semantic"][i]], maps["semantic"][i])  # predict's PNG: colour by class
        np.testing.assert_allclose(frame["depth"][i], maps["depth"][i], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(frame["normals"][i], maps["normals"][i], atol=1e-5)
    session = ort.InferenceSession(str(scenes_run / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    semantic, normals = session.run(["semantic", "normals"], {"x": np.zeros((2, 3, 20, 24), np.float32)})
    assert semantic.shape == (2, 20, 24, 4) and np.allclose(np.linalg.norm(normals, axis=-1), 1, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("sharing", ["mmoe", "cgc", "cross_stitch"])
def test_soft_sharing_dense_runs_export_with_every_output_its_own(sharing, tmp_path):
    """Each soft sharing's unet columns or experts export, every output within the tolerance of its own head's (the
    parity check, which would refuse the export otherwise): cross-stitch columns at any size, the MMoE/CGC gates'
    adaptive pooling at the run's size only (exported at another, it computes the wrong width)."""
    run = train(tmp_path / "run", [*TINY, f"model.sharing={sharing}"])
    parity = hn.load(run).export()
    any_size = sharing == "cross_stitch"
    assert parity["passed"] and parity["image_sizes"] == ([[16, 16], [25, 21]] if any_size else [[16, 16]])
    spec = json.loads((run / "export" / "outputs.json").read_text())
    assert spec["input"]["shape"] == ["batch", 3, *(["height", "width"] if any_size else [16, 16])]
    assert set(parity["max_abs_diff"]) == {"semantic", "depth", "edges", "normals", "count"}


@contextmanager
def served(run, backend: str):
    """An in-process client of the run's server, its batcher running."""
    from fastapi.testclient import TestClient

    from hydranet.serve.app import create_app
    from hydranet.serve.settings import ServeSettings

    with TestClient(create_app(load_run(run), ServeSettings(backend=backend))) as client:
        yield client


def upload(paths: list) -> list:
    return [("images", (path.name, path.read_bytes(), "image/png")) for path in paths]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_serve_answers_predicts_maps_and_pixel_shares(scenes_run, shipped, backend):
    from hydranet.kinds.segmentation import PALETTE

    _, images, maps = shipped
    with served(scenes_run, backend) as client:
        response = client.post("/predict", files=upload(images))
        assert response.status_code == 200, response.text
        answers = response.json()["predictions"]
        for i, answer in enumerate(answers):
            mask = map_values(answer["semantic"]["label"])
            assert np.array_equal(PALETTE[mask], maps["semantic"][i])
            np.testing.assert_allclose(map_values(answer["depth"]["value"]), maps["depth"][i], rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(map_values(answer["normals"]["value"]), maps["normals"][i], atol=1e-4)
            shares = answer["semantic"]["pixel_shares"]
            assert shares == {str(k): float((mask == k).mean()) for k in range(4)}
        as_lists = client.post("/predict?format=json", files=upload(images[:1]))
        assert np.array_equal(np.asarray(as_lists.json()["predictions"][0]["semantic"]["label"]),
                              map_values(answers[0]["semantic"]["label"]))
        refused = client.post("/predict?format=xml", files=upload(images[:1]))
        assert refused.status_code == 422 and refused.json()["detail"].startswith("format: 'xml' is not a format")
        tasks = client.get("/metadata").json()["tasks"]
        assert tasks["semantic"]["map"] == {"key": "label", "shape": [16, 16], "encoding": "png"}
        assert tasks["normals"]["map"] == {"key": "value", "shape": [16, 16, 3], "encoding": "npy"}
        counted = [line for line in client.get("/metrics").text.splitlines()
                   if line.startswith("hydranet_predictions_total{") and 'task="semantic"' in line]
        assert sum(float(line.split()[-1]) for line in counted) == pytest.approx(4)  # 3 + 1 images' shares


def test_serve_drift_watches_image_statistics_and_per_example_tasks(scenes_run, tmp_path):
    """Maps stay out of the drift window; the image statistics and the count task are compared."""
    with served(scenes_run, "torch") as client:
        assert client.post("/predict", files=upload(scene_images(tmp_path, 30, seed=3))).status_code == 200
        drift = client.get("/drift").json()
        assert drift["ready"] and [t["feature"] for t in drift["predictions"]["tasks"]] == ["count"]
        assert {f["feature"] for f in drift["features"]["features"]} == {"mean_c0", "mean_c1", "mean_c2",
                                                                        "std_c0", "std_c1", "std_c2"}


def test_report_shows_the_dense_metrics_and_overlays(scenes_run, tmp_path):
    result = write_report(scenes_run, tmp_path / "report.html")
    assert {"dense_metrics", "dense_overlays", "attributions"} <= set(result["sections"])
    page = (tmp_path / "report.html").read_text()
    evaluated = json.loads((scenes_run / "summary.json").read_text())["test"]
    dense = page[page.index('id="dense_metrics"'):page.index('id="dense_overlays"')]
    assert f"{evaluated['semantic']['miou']:.4g}" in dense and "delta1" in dense and "mean_angle" in dense
    assert "semantic · per class" in dense
    overlays = page[page.index('id="dense_overlays"'):page.index("</details>", page.index('id="dense_overlays"'))]
    assert overlays.count("<img") == 4  # one figure per dense task
    attributions = page[page.index('id="attributions"'):]
    assert all(f'alt="attributions of {task}"' in attributions for task in ("semantic", "depth", "edges", "normals"))
    assert "Per-pixel tasks (semantic, depth, edges, normals) are explained" in attributions
