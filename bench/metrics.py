"""Detection metrics over scored pairs (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def roc_auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Area under the ROC curve = P(score of a random positive > a random negative), ties count 1/2.

    The Mann-Whitney U statistic divided by |P|·|N|.
    """
    pos, neg = np.asarray(positives, float), np.asarray(negatives, float)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("need at least one positive and one negative score")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def tpr_at_fpr(positives: Sequence[float], negatives: Sequence[float], fpr: float = 0.01) -> tuple[float, float]:
    """(TPR, threshold) for the lowest threshold whose false-positive rate is at most ``fpr``.

    A pair is called positive when its score is strictly above the threshold; the threshold is
    the (k+1)-th highest negative score with k = floor(fpr · |N|), so at most k negatives pass.
    """
    pos = np.asarray(positives, float)
    neg = np.sort(np.asarray(negatives, float))[::-1]
    k = int(np.floor(fpr * len(neg)))
    threshold = float(neg[min(k, len(neg) - 1)])
    return float((pos > threshold).mean()), threshold
