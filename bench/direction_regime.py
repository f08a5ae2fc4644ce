"""Direction regime of the weight statistics on a zoo's true edges.

    python -m bench.direction_regime [--size full]

For every true parent -> child edge of the zoo, the stored-at-ingest weight statistics
(``indexer.weight_stats``: QK-circuit spectral kurtosis and attention norm, both on the
fingerprint's sampled heads) of parent and child: on how many edges where the statistic changes
does it drop (kurtosis) or grow (norm)?  This is the measurement behind the sign with which the
lineage stage uses each of them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.pipeline import fingerprint_source
from pedigree.indexer.weight_stats import WeightStats
from pedigree.storage.db import ModelRecord

ROOT = Path(__file__).resolve().parent.parent


def stats_of(folder: Path) -> WeightStats:
    record = ModelRecord(id=folder.name, status="indexed")
    with open_checkpoint(folder) as source:
        fingerprint_source(source, record)
    return WeightStats.from_json(record.weight_stats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["small", "full"], default="full")
    args = parser.parse_args(argv)
    zoo = ROOT / "bench" / ".zoo" / args.size
    truth = json.loads((zoo / "truth.json").read_text())
    stats = {model_id: stats_of(zoo / model_id) for model_id in truth}
    rows = {"kurtosis": {"drop": 0, "rise": 0, "same": 0}, "norm": {"grow": 0, "shrink": 0, "same": 0}}
    rises = []
    for child, facts in sorted(truth.items()):
        for parent in facts["parents"]:
            p, c = stats[parent], stats[child]
            dk = (c.qk_kurtosis or 0) - (p.qk_kurtosis or 0)
            rows["kurtosis"]["same" if abs(dk) < 1e-6 else "drop" if dk < 0 else "rise"] += 1
            if dk > 1e-6:
                rises.append(f"{parent} -> {child} ({facts['relation']})")
            dn = (c.attention_norm or 0) - (p.attention_norm or 0)
            rows["norm"][
                "same" if abs(dn) < 1e-9 * max(p.attention_norm or 1, 1) else "grow" if dn > 0 else "shrink"
            ] += 1
    print(json.dumps({"size": args.size, "edges": rows, "kurtosis_rises": rises}, indent=1))


if __name__ == "__main__":
    main()
