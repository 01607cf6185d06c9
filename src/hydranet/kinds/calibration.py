"""Expected calibration error (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).

Shared by the kinds whose predictions are right or wrong with a confidence (classification, binary).
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15  # equal-width confidence bins over (0, 1], as in Guo et al.


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Σ_b |B_b|/n · |accuracy(B_b) − mean confidence(B_b)| over `bins` equal-width bins of the confidence.

    Bin b holds the confidences in (b/bins, (b+1)/bins], Guo et al.'s reference binning (a confidence of exactly 0
    joins the first bin). Vectorized: the per-bin sums are two bincounts, so the cost is O(n) with no Python loop.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    if confidence.size == 0:
        return float("nan")
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    gap = np.bincount(index, weights=confidence, minlength=bins) - np.bincount(
        index, weights=np.asarray(correct, dtype=np.float64), minlength=bins)
    return float(np.abs(gap).sum() / confidence.size)


def softmax_confidence(scores: np.ndarray) -> np.ndarray:
    """Probability of the top class per row of class scores (N, K), in float64 (float32 rounds confident rows to 1)."""
    scores = np.asarray(scores, dtype=np.float64)
    shifted = scores - scores.max(-1, keepdims=True)
    return 1.0 / np.exp(shifted).sum(-1)  # the top class's exp(0) = 1 over the sum


def sigmoid_confidence(logits: np.ndarray) -> np.ndarray:
    """Probability of the predicted class of a binary logit: σ(|z|) (the positive class when z > 0, else the negative)."""
    return 1.0 / (1.0 + np.exp(-np.abs(np.asarray(logits, dtype=np.float64))))
