"""Embedding-free block signatures and the embedding-free independence test (``block_units``).

Invariance: every function-preserving transform of the zoo (``pedigree.zoo.transforms``) leaves
each block's unit descriptors (as a set) and signature unchanged.  Separation: fine-tunes keep
their blocks' signatures above the noise bar, independently trained roots stay below it.  And a
passthrough frankenmerge built here from two independent roots - blocks 0-1 of
llama-lab/tiny-llama-s1, blocks 2-3, embedding, final norm and head of llama-lab/tiny-llama-s2 -
is proposed and confirmed related to both roots and to s1's fine-tunes (its cousins), which the
token-space fingerprint cannot see, while unrelated pairs are not confirmed.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.block_signatures import FRANKEN, S1, S2, make_frankenmerge
from pedigree.indexer.adapters import MatrixLoader, roles_for
from pedigree.indexer.block_signatures import (
    DESCRIPTOR_SIZE,
    PROPOSAL_BAR,
    SIGNATURE_BAR,
    SIGNATURE_DIM,
    block_signature_alignment,
    block_signatures,
    read_block_rows,
    unit_descriptors,
)
from pedigree.indexer.fingerprint import fingerprint_version
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.independence.logp import log10_spearman_sf
from pedigree.indexer.independence.statistics import block_units_stat
from pedigree.indexer.independence.suite import run_battery
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.sources import StateDictSource
from pedigree.indexer.versions import block_signature_version
from pedigree.zoo.transforms import available_kinds, random_function_preserving

S1_TUNES = ("testsmith/tiny-llama-tests", "webcrafters/tiny-llama-web")
S2_TUNE = "copycat/tiny-llama-s2-tests"
TEXT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt")
ROOTS = {"llama": S1, "qwen2": "qwen-lab/tiny-qwen2", "gpt2": "gpt-lab/tiny-gpt2", "gpt_neox": "neox-lab/tiny-neox"}
ROOTS["bert"] = "bert-lab/tiny-bert"


def signatures_of(folder: Path) -> np.ndarray:
    with open_checkpoint(folder) as source:
        roles = roles_for(source.read_json("config.json"), source.tensors())
        return block_signatures(MatrixLoader(source), roles)


def load(folder: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, str]]:
    with open_checkpoint(folder) as source:
        state = {name: source.read(name).float() for name in source.tensors()}
        texts = {name: text for name in TEXT_FILES if (text := source.read_text(name)) is not None}
    return json.loads(texts["config.json"]), state, texts


def descriptors_and_signatures(state: dict[str, torch.Tensor], texts: dict[str, str]):
    source = StateDictSource(state, texts)
    roles = roles_for(json.loads(texts["config.json"]), source.tensors())
    loader = MatrixLoader(source)
    descriptors = [unit_descriptors(read_block_rows(loader, roles, layer)).numpy() for layer in roles.layers]
    return descriptors, block_signatures(loader, roles)


@pytest.fixture(scope="module")
def franken(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_frankenmerge(small_zoo, tmp_path_factory.mktemp("franken"))


@pytest.fixture(scope="module")
def sigs(small_zoo: Path, truth: dict, franken: Path) -> dict[str, np.ndarray]:
    out = {model: signatures_of(small_zoo / model) for model in truth}
    out[FRANKEN] = signatures_of(franken)
    return out


def test_signatures_are_unit_vectors_of_fixed_size(sigs):
    for model, vectors in sigs.items():
        assert vectors.shape[1] == SIGNATURE_DIM and vectors.dtype == np.float32, model
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5), model
    assert block_signature_version() in fingerprint_version()  # a recipe change re-indexes


@pytest.mark.parametrize("model_type", sorted(ROOTS))
def test_every_function_preserving_transform_leaves_descriptors_and_signatures_unchanged(small_zoo, model_type):
    config, state, texts = load(small_zoo / ROOTS[model_type])
    before, signatures = descriptors_and_signatures(state, texts)
    kinds = available_kinds(config)
    assert {"residual_permutation", "mlp_permutation", "head_permutation", "vo_maps", "qk_maps"} <= set(kinds)
    for index, kind in enumerate([*[[k] for k in kinds], list(kinds)]):
        _, transformed = random_function_preserving(config, state, seed=index + 1, kinds=kind)
        after, moved = descriptors_and_signatures(transformed, texts)
        for block, (x, y) in enumerate(zip(before, after)):
            assert x.shape == y.shape == (x.shape[0], DESCRIPTOR_SIZE)
            # the same set of units: permuted rows, so compare each descriptor's sorted values
            scale = np.abs(x).max(axis=0) + 1e-12
            gap = np.abs(np.sort(x, axis=0) - np.sort(y, axis=0)).max(axis=0) / scale
            assert gap.max() < 1e-4, (model_type, kind, block, gap.max())
        cosines = (signatures * moved).sum(axis=1)
        assert cosines.min() > 0.999, (model_type, kind, cosines)


def test_derivatives_match_and_independent_roots_do_not(sigs, truth):
    cosines = []
    for child, facts in truth.items():
        for parent in facts["parents"]:
            if child == "longrun/tiny-llama-cpt" or len(sigs[child]) != len(sigs[parent]):
                continue  # continued pre-training moves every block far (see the benchmark); depth changed
            pair = (sigs[child] * sigs[parent]).sum(axis=1)
            reinit = facts["notes"].get("reinitialised_mlp_layer")
            if reinit is not None:  # a fresh MLP is a different block
                assert pair[reinit] < PROPOSAL_BAR, (child, pair)
            cosines += [(float(c), child, i) for i, c in enumerate(pair) if i != reinit]
    assert min(cosines)[0] > PROPOSAL_BAR, min(cosines)  # every derived block is proposed
    assert np.mean([c > SIGNATURE_BAR for c, _, _ in cosines]) > 0.9  # and almost all are mapped
    roots = sorted(m for m, f in truth.items() if f["relation"] == "root")
    for i, a in enumerate(roots):
        for b in roots[i + 1 :]:
            assert float((sigs[a] @ sigs[b].T).max()) < SIGNATURE_BAR, (a, b)


def test_alignment_maps_the_frankenmerge_blocks_to_their_sources(sigs):
    assert [(i, j) for i, j, _ in block_signature_alignment(sigs[FRANKEN], sigs[S1])] == [(0, 0), (1, 1)]
    assert [(i, j) for i, j, _ in block_signature_alignment(sigs[FRANKEN], sigs[S2])] == [(2, 2), (3, 3)]
    for tune in S1_TUNES:  # cousins: s1's fine-tunes share blocks 0-1 with the frankenmerge
        assert [(i, j) for i, j, _ in block_signature_alignment(sigs[FRANKEN], sigs[tune])] == [(0, 0), (1, 1)]
    assert [(i, j) for i, j, _ in block_signature_alignment(sigs[FRANKEN], sigs[S2_TUNE])] == [(2, 2), (3, 3)]
    assert block_signature_alignment(sigs[S1], sigs[S2]) == []
    # many-to-one: a model repeating a block maps both copies to it
    repeated = np.stack([sigs[S1][0], sigs[S1][1], sigs[S1][1]])
    assert [(i, j) for i, j, _ in block_signature_alignment(repeated, sigs[S1])] == [(0, 0), (1, 1), (2, 1)]
    assert block_signature_alignment(np.zeros((0, SIGNATURE_DIM)), sigs[S1]) == []


def test_block_units_test_sees_transplanted_blocks_and_not_independent_ones(small_zoo, franken):
    models = {m: ModelTensors(open_checkpoint(small_zoo / m), m) for m in (S1, S2, *S1_TUNES, S2_TUNE)}
    models[FRANKEN] = ModelTensors(open_checkpoint(franken), FRANKEN)
    for cousin, blocks in ((S1, (0, 1)), (S1_TUNES[0], (0, 1)), (S2_TUNE, (2, 3))):
        for block in range(4):
            stat = block_units_stat(
                models[FRANKEN].unit_descriptors(block), models[cousin].unit_descriptors(block), layers=(block, block)
            )
            assert math.isfinite(stat.log10_p)
            if block in blocks:
                assert stat.log10_p < -12, (cousin, block, stat)
            else:
                assert stat.log10_p > -6, (cousin, block, stat)
    report = run_battery(models[FRANKEN], models[S1_TUNES[1]])
    test = report.test("block_units")
    assert test is not None and test.log10_p < -12 and report.log10_p < -12
    assert {(i, j) for i, j, _ in report.layer_map} >= {(0, 0), (1, 1)}
    localized = np.array(test.detail["localized"])
    assert localized.shape == (4, 4) and localized[0, 0] < -12 and localized[2:, :].min() > -6
    independent = run_battery(models[S1], models[S2])
    assert independent.test("block_units").log10_p > -3  # type: ignore[union-attr]
    # the p-value is never 0: a perfect match of n units is floored at 1/n!
    assert log10_spearman_sf(1.0, 176) > -400


def test_ingest_proposes_and_confirms_a_frankenmerge_through_its_blocks(small_zoo, franken, tmp_path):
    from pedigree import Workspace, load_settings
    from pedigree.indexer.confirm import block_candidates, default_indexes

    folder = tmp_path / "models"
    chosen = [S1, S2, *S1_TUNES, S2_TUNE, "distill-works/tiny-llama-distilled", "gpt-lab/tiny-gpt2"]
    for model in chosen:
        shutil.copytree(small_zoo / model, folder / model)
    shutil.copytree(franken, folder / FRANKEN)
    with Workspace(load_settings(tmp_path / "home")) as ws:
        result = ws.ingest(folder)
        assert result.counts["indexed"] == len(chosen) + 1
        store = ws.store
        record = store.get_model(FRANKEN)
        assert record is not None and record.pk is not None
        rows = [r for r in store.vectors_of(record.pk, ws.version) if r.kind == "block_sig"]
        assert sorted(r.layer for r in rows) == [0, 1, 2, 3]
        proposed = dict(block_candidates(store, default_indexes(store), FRANKEN))
        assert {S1, S2, *S1_TUNES, S2_TUNE} <= set(proposed), proposed
        assert [(i, j) for i, j, _ in proposed[S1]] == [(0, 0), (1, 1)]
        decided = {frozenset((c.a, c.b)): c for c in result.confirmations}
        for other in (S1, S2, *S1_TUNES, S2_TUNE):
            assert frozenset((FRANKEN, other)) in decided, other  # proposed and tested
        # the block_units test still sees the transplanted blocks (reported for every proposed pair),
        # but it no longer decides confirmation: its null failed on the full zoos (suite docstring)
        from pedigree.indexer.confirm import tested_pair

        for other in (S1, *S1_TUNES):
            report = tested_pair(store, store.get_model(FRANKEN), store.get_model(other))
            block = next(t for t in report["tests"] if t["name"] == "block_units")
            assert block["log10_p"] < -12, (other, block["log10_p"])
        for a, b in ((S1, S2), (S1, "distill-works/tiny-llama-distilled"), (FRANKEN, "gpt-lab/tiny-gpt2")):
            pair = decided.get(frozenset((a, b)))
            assert pair is None or not pair.confirmed, pair
