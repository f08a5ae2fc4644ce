"""Which MLP units of a wide block are read and stored: a fixed first block plus canonical units.

A block whose MLP has at most :data:`WHOLE_MLP` units is read and stored whole, so the tests see
every unit of it, as a test on the checkpoint itself would: a unit-permuted copy of a block of
W units shares only about :data:`WIDE_MLP`² / W of its first :data:`WIDE_MLP` units (190 of 256
at W = 344), which cost such pairs most of their power (combined log10 p -46 on the first units
against -578 on every unit, a permuted and a depth-pruned Llama of 344 units), while the whole
block costs at most twice the first-unit sample.  A wider one is sampled, and the sample has up
to two parts:

* **the first units** ``[0, contiguous_units(layer))`` - one range read per matrix; a derivative
  that kept its parent's coordinates (fine-tunes, merges, quantisation) is read at the very same
  units;
* **canonical units** (MLPs wider than :data:`CANONICAL_FROM`): :data:`CANONICAL_UNITS` units
  chosen by *what they are*, not where they sit, so that a unit-permuted (and
  residual-permuted, rescaled) copy stores mostly the same units as its parent.  Gated MLPs keep
  :data:`WIDE_FIRST_UNITS` first units beside them (their rows are read per unit); ungated ones
  (GELU MLPs: GPT-2, BERT, GPT-NeoX, ...) keep their :data:`WIDE_MLP` first units as before and
  add the canonical units - their down projection is read whole anyway (its units are its
  columns), so choosing costs no read, and the canonical units' up rows are single-row reads
  (or come from the whole up matrix where it is stored transposed, GPT-2's Conv1D).  Two
  position-based samples of k units out of W share only about k²/W units under a unit
  permutation (11 of 256 for a 1B-shaped MLP of 5632 units), which is why the permuted children
  of the refresh benchmark went unconfirmed from the stored evidence.

The canonical rule (:func:`residual_dims`, :func:`select_units`):

1. J = the :data:`DOWN_ROWS` residual dimensions with the largest |MLP norm gain| (ties by index).
   A residual permutation permutes the gains with the dimensions, so it permutes J alike.
2. d_i = W_down[J, i] for every unit i: |J| rows of the down projection ([hidden, units], rows
   contiguous in storage), i.e. |J| range reads give a short descriptor of every unit.
3. π_i = max_j |d_ij| / ‖d_i‖₂ (peakedness).  Unchanged by permuting units, by scaling a unit
   (up × s, down ÷ s, any s ≠ 0: gated MLPs preserve the function under it) and by the order of
   J; the :data:`CANONICAL_UNITS` units of largest π are kept (ties by index).

A derivative that drifted keeps most of the set (the fraction is measured in the tests and the
refresh benchmark, not assumed).  Nulls: the rule looks at one model's own weights and treats
units symmetrically, so under θ_A ⊥ θ_B the two models' sets are independent and a test run on
them keeps the null it has on any fixed sample of exchangeable units.  Residual rotations (which
need folded gains) are not cancelled: a rotated copy samples other units, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: this module (and indexer.versions) imports no torch
    from pedigree.indexer.adapters.base import LayerRoles

WHOLE_MLP = 512  # MLPs up to this many units are read and stored whole
WIDE_MLP = 256  # first units kept of a wider MLP
WIDE_FIRST_UNITS = 128  # a wide gated MLP with canonical units keeps only its first units [0, this)
CANONICAL_UNITS = 64  # canonical units kept per wide block (gated or not)
DOWN_ROWS = 16  # residual dimensions (down-projection rows) that describe every unit
CANONICAL_FROM = WIDE_MLP**2 // CANONICAL_UNITS  # 1024: narrower MLPs keep their first WIDE_MLP units only


def canonical_eligible(layer: LayerRoles) -> bool:
    """An MLP wider than :data:`CANONICAL_FROM` units whose down projection is one matrix: gated
    with the down projection stored plainly ([hidden, units], rows contiguous: |J| row reads
    choose the units), or ungated (its down projection is read whole, plain or transposed).  Up to
    that width, the first :data:`WIDE_MLP` units of a unit-permuted copy still share about
    WIDE_MLP² / width >= :data:`CANONICAL_UNITS` units with its parent's - as many as the
    canonical sample would add - so such blocks are kept as before."""
    if layer.mlp_size <= CANONICAL_FROM or layer.down.parts != 1:
        return False
    if layer.gate is None:
        return layer.up.parts == 1
    return not layer.down.transpose


def contiguous_units(layer: LayerRoles) -> int | None:
    """How many first units of the block are read and stored: None for all of them (a block of
    at most :data:`WHOLE_MLP` units), :data:`WIDE_FIRST_UNITS` beside a gated block's canonical
    units, else :data:`WIDE_MLP`."""
    if layer.mlp_size <= WHOLE_MLP:
        return None
    return WIDE_FIRST_UNITS if canonical_eligible(layer) and layer.gate is not None else WIDE_MLP


def residual_dims(gain: np.ndarray, count: int = DOWN_ROWS) -> np.ndarray:
    """J: the ``count`` residual dimensions of largest |gain|, ties by index, sorted ascending
    (the order of J does not matter to :func:`select_units`)."""
    magnitude = np.abs(np.asarray(gain, dtype=np.float64))
    order = np.lexsort((np.arange(len(magnitude)), -magnitude))
    return np.sort(order[: min(count, len(order))])


def select_units(down_rows: np.ndarray, count: int = CANONICAL_UNITS) -> np.ndarray:
    """The ``count`` units of largest peakedness π_i = max_j |d_ij| / ‖d_i‖₂ of their columns in
    ``down_rows`` ([|J|, units]: W_down[J]), ties by index; sorted ascending.  A unit whose
    column is zero has π = 0."""
    d = np.abs(np.asarray(down_rows, dtype=np.float64))
    norms = np.sqrt((d * d).sum(axis=0))
    peak = np.divide(d.max(axis=0), norms, out=np.zeros_like(norms), where=norms > 0)
    order = np.lexsort((np.arange(len(peak)), -peak))
    return np.sort(order[: min(count, len(order))])
