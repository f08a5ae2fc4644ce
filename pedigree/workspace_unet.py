"""Relatedness and lineage of the UNets a workspace has indexed (issue 16, part 5).

``pedigree ingest`` records a diffusers ``UNet2DConditionModel`` folder with the stored status
``unet`` (``indexer.pipeline_unet``); the LM lineage build does not take UNets.  :func:`unet_graph`
reads every indexed UNet's evidence from its recorded folder (``indexer.unet``), runs the UNet
relatedness test on every pair and builds their lineage graph (``indexer.unet_lineage``, weights
only).  All pairs are tested: fine for the hundreds of UNets a folder holds, not for a crawl.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import networkx as nx

from pedigree.errors import PedigreeError
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.pipeline_unet import UNET_STATUS, unet_folder
from pedigree.indexer.unet import UNetEvidence, unet_evidence, unet_test
from pedigree.indexer.unet_lineage import unet_lineage
from pedigree.storage.db import Store


@dataclass(frozen=True)
class UNetGraph:
    """The UNets' lineage graph, every pair's test and the UNets whose folder could not be read."""

    graph: nx.DiGraph
    tests: dict[frozenset[str], dict[str, Any]]
    unreadable: dict[str, str]


def unet_graph(store: Store, *, alpha: float = 0.01) -> UNetGraph:
    """Test every pair of indexed UNets and build their lineage graph (module docstring)."""
    evidence: dict[str, UNetEvidence] = {}
    unreadable: dict[str, str] = {}
    for record in store.models(UNET_STATUS):
        folder = unet_folder(record.source) if record.source else None
        if folder is None:
            unreadable[record.id] = "its recorded folder holds no UNet any more"
            continue
        try:
            with open_checkpoint(folder) as source:
                evidence[record.id] = unet_evidence(source, record.id)
        except PedigreeError as error:
            unreadable[record.id] = str(error)
    tests = {frozenset((a, b)): unet_test(evidence[a], evidence[b]) for a, b in combinations(sorted(evidence), 2)}
    return UNetGraph(unet_lineage(evidence, tests, alpha=alpha), tests, unreadable)
