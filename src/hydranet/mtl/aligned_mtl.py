"""Aligned-MTL (Senushkin, Patakin, Kuznetsov & Konushin, 2023, "Independent Component Alignment for Multi-Task
Learning", CVPR): the task gradients made orthogonal and of equal norm (condition number 1), then summed.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from torch import Tensor, nn

from hydranet.mtl.gradients import GradientOptions
from hydranet.mtl.gram import GramMethod
from hydranet.registry import register


def balance_matrix(gram: np.ndarray, scale: str = "min") -> np.ndarray:
    """(T, T) B with B·G·B = σ²·(projector on G's range): the rows Σ_k B_ik g_k have one singular value σ.

    G = V Λ Vᵀ (Λ: the r eigenvalues above round-off), B = σ·V Λ^(-½) Vᵀ, σ² the smallest kept eigenvalue
    (`min`, the paper's Algorithm 1), their median or their mean (`rmse`, the authors' code). A zero Gram
    matrix (no gradient at all) gives the identity.
    """
    eigenvalues, vectors = np.linalg.eigh(np.asarray(gram, dtype=np.float64))
    keep = eigenvalues > eigenvalues.max(initial=0.0) * len(gram) * np.finfo(np.float64).eps
    if not keep.any():
        return np.eye(len(gram))
    lam, v = eigenvalues[keep], vectors[:, keep]
    sigma2 = {"min": lam.min(), "median": np.median(lam), "rmse": lam.mean()}[scale]
    return np.sqrt(sigma2) * (v / np.sqrt(lam)) @ v.T


class AlignedMTLOptions(GradientOptions):
    """Options of `mtl.balancer: {name: aligned_mtl, …}`."""

    scale: Literal["min", "median", "rmse"] = Field("min", description="singular value the aligned gradients share: the smallest of the task gradients' (min, the paper), their median, or their mean eigenvalue's root (rmse, the authors' code)")


@register("balancer", "aligned_mtl", options=AlignedMTLOptions)
class AlignedMTL(GramMethod):
    """Shared parameters get Σ_i ĝ_i with ĝ_i = Σ_k B_ik g_k the aligned gradients (orthogonal, equal norms:
    the matrix of the ĝ has condition number 1, so no task dominates and none conflicts); task-specific ones
    their own gradient (weight 1).

    The sum (torchjd's default weights 1/T give the mean) keeps `equal`'s scale: identical task gradients g give
    T·g. B comes from the (T, T) Gram matrix's eigendecomposition on the CPU, so each step syncs once.
    Returned weights: each term's coefficient in the shared gradient.
    """

    def __init__(self, options: AlignedMTLOptions, tasks: dict, seed: int):
        self.scale, self.level = options.scale, options.gradients

    def backward(self, losses: dict[str, Tensor], shared_params: list[nn.Parameter]) -> dict[str, float]:
        # Σ_i ĝ_i = Σ_k (Σ_i B_ik) g_k
        return self.gram_backward(losses, shared_params, lambda gram: balance_matrix(gram, self.scale).sum(axis=0))
