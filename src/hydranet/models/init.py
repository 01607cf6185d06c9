"""Temporary: the old module path of `models.pretrained`, kept only so that train/lifecycle.py (restructured on
the `loop` branch) still imports; delete once it imports `init_from, weights_file` from models.pretrained.
"""

from hydranet.models.pretrained import init_from, weights_file

__all__ = ["init_from", "weights_file"]
