"""``build_zoo``: corpus → tokenizers → every recipe of a ``ZooSpec`` → truth.json + zoo.json.

Two zoos: ``"a"`` (``recipes.ZOO_A``, the development zoo) and ``"b"`` (``recipes_b.ZOO_B``, held
out).  Models are made by ``ops.run_task`` in worker processes (spawned, one torch thread each), a
model as soon as its parents exist, longest remaining chain first.  Each task reads only published
parent folders and runs single-threaded, so the output does not depend on the worker count.
Hidden recipes are built into ``<out_dir>-hidden`` (with their own truth.json), never into
``out_dir``; a served child of a hidden parent lists it as ``latent_parent``, not among ``parents``.

Cache: ``zoo.json`` records ``recipe_hash`` = SHA-256 over (ZOO_VERSION, the zoo's source code,
the corpus hash, the torch version, the zoo's settings, the size profile and every recipe).  If
``out_dir/zoo.json`` carries the same hash and every folder is present, ``build_zoo`` returns it
without rebuilding.  ``zoo.json`` is written last, so an interrupted build is never mistaken for a
finished one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Literal

import torch

from .architectures import ARCHITECTURES
from .corpus import Corpus, build_corpus
from .ops import Task, run_task
from .recipes import ZOO_A
from .recipes_b import ZOO_B
from .spec import TOKENIZER_OF, ModelRecipe, ZooSpec
from .tokenization import train_tokenizer

ZOO_VERSION = "1"
ZOOS: dict[str, ZooSpec] = {"a": ZOO_A, "b": ZOO_B}
Progress = Callable[[str, int, int], None]


BUILD_MODULES = (
    "architectures",
    "build",
    "cards",
    "corpus",
    "hf_layout",
    "lossy",
    "models",
    "ops",
    "recipes",
    "recipes_b",
    "spec",
    "tokenization",
    "training",
    "transforms",
)
"""The modules zoo A and B are built from.  Other zoos (the families, vision, Mixtral/T5 and UNet
zoos) live in their own modules with their own cache keys, so adding one never rebuilds these."""


def code_fingerprint() -> str:
    """SHA-256 of the zoo's own source files (everything that shapes its content)."""
    digest = hashlib.sha256()
    folder = Path(__file__).parent
    for path in sorted(folder / f"{name}.py" for name in BUILD_MODULES):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def recipe_hash(spec: ZooSpec, size: str, corpus_sha256: str) -> str:
    """The cache key of a zoo build."""
    payload = {
        "version": ZOO_VERSION,
        "code": code_fingerprint(),
        "corpus": corpus_sha256,
        "torch": ".".join(torch.__version__.split(".")[:2]),
        "zoo": spec.settings_payload(),
        "recipes": spec.recipe_payload(size),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def declared(r: ModelRecipe) -> dict:
    """What the model card claims (``base_model`` a string, a list for merges, or None)."""
    base = list(r.declared_base) if isinstance(r.declared_base, tuple) else r.declared_base
    return {"base_model": base, "base_model_relation": r.declared_relation}


def truth_entry(spec: ZooSpec, r: ModelRecipe, created_at: str, notes: dict) -> dict:
    """The ground-truth record of one model (a hidden parent becomes ``latent_parent``)."""
    entry = {
        "parents": [p for p in r.parents if not spec.by_id[p].hidden],
        "relation": r.relation,
        "architecture": ARCHITECTURES[r.arch],
        "model_type": r.arch,
        "family": spec.family_of(r.id),
        "created_at": created_at,
        "declared": declared(r),
        "declaration": r.declaration,
        "dtype": r.dtype,
        "shards": r.shards,
        "notes": notes,
    }
    latent = [p for p in r.parents if spec.by_id[p].hidden]
    if latent:
        (entry["latent_parent"],) = latent
    if r.hidden:
        entry["hidden"] = True
    return entry


def _costs(spec: ZooSpec) -> dict[str, float]:
    """Rough work of each model plus its longest chain of descendants (scheduling priority)."""
    out: dict[str, float] = {}
    for r in reversed(spec.recipes):  # children are listed after their dependencies
        own = {"pretrain": 5.0, "finetune": 1.0, "heal": 1.0, "none": 0.1}[r.steps] * (1.4 if r.op == "distill" else 1)
        children = [c.id for c in spec.recipes if r.id in spec.dependencies(c.id)]
        out[r.id] = own + max((out[c] for c in children), default=0.0)
    return out


def _tasks(spec: ZooSpec, out_dir: Path, size: str, corpus_domains: dict[str, str]) -> dict[str, Task]:
    profile = spec.sizes[size]
    times = spec.created_times()
    tokenizers = {
        kind: train_tokenizer(
            kind, "\n\n".join(corpus_domains[d] for d in spec.tokenizer_data[kind]), profile.vocab_size
        ).to_str()
        for kind in sorted({TOKENIZER_OF[r.arch] for r in spec.recipes if not r.parents})
    }
    hidden = spec.hidden_dir(out_dir)

    def folder(model_id: str) -> Path:
        return (hidden if spec.by_id[model_id].hidden else out_dir) / model_id

    return {
        r.id: Task(
            recipe=r,
            profile=profile,
            out_dir=str(hidden if r.hidden else out_dir),
            dep_folders={d: str(folder(d)) for d in sorted(spec.dependencies(r.id))},
            optimizer=spec.optimizer,
            texts={d: corpus_domains[d] for d in r.data},
            root_tokenizer=None if r.parents else tokenizers[TOKENIZER_OF[r.arch]],
            created_at=times[r.id],
            card=declared(r),
        )
        for r in spec.recipes
    }


def _run_all(spec: ZooSpec, tasks: dict[str, Task], workers: int, progress: Progress | None) -> dict[str, dict]:
    """Run every task once its dependencies are done; ``workers`` processes (1: in-process)."""
    results: dict[str, dict] = {}
    total = len(tasks)
    cost = _costs(spec)

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
            ready = sorted(
                (i for i in pending if spec.dependencies(i) <= results.keys()), key=cost.__getitem__, reverse=True
            )
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
    out_dir = Path(out_dir)
    path = out_dir / "zoo.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if manifest.get("recipe_hash") != key or not (out_dir / "truth.json").exists():
        return None
    hidden = out_dir.parent / manifest.get("hidden_dir", "")
    folders = [out_dir / m for m in manifest.get("models", {})] + [hidden / m for m in manifest.get("hidden", {})]
    if not all((f / "config.json").exists() for f in folders):
        return None
    return manifest


def default_workers() -> int:
    """Worker processes: one per core, at most 8 (each runs one torch thread)."""
    return max(1, min(8, os.cpu_count() or 1))


def build_zoo(
    out_dir: Path,
    size: Literal["small", "full"],
    *,
    zoo: Literal["a", "b"] = "a",
    progress: Progress | None = None,
    workers: int | None = None,
) -> dict:
    """Build (or reuse) zoo ``zoo`` of ``size`` under ``out_dir``; returns the ``zoo.json`` manifest."""
    spec = ZOOS[zoo]
    out_dir = Path(out_dir)
    start = time.perf_counter()
    corpus = build_corpus(spec.sizes[size].chars_per_domain, salt=spec.corpus_salt)
    key = recipe_hash(spec, size, corpus.sha256)
    cached = cached_manifest(out_dir, key)
    if cached is not None:
        return cached
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # one builder at a time; the others wait and reuse its build (not bench.zoo_cache's ".<name>.lock",
    # which callers may already hold: flock on a second descriptor of one file would wait on itself)
    with open(out_dir.parent / f".{out_dir.name}.build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = cached_manifest(out_dir, key)
        if cached is not None:
            return cached
        return _build(spec, out_dir, size, key, corpus, start, progress, workers)


def _build(
    spec: ZooSpec,
    out_dir: Path,
    size: Literal["small", "full"],
    key: str,
    corpus: Corpus,
    start: float,
    progress: Progress | None,
    workers: int | None,
) -> dict:
    """Build every recipe of ``spec`` into ``out_dir`` (under the caller's lock) and write the manifest."""
    hidden_dir = spec.hidden_dir(out_dir)
    for folder, recipes in ((out_dir, spec.visible), (hidden_dir, [r for r in spec.recipes if r.hidden])):
        for name in ("zoo.json", "truth.json"):
            (folder / name).unlink(missing_ok=True)
        for r in recipes:
            shutil.rmtree(folder / r.id, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = _tasks(spec, out_dir, size, corpus.domains)
    results = _run_all(spec, tasks, workers or default_workers(), progress)
    truth = {r.id: truth_entry(spec, r, tasks[r.id].created_at, results[r.id]["notes"]) for r in spec.recipes}
    hidden = {m: e for m, e in truth.items() if e.get("hidden")}
    if hidden:
        (hidden_dir / "truth.json").write_text(dumps_compact(hidden) + "\n")
    (out_dir / "truth.json").write_text(dumps_compact({m: e for m, e in truth.items() if m not in hidden}) + "\n")
    manifest = {
        "recipe_hash": key,
        "zoo": spec.name,
        "size": size,
        "zoo_version": ZOO_VERSION,
        "corpus_sha256": corpus.sha256,
        "corpus_files": corpus.files_used,
        "torch": torch.__version__,
        "build_seconds": round(time.perf_counter() - start, 1),
        "workers": workers or default_workers(),
        "models": {r.id: {"relation": r.relation, "seconds": results[r.id]["seconds"]} for r in spec.visible},
    }
    if hidden:
        manifest["hidden_dir"] = hidden_dir.name
        manifest["hidden"] = {
            m: {"relation": e["relation"], "seconds": results[m]["seconds"]} for m, e in hidden.items()
        }
    (out_dir / "zoo.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
