"""Relatedness and lineage of the UNets a workspace has indexed (issue 16, part 5).

``pedigree ingest`` records a diffusers ``UNet2DConditionModel`` folder with the stored status
``unet`` and captures its evidence into the evidence store (``indexer.pipeline_unet``,
``indexer.unet_evidence``).  :func:`unet_graph` reads every indexed UNet's *stored* evidence (the
folder is opened only to backfill a UNet indexed before the store, while it still holds it), runs
the UNet relatedness test on every pair and builds their lineage graph (``indexer.unet_lineage``,
weights only) - ``indexer.pipeline_unet_graph.unet_relations``.  The same families appear in the
main lineage graph (``pedigree lineage``, ``pedigree graph export``), built by
``indexer.lineage.build``.  All pairs are tested: fine for the hundreds of UNets a folder holds,
not for a crawl.
"""

from __future__ import annotations

from pedigree.indexer.pipeline_unet_graph import ALPHA, UNetRelations, unet_relations
from pedigree.storage.db import Store

UNetGraph = UNetRelations  # the graph, every pair's test and the UNets whose evidence is missing


def unet_graph(store: Store, *, alpha: float = ALPHA, mode: str = "weights") -> UNetGraph:
    """Test every pair of indexed UNets on their stored evidence and build their lineage graph
    (module docstring); ``mode`` ``time`` or ``full`` also keeps parents older than children."""
    return unet_relations(store, alpha=alpha, mode=mode)
