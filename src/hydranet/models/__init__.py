"""Models: trunks (shared feature extractors), sharing architectures and the HydraNet module.

`build_model(cfg.model, input_shape, tasks)` is the one entry point the trainer needs.
"""

from hydranet.models.hydranet import HydraNet
from hydranet.models.sharing import build_model

__all__ = ["HydraNet", "build_model"]
