"""Numeric precision of the forward pass: fp32, bf16 autocast, or `auto` (bf16 where the hardware has it).

bf16 autocast keeps fp32 master weights, losses and optimizer state; only matmuls and convolutions run
in bf16. It pays where the chip computes bf16 natively (AVX-512 BF16 or AMX on x86 CPUs, CUDA GPUs from
Ampere on) and costs time where bf16 is emulated, which is why `auto` asks the hardware.
"""

from __future__ import annotations

import contextlib

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 matmuls and convolutions in hardware."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """`train.precision` as it will run on `device`: fp32 or bf16."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """bf16 autocast when `precision` (fp32, bf16 or auto) resolves to bf16 on `device`, else a no-op context."""
    if resolve_precision(precision, device) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
