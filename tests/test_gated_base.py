"""bench.gated_base: zoo A without its Llama base - what is left out, and what the truth says."""

from __future__ import annotations

import json
from pathlib import Path

from bench.gated_base import BASE, without_base


def test_the_base_and_its_stand_ins_leave_and_its_children_get_a_latent_parent(small_zoo: Path, tmp_path: Path):
    original = json.loads((small_zoo / "truth.json").read_text())
    truth = without_base(small_zoo, tmp_path / "zoo")
    gone = set(original) - set(truth)
    assert gone == {
        BASE,
        "mirror-models/tiny-llama-remix",
        "mirror-models/tiny-llama-spin",
        "quantfolk/tiny-llama-int8",
    }
    assert json.loads((tmp_path / "zoo" / "truth.json").read_text()) == truth
    orphans = {m for m, f in original.items() if f["parents"] == [BASE]} - gone
    assert orphans >= {"testsmith/tiny-llama-tests", "webcrafters/tiny-llama-web", "longrun/tiny-llama-cpt"}
    for model in orphans:
        assert truth[model]["parents"] == [] and truth[model]["latent_parent"] == BASE
    # models whose parents are indexed keep them: a chain below the lost base, a merge of two of its children
    assert truth["asyncio-fans/tiny-llama-tests-async"]["parents"] == ["testsmith/tiny-llama-tests"]
    assert "latent_parent" not in truth["asyncio-fans/tiny-llama-tests-async"]
    merge = "soup-kitchen/tiny-llama-merge"
    assert truth[merge]["parents"] == original[merge]["parents"]
    for model in truth:  # every model is a link to zoo A's own folder, nothing copied
        link = tmp_path / "zoo" / model
        assert link.is_symlink() and link.resolve() == (small_zoo / model).resolve()
        assert (link / "config.json").exists()
    assert not any((tmp_path / "zoo" / m).exists() for m in gone)
