"""hydranet: multi-task deep learning on PyTorch — one shared trunk, one head per task.

`import hydranet as hn`; `hn.Experiment("quickstart").fit()`; `hn.load(run_dir).predict(...)`.
"""

from importlib import import_module

__version__ = "0.1.0"

# Loaded on first use, so `import hydranet.config` does not pull in training, data and plotting.
_LAZY = {
    "Experiment": "hydranet.api", "Model": "hydranet.api", "load": "hydranet.api",
    "Config": "hydranet.config", "load_config": "hydranet.config", "probe": "hydranet.ssl",
    "UserError": "hydranet.errors", "register": "hydranet.registry",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hydranet' has no attribute {name!r}")
