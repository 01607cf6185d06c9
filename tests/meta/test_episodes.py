"""Episode sampling: N distinct classes, K + Q distinct examples of each, labels that match the classes, never a
class outside the pool sampled from; Omniglot's meta-train and meta-val alphabets never meet."""

from pathlib import Path

import pytest
import torch

from hydranet.errors import UserError
from hydranet.meta import omniglot
from hydranet.meta.episodes import ClassPool, sample_classes, sample_sinusoids, with_rotations

OMNIGLOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "omniglot"


def labelled_pool(classes=12, per_class=6) -> ClassPool:
    """Image (c, m) holds the value 100·c + m everywhere: every sampled image says where it came from."""
    values = 100 * torch.arange(classes)[:, None] + torch.arange(per_class)[None, :]
    return ClassPool(values[:, :, None, None, None].float().expand(-1, -1, 1, 2, 2).clone(), [f"c{c}" for c in range(classes)])


def test_episodes_hold_distinct_classes_and_examples_with_matching_labels():
    pool = labelled_pool()
    eps = sample_classes(pool, tasks=50, ways=5, shots=2, queries=3, generator=torch.Generator().manual_seed(0))
    assert eps.support_x.shape == (50, 10, 1, 2, 2) and eps.query_x.shape == (50, 15, 1, 2, 2)
    for t in range(50):
        classes = eps.classes[t]
        assert len(set(classes.tolist())) == 5
        images = torch.cat([eps.support_x[t], eps.query_x[t]])[:, 0, 0, 0].long()
        labels = torch.cat([eps.support_y[t], eps.query_y[t]])
        assert torch.equal(images // 100, classes[labels])  # label k is the episode's k-th class
        assert len(set(images.tolist())) == 25  # no example is both support and query, or drawn twice


def test_the_sampler_never_leaves_its_pool():
    """Meta-train episodes come from the meta-train pool only: a split's classes never reach the other side."""
    pool = labelled_pool(classes=20)
    train = ClassPool(pool.images[:14], pool.names[:14])
    eps = sample_classes(train, tasks=200, ways=5, shots=1, queries=5, generator=torch.Generator().manual_seed(3))
    seen = set((torch.cat([eps.support_x, eps.query_x], 1)[..., 0, 0, 0].long() // 100).flatten().tolist())
    assert seen <= set(range(14)) and len(seen) == 14


def test_rotations_make_four_classes_of_each():
    pool = ClassPool(torch.arange(4.0).view(1, 1, 1, 2, 2), ["a"])
    rotated = with_rotations(pool)
    assert rotated.names == ["a@0", "a@90", "a@180", "a@270"]
    assert torch.equal(rotated.images[1, 0, 0], torch.tensor([[1.0, 3.0], [0.0, 2.0]]))


def test_too_many_ways_or_shots_are_refused():
    with pytest.raises(ValueError, match="13 classes"):
        sample_classes(labelled_pool(), 1, 13, 1, 1, torch.Generator())
    with pytest.raises(ValueError, match="7 examples per class"):
        sample_classes(labelled_pool(), 1, 5, 2, 5, torch.Generator())


def test_sinusoids_follow_finns_ranges():
    eps = sample_sinusoids(500, 5, 10, torch.Generator().manual_seed(0))
    x = torch.cat([eps.support_x, eps.query_x], 1)
    assert x.min() >= -5 and x.max() <= 5 and eps.support_y.abs().max() <= 5
    assert eps.support_x.shape == (500, 5, 1) and eps.query_y.shape == (500, 10, 1)


@pytest.mark.slow  # decodes 4,840 drawings
@pytest.mark.skipif(not OMNIGLOT.exists(), reason="needs ../shared/data/omniglot")
def test_omniglot_background_is_deduplicated_and_its_split_is_disjoint():
    train, val = omniglot.pools(OMNIGLOT, 14, ["Latin", "Greek"])
    alphabets = lambda pool: {name.split("/")[0] for name in pool.names}  # noqa: E731
    assert alphabets(val) == {"Latin", "Greek"} and not alphabets(train) & alphabets(val)
    assert train.classes + val.classes == 242 and train.per_class == val.per_class == 20  # Greek and Latin once
    assert len(set(train.names + val.names)) == 242
    assert train.images.shape[2:] == (1, 14, 14) and 0 <= train.images.min() and train.images.max() <= 1


@pytest.mark.skipif(not OMNIGLOT.exists(), reason="needs ../shared/data/omniglot")
def test_lakes_runs_pair_each_training_image_with_its_test_image():
    pool = omniglot.evaluation_pool(OMNIGLOT, 14)
    runs = omniglot.official_runs(pool)
    assert pool.classes == 400 and runs.support_x.shape == (20, 20, 1, 14, 14) and runs.query_x.shape[:2] == (20, 20)
    # a drawing is nearer its own character's other drawing than most others are (sanity of the pairing)
    dist = torch.cdist(runs.query_x[0].flatten(1), runs.support_x[0].flatten(1))
    assert (dist.argmin(1) == runs.query_y[0]).float().mean() > 0.2


def test_a_wrong_omniglot_folder_is_one_line(tmp_path):
    with pytest.raises(UserError, match="cannot be read as a zip archive") as err:
        omniglot.pools(tmp_path, 28, ["Latin"])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override, message", [
    ("model.ensemble=2", "model.ensemble: meta-learning adapts one network per task"),
    ("data.encoder={name: table, categorical: embedding}", "data.encoder.categorical: meta-learning reads"),
])
def test_model_settings_meta_learning_would_drop_are_refused(override, message):
    from hydranet.config import load_config
    from hydranet.meta.setup import build

    with pytest.raises(UserError, match=f"^{message}"):
        build(load_config("sinusoid", [override]))
