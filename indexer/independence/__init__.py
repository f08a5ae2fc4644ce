"""Independence tests: calibrated log10 p-values for "these two models share an initialisation".

``logp`` (log-space tails), ``matching`` (linear assignment on cosine), ``statistics`` (the
constrained and robust statistics and their nulls), ``inputs`` (lazy tensor access), ``suite``
(the battery for one pair), ``permtest`` (the generic permutation test).
"""
