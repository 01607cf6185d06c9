"""Test-time flip augmentation: the mean of the logits of each image and its mirror image."""

import pytest
import torch
from torch import nn

import hydranet as hn
from hydranet.data import build_dataset
from hydranet.errors import UserError
from hydranet.train.evaluation import evaluate_split, predict_batches


class Asymmetric(nn.Module):
    """Logits that depend on where pixels are, so an image and its mirror get different outputs."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3 * 4 * 5, 2)

    def forward(self, x):
        return {"t": self.linear(x.flatten(1))}


def test_flip_tta_is_the_mean_of_both_orientations():
    torch.manual_seed(0)
    model, x = Asymmetric(), torch.randn(7, 3, 4, 5)
    plain = predict_batches(model, x, batch_size=3)["t"]
    mirrored = predict_batches(model, x.flip(3), batch_size=3)["t"]
    tta = predict_batches(model, x, batch_size=3, tta="flip")["t"]
    assert not torch.allclose(plain, mirrored)
    torch.testing.assert_close(tta, (plain + mirrored) / 2)


def test_flip_tta_refuses_tables():
    with pytest.raises(UserError, match="train.eval_tta: flip needs image inputs"):
        predict_batches(Asymmetric(), torch.ones(4, 3), batch_size=2, tta="flip")


def test_run_scores_with_tta(tmp_path, one_thread):
    """A run with eval_tta flip reports what TTA evaluation of its saved model gives, and differs from plain."""
    run = hn.Experiment("quickstart", {"train.epochs": 1, "data.limit": 300, "train.eval_tta": "flip"}).fit(tmp_path / "run")
    model = hn.load(run.dir)
    assert model.evaluate("test")["digit"]["loss"] == pytest.approx(run.summary["test"]["digit"]["loss"], rel=1e-5)
    test = build_dataset(model.config).split("test")  # the same weights without TTA give another loss
    plain = evaluate_split(model.run.model, model.tasks, test, 256)["digit"]["loss"]
    assert plain != pytest.approx(run.summary["test"]["digit"]["loss"], rel=1e-6)
