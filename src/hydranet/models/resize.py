"""A model at the layer widths structured pruning left (`model.pruned` in the config): the state-dict tensors it
lists get their recorded shapes, so training, resuming and loading a pruned run all build the model that fits it.
"""

from __future__ import annotations

import torch
from torch import nn

from hydranet.errors import UserError

FIELD = "model.pruned"


def resize(model: nn.Module, shapes: dict[str, list[int]]) -> nn.Module:
    """Give each listed parameter or buffer (by state-dict key) its recorded shape, update the layer attributes that
    follow from it (in/out features, channels, BatchNorm's num_features) and re-initialize each resized layer, as
    a fresh one of that width would be; a key that is not a tensor of the model is a one-line error."""
    if not shapes:
        return model
    resized: dict[str, nn.Module] = {}
    for key, shape in shapes.items():
        owner, _, name = key.rpartition(".")
        module = _module(model, owner, key)
        old = getattr(module, name, None)
        if not isinstance(old, torch.Tensor) or len(shape) != old.ndim:
            raise UserError(f"{FIELD}: {key} is not a {len(shape)}-dimensional tensor of the model the config builds")
        new = torch.empty(shape, dtype=old.dtype, device=old.device)
        if isinstance(old, nn.Parameter):
            setattr(module, name, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            module.register_buffer(name, new)
        resized[owner] = module
    for module in resized.values():
        _match_attributes(module)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    _match_trunk_width(model)
    return model


def _module(model: nn.Module, owner: str, key: str) -> nn.Module:
    try:
        return model.get_submodule(owner)
    except AttributeError:
        raise UserError(f"{FIELD}: {key} is not a tensor of the model the config builds") from None


def _match_attributes(module: nn.Module) -> None:
    """The width attributes a layer's forward or repr read, from its resized weight."""
    weight = getattr(module, "weight", None)
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = weight.shape
    elif isinstance(module, nn.modules.conv._ConvNd):
        module.out_channels, module.in_channels = weight.shape[0], weight.shape[1] * module.groups
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        module.num_features = (weight if weight is not None else module.running_mean).shape[0]
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = tuple(weight.shape)


def _match_trunk_width(model: nn.Module) -> None:
    """A trunk's `out_dim` (what new heads or probes are sized by) is the width its heads now read."""
    trunk, heads = getattr(model, "trunk", None), getattr(model, "heads", None)
    if trunk is None or heads is None or not isinstance(getattr(trunk, "out_dim", None), int):
        return
    first = next((m for head in heads.values() for m in head.modules() if isinstance(m, nn.Linear)), None)
    if first is not None:
        trunk.out_dim = first.in_features


def changed_shapes(model: nn.Module, reference: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    """The state-dict tensors of `model` whose shapes differ from `reference` (the config's unpruned model):
    what `model.pruned` records."""
    return {key: list(value.shape) for key, value in model.state_dict().items()
            if key in reference and tuple(value.shape) != tuple(reference[key].shape)}
