"""``build_zoo``: corpus → tokenizers → every recipe of ``recipes.ZOO`` → truth.json + zoo.json.

Models are made by ``ops.run_task`` in worker processes (spawned, one torch thread each), a model
as soon as its parents exist, longest remaining chain first.  Each task reads only published
parent folders and runs single-threaded, so the output does not depend on the worker count.

Cache: ``zoo.json`` records ``recipe_hash`` = SHA-256 over (ZOO_VERSION, the zoo's source code,
the corpus hash, the torch version, the size profile and every recipe).  If ``out_dir/zoo.json``
carries the same hash and every folder is present, ``build_zoo`` returns it without rebuilding.
``zoo.json`` is written last, so an interrupted build is never mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Literal

import torch

from .architectures import ARCHITECTURES
from .corpus import build_corpus
from .ops import Task, run_task
from .recipes import SIZES, TOKENIZER_DATA, TOKENIZER_OF, ZOO, ModelRecipe, recipe_payload
from .tokenization import train_tokenizer

ZOO_VERSION = "1"
BASE_TIME = datetime(2024, 3, 1, tzinfo=UTC)
Progress = Callable[[str, int, int], None]
_BY_ID = {r.id: r for r in ZOO}


def code_fingerprint() -> str:
    """SHA-256 of the zoo's own source files (everything that shapes its content)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name not in ("__init__.py", "testing.py", "__main__.py"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def recipe_hash(size: str, corpus_sha256: str) -> str:
    """The cache key of a zoo build."""
    payload = {
        "version": ZOO_VERSION,
        "code": code_fingerprint(),
        "corpus": corpus_sha256,
        "torch": ".".join(torch.__version__.split(".")[:2]),
        "recipes": recipe_payload(size),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def dependencies(r: ModelRecipe) -> set[str]:
    """Models that must exist before ``r`` can be made (parents and distillation teacher)."""
    return set(r.parents) | ({r.teacher} if r.teacher else set())


def family_of(model_id: str) -> str:
    """The root reached by following first parents."""
    r = _BY_ID[model_id]
    return model_id if not r.parents else family_of(r.parents[0])


def created_times() -> dict[str, str]:
    """Deterministic ISO-8601 creation times: recipe k is created k days (and k hours) after
    BASE_TIME; recipes are listed parents-first, so parents are strictly older."""
    out: dict[str, str] = {}
    for k, r in enumerate(ZOO):
        missing = dependencies(r) - out.keys()
        if missing:
            raise ValueError(f"{r.id} is listed before its dependencies {sorted(missing)}")
        out[r.id] = (BASE_TIME + timedelta(days=k, hours=k)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def declared(r: ModelRecipe) -> dict:
    """What the model card claims (``base_model`` a string, a list for merges, or None)."""
    base = list(r.declared_base) if isinstance(r.declared_base, tuple) else r.declared_base
    return {"base_model": base, "base_model_relation": r.declared_relation}


def truth_entry(r: ModelRecipe, created_at: str, notes: dict) -> dict:
    """The ground-truth record of one model."""
    return {
        "parents": list(r.parents),
        "relation": r.relation,
        "architecture": ARCHITECTURES[r.arch],
        "model_type": r.arch,
        "family": family_of(r.id),
        "created_at": created_at,
        "declared": declared(r),
        "declaration": r.declaration,
        "dtype": r.dtype,
        "shards": r.shards,
        "notes": notes,
    }


@cache
def _cost(model_id: str) -> float:
    """Rough work of a model plus its longest chain of descendants (scheduling priority)."""
    r = _BY_ID[model_id]
    own = {"pretrain": 5.0, "finetune": 1.0, "heal": 1.0, "none": 0.1}[r.steps] * (1.4 if r.op == "distill" else 1)
    children = [c.id for c in ZOO if model_id in dependencies(c)]
    return own + max((_cost(c) for c in children), default=0.0)


def _tasks(out_dir: Path, size: str, corpus_domains: dict[str, str]) -> dict[str, Task]:
    profile = SIZES[size]
    times = created_times()
    tokenizers = {
        kind: train_tokenizer(
            kind, "\n\n".join(corpus_domains[d] for d in TOKENIZER_DATA[kind]), profile.vocab_size
        ).to_str()
        for kind in sorted({TOKENIZER_OF[r.arch] for r in ZOO if not r.parents})
    }
    return {
        r.id: Task(
            recipe=r,
            profile=profile,
            out_dir=str(out_dir),
            texts={d: corpus_domains[d] for d in r.data},
            root_tokenizer=None if r.parents else tokenizers[TOKENIZER_OF[r.arch]],
            created_at=times[r.id],
            card=declared(r),
        )
        for r in ZOO
    }


def _run_all(tasks: dict[str, Task], workers: int, progress: Progress | None) -> dict[str, dict]:
    """Run every task once its dependencies are done; ``workers`` processes (1: in-process)."""
    results: dict[str, dict] = {}
    total = len(tasks)

    def report(model_id: str) -> None:
        if progress is not None:
            progress(model_id, len(results), total)

    if workers <= 1:
        for model_id, task in tasks.items():
            results[model_id] = run_task(task)
            report(model_id)
        return results
    pending = dict(tasks)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        running: dict = {}
        while pending or running:
            ready = sorted((i for i in pending if dependencies(_BY_ID[i]) <= results.keys()), key=_cost, reverse=True)
            for model_id in ready[: workers - len(running)]:
                running[pool.submit(run_task, pending.pop(model_id))] = model_id
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                model_id = running.pop(future)
                results[model_id] = future.result()
                report(model_id)
    return results


def dumps_compact(obj: object, indent: int = 0) -> str:
    """Indented JSON (sorted keys) whose lists of scalars or of scalar lists stay on one line."""
    pad, inner = " " * indent, " " * (indent + 2)

    def flat(x: object) -> bool:
        return not isinstance(x, (dict, list)) or (
            isinstance(x, list) and all(not isinstance(y, (dict, list)) for y in x)
        )

    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(str(k))}: {dumps_compact(v, indent + 2)}" for k, v in sorted(obj.items())]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and not all(flat(x) for x in obj):
        return "[\n" + ",\n".join(inner + dumps_compact(v, indent + 2) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj)


def cached_manifest(out_dir: Path, key: str) -> dict | None:
    """The manifest of a finished build with this cache key, else None."""
    path = Path(out_dir) / "zoo.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if manifest.get("recipe_hash") != key or not (Path(out_dir) / "truth.json").exists():
        return None
    if not all((Path(out_dir) / m / "config.json").exists() for m in manifest.get("models", {})):
        return None
    return manifest


def default_workers() -> int:
    """Worker processes: one per core, at most 8 (each runs one torch thread)."""
    return max(1, min(8, os.cpu_count() or 1))


def build_zoo(
    out_dir: Path, size: Literal["small", "full"], *, progress: Progress | None = None, workers: int | None = None
) -> dict:
    """Build (or reuse) the zoo of ``size`` under ``out_dir``; returns the ``zoo.json`` manifest."""
    out_dir = Path(out_dir)
    start = time.perf_counter()
    corpus = build_corpus(SIZES[size].chars_per_domain)
    key = recipe_hash(size, corpus.sha256)
    cached = cached_manifest(out_dir, key)
    if cached is not None:
        return cached
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("zoo.json", "truth.json"):
        (out_dir / name).unlink(missing_ok=True)
    for r in ZOO:
        shutil.rmtree(out_dir / r.id, ignore_errors=True)
    tasks = _tasks(out_dir, size, corpus.domains)
    results = _run_all(tasks, workers or default_workers(), progress)
    truth = {r.id: truth_entry(r, tasks[r.id].created_at, results[r.id]["notes"]) for r in ZOO}
    (out_dir / "truth.json").write_text(dumps_compact(truth) + "\n")
    manifest = {
        "recipe_hash": key,
        "size": size,
        "zoo_version": ZOO_VERSION,
        "corpus_sha256": corpus.sha256,
        "corpus_files": corpus.files_used,
        "torch": torch.__version__,
        "build_seconds": round(time.perf_counter() - start, 1),
        "workers": workers or default_workers(),
        "models": {r.id: {"relation": r.relation, "seconds": results[r.id]["seconds"]} for r in ZOO},
    }
    (out_dir / "zoo.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
