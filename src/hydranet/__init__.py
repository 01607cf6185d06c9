"""hydranet: multi-task deep learning on PyTorch — one shared trunk, one head per task.

`import hydranet as hn`; `hn.Experiment("quickstart").fit()`; `hn.load(run_dir).predict(...)`.
"""

__version__ = "0.1.0"

from hydranet.api import Experiment, Model, load  # noqa: E402
from hydranet.config import Config, load_config  # noqa: E402
from hydranet.errors import UserError  # noqa: E402
from hydranet.registry import register  # noqa: E402

__all__ = ["Config", "Experiment", "Model", "UserError", "__version__", "load", "load_config", "register"]
