"""`model.weight_init`: how fresh weights are drawn, per layer's default or as Keras draws them.

PyTorch and Keras start the same architecture differently: PyTorch's conv and linear layers draw weights
and biases from U(±1/√fan_in) (Kaiming-uniform with a = √5), Keras draws weights Glorot-uniform,
U(±√(6 / (fan_in + fan_out))), and starts biases at zero. A model ported from Keras trains like the original
only from the original's starting point, so `glorot` re-draws every conv and linear layer that way.
"""

from __future__ import annotations

from torch import nn

from hydranet.models.ensemble import EnsembleLinear, MemberLinear


def apply_weight_init(model: nn.Module, scheme: str) -> nn.Module:
    """Re-draw conv and linear layers by `scheme` (default: leave each layer's own init); returns the model."""
    if scheme == "glorot":
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear, EnsembleLinear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, MemberLinear):  # each member's (out, in) matrix on its own fans
                for weight in module.weight:
                    nn.init.xavier_uniform_(weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    return model
