"""Freezing and (gradual) unfreezing of the trunk, for fine-tuning a pretrained trunk.

A frozen part gets no gradient (requires_grad off, so the optimizer skips it: no update, no weight
decay) and runs in eval mode, so its BatchNorm statistics and dropout stay fixed too: the features the
heads see are exactly the pretrained ones (a linear probe is `freeze: trunk` with a linear head).
Which parts are frozen is a pure function of the epoch, so a resumed run freezes exactly the same.
"""

from __future__ import annotations

from torch import nn

from hydranet.errors import UserError


def trunk_stages(trunk: nn.Module) -> list[nn.Module]:
    """The trunk's stages (input → output) or the whole trunk as one stage if it offers none."""
    stages = getattr(trunk, "stages", None)
    return list(stages()) if callable(stages) else [trunk]


def frozen_groups(model: nn.Module, freeze: str | list[str]) -> list[nn.Module]:
    """The modules `train.freeze` names, input → output: every trunk stage for `trunk`, else the listed ones."""
    if freeze == "none":
        return []
    stages = trunk_stages(model.trunk)
    if freeze == "trunk":
        return stages
    names = [f"stage{i + 1}" for i in range(len(stages))]
    unknown = [s for s in freeze if s not in names]
    if unknown:
        raise UserError(f"train.freeze: this trunk has no {unknown[0]!r} (stages: {', '.join(names)})")
    return [stages[names.index(s)] for s in sorted(set(freeze), key=names.index)]


class Freezer:
    """Trainer component: keeps `groups` frozen until epoch `unfreeze_at`, then unfreezes them all, or
    with `gradual` one group per epoch from the top (Howard & Ruder 2018)."""

    def __init__(self, groups: list[nn.Module], unfreeze_at: int | None, gradual: bool):
        self.groups, self.unfreeze_at, self.gradual = groups, unfreeze_at, gradual

    def frozen_count(self, epoch: int) -> int:
        """How many groups (from the input side) are frozen during 0-based `epoch`."""
        if self.unfreeze_at is None or epoch + 1 < self.unfreeze_at:
            return len(self.groups)
        if not self.gradual:
            return 0
        return max(0, len(self.groups) - (epoch + 2 - self.unfreeze_at))

    def on_epoch_start(self, trainer) -> None:  # after model.train(): eval mode set here sticks for the epoch
        frozen = self.frozen_count(trainer.epoch)
        for i, group in enumerate(self.groups):
            group.requires_grad_(i >= frozen)
            if i < frozen:
                group.eval()
        # gradient-balancing methods act on the shared parameters that still learn
        trainer.shared = [p for p in trainer.model.shared_parameters() if p.requires_grad]


def make_freezer(model: nn.Module, cfg) -> list[Freezer]:
    """The run's Freezer as a one-element list, or none when `train.freeze` is none."""
    groups = frozen_groups(model, cfg.train.freeze)
    return [Freezer(groups, cfg.train.unfreeze_at, cfg.train.unfreeze_gradual)] if groups else []
