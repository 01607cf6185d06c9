"""Data: sources read examples, `build_dataset` encodes, splits and normalizes them into tensors."""

from hydranet.data.build import build_dataset, to_model_inputs
from hydranet.data.dataset import Dataset, RawData
from hydranet.data.info import DataInfo

__all__ = ["DataInfo", "Dataset", "RawData", "build_dataset", "to_model_inputs"]
