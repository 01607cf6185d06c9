"""Self-supervised pretraining of trunks (`hydranet pretrain`) and probes of frozen features (`hydranet probe`)."""

from hydranet.ssl.pretraining import pretrain, resume_pretrain
from hydranet.ssl.probes import probe

__all__ = ["pretrain", "probe", "resume_pretrain"]
