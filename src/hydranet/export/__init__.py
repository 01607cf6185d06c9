"""Export: a trained run as an ONNX model plus the JSON that turns raw inputs into its input and its outputs into
`predict`'s columns, checked against PyTorch with ONNX Runtime (`hydranet export`, `hn.load(run).export()`).
"""

from hydranet.export.run import export_run

__all__ = ["export_run"]
