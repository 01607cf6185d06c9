"""Compression: profile what a trained model costs, prune it (unstructured, structured, gradual) and quantize
its ONNX export to int8 (`hydranet profile`, `hydranet compress`).
"""
