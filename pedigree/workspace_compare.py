"""Comparisons in a workspace: fingerprint views, the independence tests, compare and matrix.

A mixin of :class:`pedigree.workspace.Workspace` (kept apart so that each module stays small):
an argument is an indexed model id, answered from DuckDB and the evidence store, or a checkpoint
folder, read live.  Test results of two indexed models are stored and reused - except in a
read-only workspace (a published snapshot, as the HTTP service opens it), where the tests run
from the stored evidence and nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack, closing
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pedigree.config import Settings
from pedigree.errors import ModelNotFoundError
from pedigree.results import Comparison, PairMatrix
from pedigree.storage.db import ModelRecord, Store
from pedigree.types import Status

if TYPE_CHECKING:
    from pedigree.indexer.independence.inputs import ModelEvidence
    from pedigree.indexer.scoring import FingerprintView
    from pedigree.indexer.sources import TensorSource


class Comparisons:
    """What :class:`Workspace` compares with (its store, recipe version and mode)."""

    settings: Settings
    store: Store
    read_only: bool
    _changed: bool

    @cached_property
    def version(self) -> str:
        """The fingerprint recipe version vectors are stored under."""
        from pedigree.indexer.versions import fingerprint_version  # no torch: answers from the index need only the name

        return fingerprint_version()

    def _indexed(self, ref: str) -> ModelRecord | None:
        record = self.store.get_model(ref)
        return record if record is not None and record.status == Status.INDEXED else None

    def view(self, ref: str) -> FingerprintView:
        """A model by index id, or else by checkpoint folder path (fingerprinted on the fly)."""
        from pedigree.indexer.scoring import FingerprintView
        from pedigree.query.related import view_of

        if self._indexed(ref) is not None:
            return view_of(self.store, ref, self.version)  # from DuckDB: no torch
        from pedigree.indexer.pipeline import fingerprint_source, is_checkpoint_folder

        if is_checkpoint_folder(Path(ref)):
            from pedigree.indexer.local_checkpoint import open_checkpoint

            with open_checkpoint(ref) as source:
                fingerprint = fingerprint_source(source, ModelRecord(id=ref, status=Status.INDEXED))
            return FingerprintView(
                label=ref,
                model=fingerprint.model.numpy(),
                layers=fingerprint.layers.numpy(),
                embedding=fingerprint.embedding.numpy(),
                head=None if fingerprint.head is None else fingerprint.head.numpy(),
            )
        if self.store.get_model(ref) is not None:
            return view_of(self.store, ref, self.version)  # raises with the model's status
        raise ModelNotFoundError(f"{ref!r} is neither an indexed model id nor a checkpoint folder")

    def _source(self, ref: str) -> TensorSource:
        import pedigree.crawler.remote  # noqa: F401 - registers the reader of crawled (http) sources
        from pedigree.indexer.confirm import open_record
        from pedigree.indexer.local_checkpoint import open_checkpoint

        record = self._indexed(ref)
        return open_record(record) if record is not None else open_checkpoint(ref)

    def _model(self, ref: str) -> ModelEvidence:
        """An indexed model's stored evidence, or a checkpoint folder read live."""
        from pedigree.indexer.evidence_store import open_evidence
        from pedigree.indexer.independence.inputs import ModelTensors
        from pedigree.indexer.local_checkpoint import open_checkpoint

        record = self._indexed(ref)
        return open_evidence(self.store, record) if record is not None else ModelTensors(open_checkpoint(ref), ref)

    def tests(self, a: str, b: str, hint: list[tuple[int, int]] | None = None) -> dict[str, Any]:
        """The independence tests for A and B (stored and reused when both are indexed: a stored
        result is answered without loading the test machinery)."""
        from pedigree.indexer.independence.summary import SUITE_VERSION
        from pedigree.storage.relations import stored_result

        record_a, record_b = self._indexed(a), self._indexed(b)
        cached = None
        if record_a is not None and record_b is not None:
            cached = stored_result(self.store, record_a, record_b, SUITE_VERSION)
        if cached is not None:
            cached["flipped"] = cached["tested_as"][0] != a
            return cached
        import pedigree.crawler.remote  # noqa: F401 - registers the reader of crawled (http) sources
        from pedigree.indexer.confirm import report_json, tested_pair
        from pedigree.indexer.independence.suite import run_battery

        if record_a is not None and record_b is not None and self.read_only:
            result = self._tested_read_only(record_a, record_b, hint)
        elif record_a is not None and record_b is not None:
            self._changed = True  # the result is stored
            result = tested_pair(self.store, record_a, record_b, hint=hint)
        else:  # an indexed model answers from its stored evidence; only the folder is read
            with ExitStack() as stack:
                model_a = stack.enter_context(closing(self._model(a)))
                model_b = stack.enter_context(closing(self._model(b)))
                result = report_json(run_battery(model_a, model_b, hint=hint))
                result["tested_as"] = [a, b]
        result["flipped"] = result["tested_as"][0] != a
        return result

    def _tested_read_only(self, a: ModelRecord, b: ModelRecord, hint: list[tuple[int, int]] | None) -> dict[str, Any]:
        """The battery on two indexed models' stored evidence files, not stored (read-only: a
        model whose evidence file is missing is refused rather than captured)."""
        from pedigree.errors import EvidenceMissingError
        from pedigree.indexer.confirm import report_json
        from pedigree.indexer.evidence_store import current_file, open_evidence
        from pedigree.indexer.independence.suite import run_battery

        for record in (a, b):
            if current_file(self.store, record) is None:
                raise EvidenceMissingError(f"{record.id}: no stored evidence to test (read-only index)")
        with closing(open_evidence(self.store, a)) as model_a, closing(open_evidence(self.store, b)) as model_b:
            result = report_json(run_battery(model_a, model_b, hint=hint))
        result["tested_as"] = [a.id, b.id]
        return result

    def _folder(self, ref: str) -> str:
        record = self._indexed(ref)
        return record.source or ref if record is not None else ref

    def activation_test(self, a: str, b: str) -> dict[str, Any]:
        """The robust test on real forward-pass activations (needs ``transformers``)."""
        from pedigree.indexer.independence.activations import activation_test
        from pedigree.indexer.independence.inputs import ModelTensors

        with ExitStack() as stack:
            source_a = stack.enter_context(self._source(a))
            source_b = stack.enter_context(self._source(b))
            return activation_test(
                ModelTensors(source_a, a), ModelTensors(source_b, b), self._folder(a), self._folder(b)
            )

    def compare(self, a: str, b: str, *, tests: bool = True, activations: bool = False) -> Comparison:
        """Fingerprint score and block map of A and B (ids or folders), and their independence tests."""
        from pedigree.query.related import compare_views, with_tests

        comparison = compare_views(self.view(a), self.view(b))
        if not tests:
            return comparison
        hint = [(i, j) for i, j, _ in comparison.layer_map]
        results = self.tests(a, b, hint)
        if activations:
            from pedigree.indexer.independence.logp import log10_bonferroni_min

            results = dict(results, tests=[*results["tests"], self.activation_test(a, b)])
            results["log10_p"] = round(log10_bonferroni_min([t["log10_p"] for t in results["tests"]]), 4)
        return with_tests(comparison, results)

    def matrix(self, model_ids: Sequence[str] | None = None, *, tests: bool = True) -> PairMatrix:
        """All pairwise fingerprint scores (and combined log10 p) among the given models."""
        from pedigree.query.related import matrix

        return matrix(self.store, self.version, model_ids, self.tests if tests else None)
