"""Training: the loop (`Trainer`), its callbacks, checkpoints and run directories."""

from hydranet.train.run import Run, fit, load_run, resume
from hydranet.train.trainer import Trainer

__all__ = ["Run", "Trainer", "fit", "load_run", "resume"]
