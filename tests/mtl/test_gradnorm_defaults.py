"""GradNorm's published defaults, pinned: α = 1.5 and the task weights' Adam lr = 0.025 (changing either
changes every GradNorm result, so it must be deliberate), and proof that a bare `gradnorm` runs with them.
"""

import torch

from hydranet.config import Config
from hydranet.mtl import build_balancer
from hydranet.mtl.gradnorm import GradNormOptions

ALPHA, LR = 1.5, 0.025
NAMES = ["a", "b", "c"]
RELATIVE = torch.tensor([1.5, 1.0, 0.5])  # r_t: a trains slowest, c fastest (inverse training rates, mean 1)
NORMS = torch.tensor([1.65, 1.05, 0.3])  # |∇_W L_t| at w = 1, mean Ḡ = 1


def test_the_defaults_are_pinned():
    assert GradNormOptions().alpha == ALPHA and GradNormOptions().lr == LR
    assert Config(mtl={"balancer": "gradnorm"}).mtl.balancer.options == GradNormOptions(alpha=ALPHA, lr=LR)


def expected_weights(alpha: float, lr: float) -> torch.Tensor:
    """One update from w = 1 by hand: Adam's first step moves each w_t by lr·sign(∂L_grad/∂w_t), with
    ∂L_grad/∂w_t = sign(G_t − Ḡ·r_t^α)·|∇_W L_t|; then w ← T·w / Σ w."""
    target = NORMS.mean() * RELATIVE.pow(alpha)
    w = 1 - lr * torch.sign(NORMS - target)
    return len(w) * w / w.sum()


def test_a_bare_gradnorm_updates_with_alpha_1_5_and_lr_0_025():
    """The numbers sit where α = 1, 1.5 and 2 move the weights differently (G_a/Ḡ = 1.65 lies between 1.5¹ and
    1.5^1.5, G_c/Ḡ = 0.3 between 0.5² and 0.5^1.5), so the update reveals the α and lr it used."""
    balancer = build_balancer(Config(mtl={"balancer": "gradnorm"}).mtl.balancer, {}, seed=0)
    initial = torch.tensor([2.0, 1.0, 4.0])
    balancer.start(NAMES, initial)
    assert balancer.alpha == ALPHA and balancer.optimizer.param_groups[0]["lr"] == LR
    balancer.update(NORMS, initial * RELATIVE)
    got = balancer.weights.detach()
    torch.testing.assert_close(got, expected_weights(ALPHA, LR), rtol=0, atol=1e-6)
    for other in [(1.0, LR), (2.0, LR), (ALPHA, 2 * LR)]:
        assert not torch.allclose(got, expected_weights(*other), atol=1e-4), f"α, lr = {other} give the same update"
