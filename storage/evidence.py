"""What the ``evidence`` table says about the evidence store (``indexer.evidence_store`` writes it):
how many indexed models have evidence for their current revision, and how many bytes it takes."""

from __future__ import annotations

from pedigree.storage.db import Store
from pedigree.types import Status


def evidence_summary(store: Store) -> dict[str, int]:
    """{"models": indexed models with evidence of their current revision, "bytes": their total
    size, "missing": indexed models without it (backfilled when their source is reachable)}."""
    row = store.conn.execute(
        """
        SELECT count(e.model_pk), coalesce(sum(e.bytes), 0), count(*) - count(e.model_pk)
        FROM models m LEFT JOIN evidence e ON e.model_pk = m.pk AND e.revision IS NOT DISTINCT FROM m.revision
        WHERE m.status = ?
        """,
        [Status.INDEXED],
    ).fetchone()
    models, size, missing = row if row else (0, 0, 0)
    return {"models": int(models), "bytes": int(size), "missing": int(missing)}
