"""Lineage assembly at Hub scale: a synthetic forest of up to 1M models assembled from DuckDB.

    python -m bench.lineage_scale [--sizes 10000 100000 1000000]

No fingerprints: for each size a DuckDB file is filled with what the lineage stage reads -
models (creation time, card, weight statistics), confirmed relations and pair evidence - for a
forest whose lineage is known, then ``build_graph(..., compute_evidence=False)`` assembles it
end to end (families from the confirmed pairs, per-family arborescences, a versioned build written
back).  Each assembly runs in a fresh process so its time and peak memory (max RSS) are its own.

The forest: family sizes drawn from a Zipf law (s = 2.0, capped at 500 - most Hub models have no
relative, a few bases have hundreds); inside a family each model derives from a uniformly chosen
earlier member (so big families are bushy, as on the Hub), with creation times increasing along
the tree; edge lengths are log-normal.  Evidence: all pairs of families up to 48 members, and
for larger families each model's pairs within two tree steps (the build's "nearest members").
Distances are tree-path lengths (training drift adds up) with 5 % noise; the weight statistics
follow the trends measured on the zoo (QK kurtosis drops, attention norm grows along an edge) with
noise; 5 % of leaves are int8-quantized copies.  The recovered edges are scored against the truth
(mode ``time``).  A second, incremental build after adding 0.1 % new models measures how much an
update costs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from bench.report import environment, publish

ALL_PAIRS_UP_TO = 48


def family_sizes(n: int, rng: np.random.Generator) -> list[int]:
    sizes, total = [], 0
    while total < n:
        size = int(min(rng.zipf(2.0), 500, n - total))
        sizes.append(size)
        total += size
    return sizes


def forest(n: int, seed: int = 0) -> dict:
    """Parent index (-1 for roots), family, depth-ordered creation offsets and edge lengths."""
    rng = np.random.default_rng(seed)
    parent = np.full(n, -1, dtype=np.int64)
    family = np.zeros(n, dtype=np.int64)
    edge_length = np.zeros(n)
    start = 0
    for index, size in enumerate(family_sizes(n, rng)):
        family[start : start + size] = index
        for offset in range(1, size):
            parent[start + offset] = start + int(rng.integers(0, offset))
        edge_length[start + 1 : start + size] = rng.lognormal(np.log(0.08), 0.5, size - 1)
        start += size
    return {"parent": parent, "family": family, "edge_length": edge_length}


def _tree_pairs(members: np.ndarray, parent: np.ndarray) -> list[tuple[int, int]]:
    if len(members) <= ALL_PAIRS_UP_TO:
        return [(int(a), int(b)) for i, a in enumerate(members) for b in members[i + 1 :]]
    pairs = set()
    children: dict[int, list[int]] = {}
    for m in members:
        if parent[m] >= 0:
            children.setdefault(int(parent[m]), []).append(int(m))
    for m in map(int, members):
        near = set(children.get(m, []))
        if parent[m] >= 0:
            p = int(parent[m])
            near |= {p, *children.get(p, [])}
            if parent[p] >= 0:
                near.add(int(parent[p]))
        near |= {c for k in children.get(m, []) for c in children.get(k, [])}
        pairs |= {(min(m, o), max(m, o)) for o in near if o != m}
    return sorted(pairs)


def path_distance(a: int, b: int, parent: np.ndarray, length: np.ndarray, depth: np.ndarray) -> float:
    total = 0.0
    while a != b:
        if depth[a] >= depth[b]:
            total, a = total + length[a], int(parent[a])
        else:
            total, b = total + length[b], int(parent[b])
    return total


def populate(db_path: Path, tree: dict, seed: int = 1) -> dict:
    """Write the forest's models, relations and evidence into a fresh pedigree database."""
    from pedigree.indexer.independence.summary import SUITE_VERSION
    from pedigree.storage.db import Store

    rng = np.random.default_rng(seed)
    parent, family, length = tree["parent"], tree["family"], tree["edge_length"]
    n = len(parent)
    depth = np.zeros(n, dtype=np.int64)
    kurtosis, norm = np.zeros(n), np.zeros(n)
    created = np.zeros(n)
    for i in range(n):  # parents precede children
        p = parent[i]
        if p < 0:
            kurtosis[i], norm[i], created[i] = rng.normal(4.0, 1.0), rng.normal(30.0, 5.0), rng.uniform(0, 400)
        else:
            depth[i] = depth[p] + 1
            kurtosis[i] = kurtosis[p] - abs(rng.normal(0.4, 0.3)) * length[i] / 0.08
            norm[i] = norm[p] * (1 + abs(rng.normal(0.01, 0.005)))
            created[i] = created[p] + rng.uniform(0.5, 30)
    has_child = np.zeros(n, dtype=bool)
    has_child[parent[parent >= 0]] = True
    quantized = (~has_child) & (parent >= 0) & (rng.random(n) < 0.05)
    t0 = datetime(2023, 1, 1)
    ids = [f"org{family[i]}/model-{i}" for i in range(n)]
    stats = [
        json.dumps(
            {
                "qk_kurtosis": float(kurtosis[i]),
                "attention_norm": float(norm[i]),
                "int8_grid": 0.99 if quantized[i] else 0.01,
                "layers": 32,
                "hidden": 4096,
                "vocab_rows": 32000,
                "mlp_sizes": [],
            }
        )
        for i in range(n)
    ]
    cards = [
        json.dumps({"base_model": [ids[parent[i]]]} if parent[i] >= 0 and rng.random() < 0.4 else {}) for i in range(n)
    ]
    store = Store(db_path)
    conn = store.conn
    conn.register(
        "new_models",
        {
            "pk": np.arange(1, n + 1, dtype=np.int64),
            "id": np.asarray(ids, dtype=object),
            "revision": np.asarray([f"{i:040x}" for i in range(n)], dtype=object),
            "card": np.asarray(cards, dtype=object),
            "weight_stats": np.asarray(stats, dtype=object),
            "created_at": np.asarray([t0 + timedelta(days=float(c)) for c in created], dtype="datetime64[us]"),
        },
    )
    conn.execute(
        "INSERT INTO models (pk, id, revision, status, card, weight_stats, created_at, indexed_at) "
        "SELECT pk, id, revision, 'indexed', card, weight_stats, created_at, now() FROM new_models"
    )
    conn.unregister("new_models")
    rows_a, rows_b, dist = [], [], []
    order = np.argsort(family, kind="stable")
    bounds = np.flatnonzero(np.diff(family[order])) + 1
    for members in np.split(order, bounds):
        for a, b in _tree_pairs(members, parent):
            rows_a.append(a)
            rows_b.append(b)
            dist.append(path_distance(a, b, parent, length, depth))
    a = np.asarray(rows_a, dtype=np.int64) + 1
    b = np.asarray(rows_b, dtype=np.int64) + 1
    d = np.asarray(dist) * rng.normal(1.0, 0.05, len(dist))
    conn.register("new_pairs", {"a": a, "b": b, "d": d, "p": -rng.uniform(15, 300, len(a))})
    conn.execute(
        "INSERT INTO relations SELECT a, b, ?, NULL, NULL, p, p, true, NULL, now() FROM new_pairs", [SUITE_VERSION]
    )
    conn.execute("INSERT INTO pair_evidence SELECT a, b, NULL, NULL, d, true, NULL, d, 1.0, NULL, NULL FROM new_pairs")
    conn.unregister("new_pairs")
    store.close()
    return {
        "models": n,
        "families": int(family.max()) + 1,
        "pairs": len(a),
        "largest_family": int(np.bincount(family).max()),
    }


def _assemble(db_path: str, queue) -> None:
    from pedigree.indexer.fingerprint import fingerprint_version
    from pedigree.indexer.lineage.build import build_graph
    from pedigree.storage.db import Store

    store = Store(Path(db_path))
    started = time.perf_counter()
    summary = build_graph(store, fingerprint_version(), mode="time", compute_evidence=False)
    seconds = time.perf_counter() - started
    edges = store.conn.execute(
        "SELECT e.parent, e.child FROM lineage_edges e JOIN build_families b ON b.family_id = e.family_id WHERE "
        "b.build_id = ?",
        [summary.build_id],
    ).fetchall()
    store.close()
    queue.put(
        {
            "seconds": round(seconds, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "summary": summary,
            "edges": edges,
        }
    )


def assemble_in_child(db_path: Path) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_assemble, args=(str(db_path), queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def edge_f1(tree: dict, edges: list[tuple[int, int]]) -> float:
    truth = {(int(p) + 1, c + 1) for c, p in enumerate(tree["parent"]) if p >= 0}
    found = set(map(tuple, edges))
    correct = len(truth & found)
    return round(2 * correct / (len(truth) + len(found)), 4) if truth or found else 1.0


def add_models(db_path: Path, tree: dict, count: int, seed: int = 2) -> None:
    """``count`` new fine-tunes of random existing models (the nightly increment)."""
    from pedigree.indexer.independence.summary import SUITE_VERSION
    from pedigree.storage.db import Store

    rng = np.random.default_rng(seed)
    n = len(tree["parent"])
    store = Store(db_path)
    chosen = rng.choice(n, count, replace=False) + 1
    for offset, base in enumerate(chosen):
        pk = n + offset + 1
        store.conn.execute(
            "INSERT INTO models (pk, id, revision, status, card, weight_stats, created_at, indexed_at) "
            "SELECT ?, ?, 'new', 'indexed', '{}', weight_stats, created_at + INTERVAL 40 DAY, now() FROM models "
            "WHERE pk = ?",
            [pk, f"new/model-{pk}", int(base)],
        )
        store.conn.execute(
            "INSERT INTO relations VALUES (?, ?, ?, NULL, NULL, -40, -40, true, NULL, now())",
            [int(base), pk, SUITE_VERSION],
        )
        store.conn.execute(
            "INSERT INTO pair_evidence VALUES (?, ?, NULL, NULL, 0.08, true, NULL, 0.08, 1.0, NULL, NULL)",
            [int(base), pk],
        )
    store.close()


def run(sizes: list[int]) -> dict:
    result = {"runs": []}
    for n in sizes:
        with tempfile.TemporaryDirectory() as folder:
            db_path = Path(folder) / "pedigree.duckdb"
            started = time.perf_counter()
            tree = forest(n)
            shape = populate(db_path, tree)
            generated = time.perf_counter() - started
            first = assemble_in_child(db_path)
            add_models(db_path, tree, max(n // 1000, 1))
            second = assemble_in_child(db_path)
            row = {
                **shape,
                "generate_seconds": round(generated, 1),
                "assemble_seconds": first["seconds"],
                "peak_rss_mb": first["peak_rss_mb"],
                "edges": first["summary"]["edges"],
                "edge_f1_time_mode": edge_f1(tree, first["edges"]),
                "incremental": {
                    "new_models": max(n // 1000, 1),
                    "seconds": second["seconds"],
                    "rebuilt": second["summary"]["rebuilt"],
                    "reused": second["summary"]["reused"],
                    "peak_rss_mb": second["peak_rss_mb"],
                },
            }
            print(json.dumps(row), flush=True)
            result["runs"].append(row)
    runs = result["runs"]
    for row in runs:
        row["seconds_per_1k_models"] = round(1000 * row["assemble_seconds"] / row["models"], 3)
    result["environment"] = environment()
    return result


def markdown(result: dict, command: str) -> str:
    lines = [
        "## Lineage assembly at scale (synthetic forest)",
        "",
        f"Command: `{command}`  (commit {result['environment']['commit']}, {result['environment']['date']}, "
        f"{result['environment'].get('cpus', '?')} CPUs)",
        "",
        "Fingerprint-free forest (Zipf family sizes, bushy trees, evidence and weight statistics generated with "
        "known lineage), "
        "assembled end to end from DuckDB by `build_graph(mode='time', compute_evidence=False)` in a fresh process. "
        "Incremental: 0.1 % new models, then the next build.",
        "",
        "| models | families | largest family | evidence pairs | assembly s | s per 1k models | peak RSS MB | edge "
        "F1 | incremental: new models / families rebuilt / s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        inc = r["incremental"]
        lines.append(
            f"| {r['models']:,} | {r['families']:,} | {r['largest_family']} | {r['pairs']:,} | "
            f"**{r['assemble_seconds']}** | "
            f"{r['seconds_per_1k_models']} | {r['peak_rss_mb']:,} | {r['edge_f1_time_mode']} | {inc['new_models']} / "
            f"{inc['rebuilt']} / {inc['seconds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.sizes)
    command = "python -m bench.lineage_scale --sizes " + " ".join(map(str, args.sizes))
    publish("lineage-scale", result, markdown(result, command), report=not args.no_report)


if __name__ == "__main__":
    main()
