"""Bytes a ``pedigree refresh`` reads from the Hub, with the evidence store (issue 13).

    python -m bench.refresh_bytes --children 2 8

A family of 1B-shaped bf16 Llama checkpoints (``bench.crawl``'s "1b" shape: 22 blocks, hidden 2048,
MLP 5632, vocab 32000, two shards; ``bench.synthetic_llama``) is built once under ``--work``
(default ``bench/.zoo/refresh-bytes``, git-ignored; a larger N reuses the models of a smaller one):

- ``synthetic/llama-1b-base`` (seed 1);
- ``synthetic/llama-1b-ft<k>``, k = 1..N: the base + a fine-tuning drift of its own (5 % of each
  tensor's std, seeded by k).  Odd k: a plain fine-tune (same coordinates); even k: then
  re-parametrised by the existing child transform (``ChildOf``: residual stream permuted, every
  block's MLP units permuted and rescaled).  ``ChildOf`` seeds its drift by the *parent's* seed -
  every child of one base would get the same drift and be a copy of its siblings up to the
  transform - and has no "no transform" option, so the drift is drawn here per child and
  ``ChildOf(drift=0)`` supplies only the transform;
- ``other/llama-1b-unrelated`` (seed 2).

For each N the N + 2 models are served (hard links) by the bundled Hub-compatible server in its
own process on 127.0.0.1 (``bench.remote_hub``; bare loopback), and ``Workspace.refresh`` - what
``pedigree refresh`` runs: listing, range reads, fingerprints, evidence capture, candidate pairs
tested on the stored evidence, lineage graph - runs into a fresh data folder.  Bytes are the
server's own count (body bytes per request, attributed to repo and file - ``/_cdn`` requests carry
the repo they were redirected from).  The request log is split into stages - the requests made
while ``indexer.stored_model.capture`` ran for a model, the rest of the crawl (up to the last
repo's ``on_done``: listing, metadata, fingerprint, block signatures, ingest's prefetches), and
what came after (tests, graph) - every range is mapped onto the safetensors tensors it covers, so
what read the bytes is named, and the distinct bytes ("read once") show what was fetched twice.
Denominator: every file of the repos as served (weights, config, tokenizer, index).  The capture
and the pair test are wrapped once per process (``_instrument``) to mark the capture's requests
and to record why a pair test raised (``refresh`` counts such a pair as tested).

Also reported: the evidence file per model (``evidence`` table) as a fraction of the checkpoint;
the same for a 7B-shaped checkpoint (``bench.speed_tests``' parent, built in ``--dir-7b`` when
missing and the disk allows) and a small-zoo model, captured locally with
``indexer.stored_model.capture``, and on paper for 1M models.

Bars (issue 13): the whole refresh reads <= 3 % of all bytes, every model <= 3 %, and a model's
bytes do not depend on N (O(models), not O(pairs)).  Before the store (main @ 9fec033), N = 2 read
39.6 % (4.0 GB of 10.1 GB), worst model 59.5 %; its crawl phase 1.7 %.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.crawl import SHAPES
from bench.report import ROOT, environment, update_section, write_json

BASE, UNRELATED = "synthetic/llama-1b-base", "other/llama-1b-unrelated"
BASE_SEED, UNRELATED_SEED = 1, 2
DRIFT = 0.05
BAR = 0.03
SAME_TOLERANCE = 0.01  # "the same bytes for N = 2 and N = 8": within 1 % (reported exactly beside it)
SHAPES = {**SHAPES, "tiny": dict(layers=4, hidden=256, heads=4, mlp=688, vocab=32000, layers_per_shard=2)}
OLD: dict[str, Any] = {
    "commit": "9fec033",
    "children": 2,
    "total_fraction": 0.396,
    "total_bytes_read": 4.0e9,
    "total_bytes": 10.1e9,
    "worst_model_fraction": 0.595,
    "crawl_fraction": 0.017,
}
DIR_7B = Path(tempfile.gettempdir()) / "pedigree-7b"  # bench.speed_tests' default: its parent is reused
DISK_MARGIN = 5 * 10**9
LIBRARY = ("indexer", "storage", "crawler", "query", "pedigree")
ROLES = ("embed_tokens", "lm_head", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def child_id(k: int) -> str:
    return f"synthetic/llama-1b-ft{k}"


def permuted(k: int) -> bool:
    return k % 2 == 0


def family(children: int) -> list[str]:
    return [BASE, *(child_id(k) for k in range(1, children + 1)), UNRELATED]


# ---- the checkpoints ---------------------------------------------------------------------------


@contextmanager
def _own_drift(drift_seed: int, drift: float) -> Iterator[None]:
    """``synthetic_llama``'s tensors plus a fine-tuning drift seeded by ``drift_seed`` (each
    tensor: + drift * std * N(0, 1)), while ``write_llama`` runs."""
    import torch

    from bench import synthetic_llama

    original = synthetic_llama._generate

    def generate(name: str, size: tuple[int, ...], seed: int, index: int) -> torch.Tensor:
        tensor = original(name, size, seed, index)
        gen = torch.Generator().manual_seed(drift_seed * 7919 + index + 1)
        return tensor + drift * tensor.std() * torch.randn(tensor.shape, generator=gen)

    synthetic_llama._generate = generate
    try:
        yield
    finally:
        synthetic_llama._generate = original


def _write(folder: Path, model_id: str, shape_name: str) -> None:
    from bench.synthetic_llama import ChildOf, LlamaShape, write_llama

    shape = LlamaShape(**SHAPES[shape_name])
    if model_id == BASE:
        write_llama(folder, shape, seed=BASE_SEED)
    elif model_id == UNRELATED:
        write_llama(folder, shape, seed=UNRELATED_SEED)
    else:
        k = int(model_id.rsplit("ft", 1)[1])
        transform = ChildOf(seed=BASE_SEED, drift=0.0, transform_seed=k) if permuted(k) else None
        with _own_drift(1000 + k, DRIFT):
            write_llama(folder, shape, seed=BASE_SEED, child_of=transform)


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def ensure_models(work: Path, ids: list[str], shape_name: str) -> dict[str, float]:
    """Build the missing checkpoints under ``work/models`` (each written to a ``.partial`` folder,
    then renamed); returns the seconds each new one took."""
    models = work / "models"
    missing = [i for i in ids if not (models / i).is_dir()]
    shape = SHAPES[shape_name]
    layer = 4 * shape["hidden"] ** 2 + 3 * shape["hidden"] * shape["mlp"]
    estimate = 2 * (2 * shape["vocab"] * shape["hidden"] + shape["layers"] * layer)
    free = shutil.disk_usage(work if work.exists() else work.parent).free
    if missing and free < len(missing) * estimate + DISK_MARGIN:
        raise SystemExit(
            f"not enough disk for {len(missing)} checkpoints of {estimate / 1e9:.2f} GB in {work} "
            f"({free / 1e9:.1f} GB free, {DISK_MARGIN / 1e9:g} GB kept free)"
        )
    took = {}
    for model_id in missing:
        final = models / model_id
        partial = final.with_name(final.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        started = time.perf_counter()
        _write(partial, model_id, shape_name)
        partial.rename(final)
        took[model_id] = round(time.perf_counter() - started, 1)
        print(f"wrote {model_id} ({_size(final) / 1e9:.2f} GB) in {took[model_id]:.0f} s", flush=True)
    return took


def hub_root(work: Path, ids: list[str], name: str) -> Path:
    """``work/NAME/ORG/MODEL`` hard-linking the built checkpoints (what the server serves)."""
    root = work / name
    shutil.rmtree(root, ignore_errors=True)
    for model_id in ids:
        source, target = work / "models" / model_id, root / model_id
        target.mkdir(parents=True)
        for file in source.iterdir():
            (target / file.name).hardlink_to(file)
    return root


# ---- what the bytes were -----------------------------------------------------------------------


def tensor_spans(folder: Path) -> dict[str, list[tuple[int, int, str]]]:
    """Per safetensors file: (begin, end, tensor name) in file offsets, the header as ``(header)``."""
    out = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with open(shard, "rb") as handle:
            (n,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(n))
        spans = [(0, 8 + n, "(header)")]
        for name, info in header.items():
            if name != "__metadata__":
                begin, end = info["data_offsets"]
                spans.append((8 + n + begin, 8 + n + end, name))
        out[shard.name] = sorted(spans)
    return out


def role(name: str) -> str:
    if name == "(header)":
        return "safetensors header"
    return next((r for r in ROLES if r in name), "norms")


def _span(record: dict, size: int) -> tuple[int, int]:
    """The file bytes [begin, end) a served GET carried."""
    header = record.get("range")
    first = 0
    if header and header.startswith("bytes="):
        start = header[6:].split(",")[0].split("-")[0].strip()
        first = int(start) if start else max(size - record["body_bytes"], 0)  # a suffix range
    return first, first + record["body_bytes"]


PHASES = ("fingerprint", "capture", "after")


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for begin, end in sorted(spans):
        if out and begin <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((begin, end))
    return out


def _by_role(spans: list[tuple[int, int]], tensors: list[tuple[int, int, str]], into: dict[str, int]) -> None:
    for begin, end in spans:
        for first, last, name in tensors:
            overlap = min(end, last) - max(begin, first)
            if overlap > 0:
                into[role(name)] = into.get(role(name), 0) + overlap


def attribute(log: list[dict], folders: dict[str, Path], crawl_end: int, captures: dict[str, tuple[int, int]]) -> dict:
    """Per model: bytes by stage and tensor role (whole files by name), requests by stage, and the
    distinct bytes (each byte once, however often it was served) by role.  Stages: "capture" = a
    request inside the model's evidence capture (``captures``: first and last request number);
    "fingerprint" = the rest of the crawl (listing, metadata, headers, fingerprint, block
    signatures); "after" = past ``crawl_end`` (tests, graph).  Listing answers are under "(api)"."""
    tensors = {model_id: tensor_spans(folder) for model_id, folder in folders.items()}
    sizes = {model_id: {p.name: p.stat().st_size for p in folder.iterdir()} for model_id, folder in folders.items()}
    out: dict = {}
    served: dict[str, dict[str, list[tuple[int, int]]]] = {}
    for record in log:
        if not record["body_bytes"]:
            continue
        model_id, file = record.get("repo"), record.get("file")
        window = captures.get(model_id or "")
        if record["seq"] > crawl_end:
            phase = "after"
        elif window is not None and window[0] < record["seq"] <= window[1]:
            phase = "capture"
        else:
            phase = "fingerprint"
        entry = out.setdefault(
            model_id or "(api)", {**{p: {} for p in PHASES}, "requests": dict.fromkeys(PHASES, 0), "distinct": {}}
        )
        entry["requests"][phase] += 1
        if model_id not in tensors or file not in tensors[model_id]:
            name = file or "(api)"
            entry[phase][name] = entry[phase].get(name, 0) + record["body_bytes"]
            entry["distinct"][name] = max(entry["distinct"].get(name, 0), record["body_bytes"])
            continue
        span = _span(record, sizes[model_id][file])
        _by_role([span], tensors[model_id][file], entry[phase])
        served.setdefault(model_id, {}).setdefault(file, []).append(span)
    for model_id, files in served.items():
        for file, spans in files.items():
            _by_role(_union(spans), tensors[model_id][file], out[model_id]["distinct"])
    return out


def role_totals(folder: Path) -> dict[str, int]:
    """Bytes of each tensor role in one checkpoint (what a fraction of a role is taken of)."""
    totals: dict[str, int] = {}
    for spans in tensor_spans(folder).values():
        for first, last, name in spans:
            totals[role(name)] = totals.get(role(name), 0) + last - first
    return totals


# ---- one refresh ---------------------------------------------------------------------------------


def _stats(hub: Any, log: bool) -> dict:
    return hub.stats(log=log, timeout=300)


def refresh_run(work: Path, children: int) -> dict:
    from bench import remote_hub
    from bench.remote_hub import RemoteHub
    from pedigree.config import load_settings
    from pedigree.crawler.hub_server.stats import MAX_LOG
    from pedigree.workspace import Workspace

    remote_hub.STARTUP_TIMEOUT = max(remote_hub.STARTUP_TIMEOUT, 3600.0)  # it hashes every served file first
    ids = family(children)
    root = hub_root(work, ids, f"hub-n{children}")
    folders = {model_id: root / model_id for model_id in ids}
    home = work / f"home-n{children}"
    shutil.rmtree(home, ignore_errors=True)
    code = _code_state()
    started = time.perf_counter()
    with RemoteHub(root) as hub:
        server_start = time.perf_counter() - started
        hub.reset_stats()

        def served() -> int:
            return _stats(hub, False)["requests"].get("total", 0)

        marks: list[tuple[str, int, float]] = []  # (repo, requests served so far, seconds) at each repo's end
        pairs: list[str] = []
        probe = _instrument()
        probe.update(served=served, captures={}, failures={})

        def done(state) -> None:
            marks.append((state.repo_id, served(), time.perf_counter()))

        def pair(position: int, total: int, label: str) -> None:
            pairs.append(label)
            print(f"  pair {position}/{total}: {label}", flush=True)

        t0 = time.perf_counter()
        try:
            with Workspace(load_settings(home)) as ws:
                summary = ws.refresh(hub.url, on_done=done, on_pair=pair)
                seconds = time.perf_counter() - t0
                stats = _stats(hub, True)
                db = ws.store.conn
                evidence = dict(
                    db.execute("SELECT m.id, e.bytes FROM evidence e JOIN models m ON m.pk = e.model_pk").fetchall()
                )
                relations = db.execute(
                    "SELECT a.id, b.id, r.log10_p, r.log10_q, r.confirmed FROM relations r "
                    "JOIN models a ON a.pk = r.model_a JOIN models b ON b.pk = r.model_b ORDER BY a.id, b.id"
                ).fetchall()
                parents = {
                    model_id: [
                        {"id": p.id, "relation": p.relation, "confidence": p.confidence}
                        for p in ws.query(model_id).parents
                    ]
                    for model_id in ids
                }
                statuses = {m.id: m.status for m in ws.models()}
        finally:
            captures, failures = probe["captures"], probe["failures"]
            probe.update(served=None, captures={}, failures={})
    crawl_end = marks[-1][1] if marks else 0
    log = stats.get("log", [])
    by_model = attribute(log, folders, crawl_end, captures)
    on_disk = {model_id: _size(folder) for model_id, folder in folders.items()}
    weights = {
        model_id: sum(p.stat().st_size for p in folder.glob("*.safetensors")) for model_id, folder in folders.items()
    }
    total_disk = sum(on_disk.values())
    crawler_count = {r.id: r.bytes_read for r in summary.repos}
    relation_rows = [
        {"a": a, "b": b, "log10_p": round(p, 2), "log10_q": None if q is None else round(q, 2), "confirmed": c}
        for a, b, p, q, c in relations
    ]
    with_base = {next(iter({r["a"], r["b"]} - {BASE})): r for r in relation_rows if BASE in (r["a"], r["b"])}
    models = {}
    for model_id in ids:
        entry = by_model.get(model_id) or {**{p: {} for p in PHASES}, "requests": dict.fromkeys(PHASES, 0)}
        stage = {p: sum(entry[p].values()) for p in PHASES}
        distinct = sum(entry.get("distinct", {}).values())
        totals = role_totals(folders[model_id])

        def roles(counts: dict[str, int], totals: dict[str, int] = totals) -> dict:
            return {
                name: {"bytes": n, "of_role": round(n / totals[name], 5) if totals.get(name) else None}
                for name, n in sorted(counts.items(), key=lambda kv: -kv[1])
            }

        models[model_id] = {
            "kind": _kind(model_id),
            "bytes_on_disk": on_disk[model_id],
            "weights_bytes": weights[model_id],
            "bytes_served": sum(stage.values()),
            "fraction": round(sum(stage.values()) / on_disk[model_id], 5),
            **{f"{p}_bytes": stage[p] for p in PHASES},
            "distinct_bytes": distinct,
            "distinct_fraction": round(distinct / on_disk[model_id], 5),
            "requests": entry["requests"],
            "crawler_bytes_read": crawler_count.get(model_id),
            "by_role": {**{p: roles(entry[p]) for p in PHASES}, "distinct": roles(entry.get("distinct", {}))},
            "evidence_bytes": evidence.get(model_id),
            "evidence_fraction": round(evidence[model_id] / weights[model_id], 5) if model_id in evidence else None,
            "status": statuses.get(model_id),
            "with_base": with_base.get(model_id),
            "with_base_error": failures.get(f"{BASE} ~ {model_id}") or failures.get(f"{model_id} ~ {BASE}"),
            "parents": parents[model_id],
        }
    served_total = stats["bytes_sent"]
    stage_totals = {p: sum(m[f"{p}_bytes"] for m in models.values()) for p in PHASES}
    confirmed = {frozenset((r["a"], r["b"])) for r in relation_rows if r["confirmed"]}
    children_ids = [child_id(k) for k in range(1, children + 1)]
    return {
        "children": children,
        "code": code,
        "models": models,
        "total_bytes_on_disk": total_disk,
        "total_bytes_served": served_total,
        "total_fraction": round(served_total / total_disk, 5),
        "worst_model": max(models, key=lambda m: models[m]["fraction"]),
        "worst_model_fraction": max(m["fraction"] for m in models.values()),
        **{f"{p}_bytes": stage_totals[p] for p in PHASES},
        **{f"{p}_fraction": round(stage_totals[p] / total_disk, 5) for p in PHASES},
        "crawl_fraction": round((served_total - stage_totals["after"]) / total_disk, 5),
        "distinct_bytes": sum(m["distinct_bytes"] for m in models.values()),
        "distinct_fraction": round(sum(m["distinct_bytes"] for m in models.values()) / total_disk, 5),
        "api_bytes": sum(sum(by_model.get("(api)", {}).get(p, {}).values()) for p in PHASES),
        "requests": stats["requests"],
        "log_complete": len(log) == stats["requests"].get("total", 0) and len(log) < MAX_LOG,
        "refresh_seconds": round(seconds, 1),
        "crawl_seconds": round(marks[-1][2] - t0, 1) if marks else None,
        "server_start_seconds": round(server_start, 1),
        "counts": summary.counts,
        "errors": [e.to_json() for e in summary.errors],
        "pairs_tested": pairs,
        "pairs_failed": failures,
        "relations": relation_rows,
        "children_tested_with_base": all(c in with_base for c in children_ids),
        "children_confirmed": {c: bool(with_base.get(c, {}).get("confirmed")) for c in children_ids},
        "all_children_confirmed": all(with_base.get(c, {}).get("confirmed") for c in children_ids),
        "unrelated_confirmed_with": sorted(next(iter(p - {UNRELATED})) for p in confirmed if UNRELATED in p),
        "children_with_base_as_parent": {c: any(p["id"] == BASE for p in models[c]["parents"]) for c in children_ids},
    }


_PROBE: dict[str, Any] = {}  # the refresh under way: "served" (requests so far), "captures", "failures"


def _instrument() -> dict[str, Any]:
    """Wrap, once per process, the evidence capture (its window in the server's log: what it
    read) and the pair test (why a pair has no result: ``refresh`` does not say).  Modules that
    import ``tested_pair`` by name get the wrapper too; the wrappers write into :data:`_PROBE`."""
    import sys

    from pedigree.indexer import confirm, evidence_store

    if _PROBE.get("installed"):
        return _PROBE
    capture, tested_pair = evidence_store.capture, confirm.tested_pair

    def timed_capture(model, *args, **kwargs):
        before = _PROBE["served"]() if _PROBE.get("served") else 0
        try:
            return capture(model, *args, **kwargs)
        finally:
            if _PROBE.get("served"):
                _PROBE["captures"][model.label] = (before, _PROBE["served"]())

    def recorded_pair(store, a, b, *args, **kwargs):
        try:
            return tested_pair(store, a, b, *args, **kwargs)
        except Exception as error:
            _PROBE.setdefault("failures", {})[f"{a.id} ~ {b.id}"] = f"{type(error).__name__}: {error}"
            raise

    evidence_store.capture = timed_capture
    for name, module in list(sys.modules.items()):
        if name.startswith("pedigree.") and getattr(module, "tested_pair", None) is tested_pair:
            module.tested_pair = recorded_pair  # type: ignore[attr-defined]
    _PROBE["installed"] = True
    return _PROBE


def _kind(model_id: str) -> str:
    if model_id == BASE:
        return "base"
    if model_id == UNRELATED:
        return "unrelated"
    return "fine-tune, permuted" if permuted(int(model_id.rsplit("ft", 1)[1])) else "fine-tune, same coordinates"


def _code_state() -> dict:
    """The commit the library was imported from, and whether its folders had uncommitted changes
    then (others may commit while a run is under way; each run imports the code once)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", *LIBRARY)
    return {"commit": git("rev-parse", "--short", "HEAD"), "library_changes": dirty.splitlines()}


# ---- evidence of other shapes ------------------------------------------------------------------


def capture_size(folder: Path, label: str) -> dict:
    """Capture one local checkpoint's evidence into a temporary file: its size, the weights'
    size, and what the capture alone read (no fingerprint before it: its sample is read here)."""
    from pedigree.indexer.evidence_file import write_evidence
    from pedigree.indexer.independence.inputs import ModelTensors
    from pedigree.indexer.local_checkpoint import open_checkpoint
    from pedigree.indexer.stored_model import CAPTURE_VERSION, capture

    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    started = time.perf_counter()
    with open_checkpoint(folder) as source, tempfile.TemporaryDirectory() as tmp:
        manifest, arrays = capture(ModelTensors(source, label))
        size = write_evidence(Path(tmp) / "evidence.npz", manifest, arrays)
        read = source.bytes_read
    return {
        "model": label,
        "weights_bytes": weights,
        "evidence_bytes": size,
        "evidence_fraction": round(size / weights, 6),
        "capture_bytes_read": read,
        "capture_seconds": round(time.perf_counter() - started, 1),
        "recipe": CAPTURE_VERSION,
    }


def evidence_7b(directory: Path) -> dict:
    from bench.speed_tests import ensure
    from bench.synthetic_llama import LlamaShape

    folder = directory / "parent"
    shape = LlamaShape()
    if not (folder / "config.json").exists():
        need = 2 * (
            2 * shape.vocab * shape.hidden + shape.layers * (4 * shape.hidden**2 + 3 * shape.hidden * shape.mlp)
        )
        directory.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(directory).free
        if free < need + DISK_MARGIN:
            return {"skipped": f"{need / 1e9:.1f} GB needed in {directory}, {free / 1e9:.1f} GB free"}
        ensure(folder, shape, seed=1)
    return {**capture_size(folder, "7b-shaped (bench.speed_tests parent)"), "folder": str(folder)}


def evidence_small() -> dict:
    from bench.zoo_cache import small_zoo_path

    zoo = small_zoo_path()
    rows = [
        capture_size(folder, f"{folder.parent.name}/{folder.name}")
        for folder in sorted(zoo.glob("*/*"))
        if folder.is_dir() and any(folder.glob("*.safetensors"))
    ]
    chosen = next(r for r in rows if r["model"] == "llama-lab/tiny-llama-s1")
    return {
        **chosen,
        "zoo_models": len(rows),
        "zoo_max_fraction": max(r["evidence_fraction"] for r in rows),
        "zoo_max_model": max(rows, key=lambda r: r["evidence_fraction"])["model"],
    }


# ---- report --------------------------------------------------------------------------------------


def bars(runs: dict[str, dict]) -> dict:
    out: dict = {
        "total_le_3pct": {n: r["total_fraction"] <= BAR for n, r in runs.items()},
        "every_model_le_3pct": {n: r["worst_model_fraction"] <= BAR for n, r in runs.items()},
    }
    if len(runs) > 1:
        small, large = (runs[n] for n in sorted(runs, key=int)[:: len(runs) - 1])
        common = [m for m in small["models"] if m in large["models"]]
        diff = {
            m: round(
                (large["models"][m]["bytes_served"] - small["models"][m]["bytes_served"])
                / max(small["models"][m]["bytes_served"], 1),
                5,
            )
            for m in common
        }
        out["same_bytes_per_model"] = {
            "relative_difference": diff,
            "max_abs": max(abs(d) for d in diff.values()),
            "tolerance": SAME_TOLERANCE,
            "met": max(abs(d) for d in diff.values()) <= SAME_TOLERANCE,
        }
    return out


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _short(model_id: str) -> str:
    return model_id.split("/", 1)[1].replace("llama-1b-", "")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"


def markdown(result: dict, command: str) -> str:
    env, runs = result["environment"], result["runs"]
    shape = result["shape"]
    order = sorted(runs, key=int)
    code = runs[order[0]]["code"]
    dirty = "" if not code["library_changes"] else f"; uncommitted library changes then: {len(code['library_changes'])}"
    lines = [
        "## Refresh bytes: what a refresh reads with the evidence store (issue 13)",
        "",
        f"Command: `nice {command}`  (library imported at commit {code['commit']}{dirty}; finished at "
        f"{env['commit']}, {env['date']}, {env['cpus']} CPU threads)",
        "",
        f"A {result['shape_name'].upper()}-shaped bf16 Llama family ({shape['layers']} blocks, "
        f"hidden {shape['hidden']}, MLP {shape['mlp']}, vocab {shape['vocab']}, "
        f"{_gb(runs[order[0]]['models'][BASE]['bytes_on_disk'])} a model): a base, N fine-tunes (the base + 5 % drift "
        "of their own; odd ones in the base's coordinates, even ones residual- and MLP-unit-permuted and rescaled as "
        "`bench.synthetic_llama.ChildOf` does) and one unrelated model (another seed), served by the bundled Hub "
        "server in its own process on 127.0.0.1; `Workspace.refresh` (what `pedigree refresh` runs: listing, range "
        "reads, fingerprint, block signatures, evidence capture, candidate tests on the stored evidence, lineage "
        "graph) into a fresh data folder. Bytes: the server's own count of body bytes sent, per repo and "
        "file, each range mapped onto the tensors it covers; stages from the request log (*inside capture()* "
        "= requests made while `indexer.stored_model.capture` ran for that model; *rest of the crawl* = "
        "listing, metadata, headers, fingerprint, block signatures and what ingest prefetches before the "
        "capture; *after* = tests and graph); *read once* = distinct bytes (what the same reads would cost if"
        " no byte were fetched twice). Denominator: every file served.",
        "",
        "| N children | models | on disk | served | **total** | worst model | rest of the crawl | inside capture() | "
        "after the crawl | read once | requests | refresh s (crawl s) | pairs tested (raised) | children confirmed "
        "with base | unrelated confirmed with |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {OLD['children']} (before: main @ {OLD['commit']}) | {OLD['children'] + 2} | {_gb(OLD['total_bytes'])} | "
        f"{_gb(OLD['total_bytes_read'])} | {OLD['total_fraction']:.1%} | {OLD['worst_model_fraction']:.1%} | "
        f"crawl {OLD['crawl_fraction']:.1%} | - | {OLD['total_fraction'] - OLD['crawl_fraction']:.1%} | - | - | - | "
        "- | - | - |",
    ]
    for n in order:
        r = runs[n]
        confirmed = sum(r["children_confirmed"].values())
        lines.append(
            f"| {n} | {len(r['models'])} | {_gb(r['total_bytes_on_disk'])} | {_gb(r['total_bytes_served'])} | "
            f"**{r['total_fraction']:.2%}** | {r['worst_model_fraction']:.2%} ({_short(r['worst_model'])}) | "
            f"{_pct(r['fingerprint_fraction'])} | {_pct(r['capture_fraction'])} | {_pct(r['after_fraction'])} | "
            f"{_pct(r['distinct_fraction'])} | {r['requests'].get('total', 0)} | "
            f"{r['refresh_seconds']} ({r['crawl_seconds']}) | {len(r['pairs_tested'])} ({len(r['pairs_failed'])}) | "
            f"{confirmed}/{r['children']} | "
            f"{', '.join(_short(m) for m in r['unrelated_confirmed_with']) or 'none'} |"
        )
    b = result["bars"]

    def verdict(by_n: dict[str, bool]) -> str:
        return ", ".join(f"N={n} " + ("met" if ok else "**not met**") for n, ok in by_n.items())

    parts = [f"total <= 3 %: {verdict(b['total_le_3pct'])}", f"every model <= 3 %: {verdict(b['every_model_le_3pct'])}"]
    if "same_bytes_per_model" in b:
        same = b["same_bytes_per_model"]
        parts.append(
            "bytes per model independent of N: "
            + ("met" if same["met"] else "**not met**")
            + f" (largest difference {same['max_abs']:.2%}, tolerance {same['tolerance']:.0%})"
        )
    lines += ["", "Bars (issue 13): " + "; ".join(parts) + "."]
    for n in order:
        failed = runs[n]["pairs_failed"]
        if failed:
            why = sorted({reason for reason in failed.values()})
            lines += [
                "",
                f"N = {n}: {len(failed)} of {len(runs[n]['pairs_tested'])} pair tests have no result - the "
                f"battery raised ({'; '.join(f'`{w}`' for w in why)}); `refresh` counts them in `pairs_tested` "
                f"and reports no error: {', '.join(sorted(failed))}.",
            ]
    r = runs[order[-1]]
    other = runs[order[0]]["models"]
    lines += [
        "",
        f"Per model (N = {order[-1]}; N = {order[0]} in brackets where it differs):",
        "",
        "| model | kind | served | fraction | crawl rest / capture() / after | read once | requests | evidence file "
        "(of weights) | log10 p with base (confirmed) | parents found |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model_id, m in r["models"].items():
        before = other.get(model_id)
        bracket = f" [{_gb(before['bytes_served'])}]" if before and before["bytes_served"] != m["bytes_served"] else ""
        parents = ", ".join(f"{_short(p['id'])} ({p['relation']})" for p in m["parents"]) or "none"
        test = m["with_base"]
        tested = "-" if test is None else f"{test['log10_p']:g} ({'yes' if test['confirmed'] else '**no**'})"
        if m["with_base_error"]:
            tested = f"no result: {m['with_base_error'].split(':')[0]}"
        requests = " / ".join(str(m["requests"][p]) for p in PHASES)
        lines.append(
            f"| {model_id} | {m['kind']} | {_gb(m['bytes_served'])}{bracket} | {m['fraction']:.2%} | "
            f"{_gb(m['fingerprint_bytes'])} / {_gb(m['capture_bytes'])} / {_gb(m['after_bytes'])} | "
            f"{_pct(m['distinct_fraction'])} | {requests} | {_gb(m['evidence_bytes'] or 0)} "
            f"({_pct(m['evidence_fraction'])}) | {tested} | {parents} |"
        )
    base = r["models"][BASE]["by_role"]
    names = sorted(base["distinct"], key=lambda n: -sum(base[p].get(n, {}).get("bytes", 0) for p in PHASES))
    lines += [
        "",
        f"What read the bytes ({BASE}, N = {order[-1]}; every model of the family reads the same): bytes served per "
        "tensor role and stage, and the distinct bytes (share of that role's bytes in the checkpoint):",
        "",
        "| tensors | rest of the crawl | inside capture() | after | served | read once (of the role) | "
        "read more than once |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        got = [base[p].get(name, {}).get("bytes", 0) for p in PHASES]
        once = base["distinct"][name]
        share = f" ({once['of_role']:.1%})" if once["of_role"] else ""
        lines.append(
            f"| {name} | {' | '.join(_gb(x) if x else '-' for x in got)} | {_gb(sum(got))} | "
            f"{_gb(once['bytes'])}{share} | {_gb(sum(got) - once['bytes']) if sum(got) > once['bytes'] else '-'} |"
        )
    ev = result["evidence"]
    lines += [
        "",
        "Evidence file per model (the `evidence` table; 7B and small zoo: a local capture with "
        "`indexer.stored_model.capture`), and on paper for 1M models of that shape:",
        "",
        "| checkpoint | weights | evidence file | evidence / weights | 1M models | a capture alone reads |",
        "|---|---|---|---|---|---|",
    ]
    family_label = f"{result['shape_name'].upper()}-shaped (this family, median)"
    for key, label in (("family", family_label), ("7b", "7B-shaped"), ("small", "small zoo")):
        e = ev.get(key) or {}
        if "skipped" in e:
            lines.append(f"| {label} | - | skipped: {e['skipped']} | - | - | - |")
            continue
        if not e:
            continue
        name = f"{label}: {e['model']}" if key == "small" else label
        read = f"{_gb(e['capture_bytes_read'])}" if e.get("capture_bytes_read") else "-"
        lines.append(
            f"| {name} | {_gb(e['weights_bytes'])} | {_gb(e['evidence_bytes'])} | {e['evidence_fraction']:.3%} | "
            f"{e['evidence_bytes'] * 1e6 / 1e12:.2f} TB | {read} |"
        )
    if ev.get("small"):
        lines += [
            "",
            f"Small zoo: the largest evidence fraction of its {ev['small']['zoo_models']} models is "
            f"{ev['small']['zoo_max_fraction']:.1%} ({ev['small']['zoo_max_model']}): a capture has fixed-size parts "
            "(probe and vocabulary-sample rows, 256 units a block) that a small checkpoint does not dilute.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--children", type=int, nargs="+", default=[2, 8], help="fine-tunes of the base per run")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".zoo" / "refresh-bytes")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1b", help="'tiny': a quick check of this script")
    parser.add_argument("--dir-7b", type=Path, default=DIR_7B, help="bench.speed_tests' folder (parent/ is reused)")
    parser.add_argument("--no-7b", action="store_true", help="skip the 7B-shaped evidence capture")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    work = args.work if args.shape == "1b" else args.work.with_name(f"{args.work.name}-{args.shape}")
    work.mkdir(parents=True, exist_ok=True)
    built = ensure_models(work, family(max(args.children)), args.shape)
    runs = {}
    for n in sorted(set(args.children)):
        print(f"refresh with {n} children ...", flush=True)
        runs[str(n)] = refresh_run(work, n)
        r = runs[str(n)]
        print(
            f"N={n}: {r['total_fraction']:.2%} of {_gb(r['total_bytes_on_disk'])} served, worst model "
            f"{r['worst_model_fraction']:.2%}, {r['refresh_seconds']} s",
            flush=True,
        )
    largest = runs[str(max(args.children))]["models"]
    fractions = sorted(
        (m["evidence_bytes"], m["evidence_fraction"], m["weights_bytes"], model_id)
        for model_id, m in largest.items()
        if m["evidence_bytes"]
    )
    evidence: dict = {}
    if fractions:
        size, fraction, weights, model_id = fractions[len(fractions) // 2]
        evidence["family"] = {
            "model": model_id,
            "weights_bytes": weights,
            "evidence_bytes": size,
            "evidence_fraction": fraction,
            "range_bytes": [fractions[0][0], fractions[-1][0]],
        }
    evidence["7b"] = {"skipped": "--no-7b"} if args.no_7b else evidence_7b(args.dir_7b)
    evidence["small"] = evidence_small()
    for e in evidence.values():
        if "evidence_bytes" in e:
            e["per_million_models_bytes"] = e["evidence_bytes"] * 10**6
    result = {
        "shape_name": args.shape,
        "shape": SHAPES[args.shape],
        "work": str(work),
        "built_seconds": built,
        "runs": runs,
        "bars": bars(runs),
        "evidence": evidence,
        "before": OLD,
        "environment": environment(),
    }
    command = "python -m bench.refresh_bytes --children " + " ".join(str(n) for n in args.children)
    if args.shape != "1b":
        command += f" --shape {args.shape}"
    if args.no_7b:
        command += " --no-7b"
    suffix = "" if args.shape == "1b" else f"_{args.shape}"
    text = markdown(result, command)
    path = write_json(f"refresh_bytes{suffix}", result)
    if not args.no_report and args.shape == "1b":
        update_section("refresh-bytes", text)
    print(text)
    print(f"\nresults: {path}")
    if os.environ.get("PEDIGREE_DEBUG"):
        print(json.dumps(result["bars"], indent=2))


if __name__ == "__main__":
    main()
