from bench.metrics import roc_auc, tpr_at_fpr


def test_roc_auc_counts_ties_as_half():
    assert roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert roc_auc([0.5], [0.5]) == 0.5
    assert roc_auc([0.1], [0.9]) == 0.0


def test_tpr_at_fpr_allows_at_most_the_allowed_false_positives():
    negatives = [i / 1000 for i in range(200)]  # 200 negatives: 1% allows 2 above the threshold
    tpr, threshold = tpr_at_fpr([0.198, 0.5, 0.05], negatives, 0.01)
    assert threshold == 0.197 and tpr == 2 / 3
    assert tpr_at_fpr([1.0], [0.0, 0.5], 0.01) == (1.0, 0.5)
