"""A synthetic Hub of 10,000 repos: refresh throughput, bytes per model, workers for the whole Hub.

    nice python -m bench.hub_scale --repos 10000 --refresh 1000 --ray 1 2

(issue 17, part 2).  The bundled Hub-compatible server (``bench.remote_hub``: its own process, a
simulated link of ``--latency-ms`` per request and ``--bandwidth-mbs`` shared by all connections)
serves ``--repos`` repos built under ``--work`` (default ``bench/.zoo/hub-scale``, git-ignored):

- **tiny** (most repos): distinct Llama-shaped checkpoints of ~0.8 MB (4 blocks, hidden 64, MLP
  172, a 1,200-token vocabulary holding pedigree's probe strings; ``bench.synthetic_llama``) in
  Zipf-sized families - a base, fine-tunes (5 % drift of their own), fine-tunes re-parametrised by a
  residual/MLP permutation, int8-quantized copies (row-wise absmax, stored dequantized), exact
  re-uploads (hard links) - and unrelated singletons;
- **1b** and **7b**: ``bench.crawl``'s 1B- and 7B-shaped bf16 checkpoints (2.35 / 12.55 GiB): a few
  distinct ones (a base, a fine-tune, an int8 copy for 1B; one 7B) and re-uploads of them, all hard
  links (the crawler reads by range: bytes read, not disk, is what is measured).

Cards declare ``base_model`` and a ``last_modified`` interleaving the size classes, so the Hub's
newest-first listing puts a proportional mix in any prefix.

Measured in one run: the listing of all repos (pages, seconds, bytes); then a refresh of the
newest ``--refresh`` repos (``pedigree refresh --limit``: listing, range reads, fingerprints,
evidence, candidate tests, graph) into a fresh data folder, once per executor: **local**
(``Workspace.refresh`` in this process: per-repo wall and CPU seconds from its on_start/on_done
callbacks) and **Ray** with 1 and 2 workers (``pedigree refresh --executor ray --workers N``, a
local Ray; wall time, the CPU of the reaped process tree).  Bytes are the server's count per repo
(``/_cdn`` requests carry the repo they were redirected from).  Then, on paper, from the measured
per-model CPU and bytes and the Hub statistics cited in :data:`HUB_FACTS`: workers for a day of new
models within a nightly window and for a backfill of 2M models in a week.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.crawl import SHAPES
from bench.remote_hub import RemoteHub
from bench.report import ROOT, environment, update_section, write_json

WORK = ROOT / "bench" / ".zoo" / "hub-scale"
TINY = dict(layers=4, hidden=64, heads=4, mlp=172, vocab=1200, layers_per_shard=4)
CLASSES = ("tiny", "1b", "7b")
DRIFT = 0.05
DISK_MARGIN = 6 * 10**9
PEDIGREE = Path(sys.executable).with_name("pedigree")
REUSE_1B = ROOT / "bench" / ".zoo" / "refresh-bytes" / "models" / "synthetic"

# Hub statistics used by the projection (each with its source and how firm it is).
HUB_FACTS: dict[str, dict[str, Any]] = {
    "models_on_hub": {
        "value": 2_000_000,
        "source": "issue 17 ('the Hub holds about two million models'); the Hub's own model listing "
        "(huggingface.co/models) showed ~1.9-2.1M public models in late 2025 - an estimate, the count moves daily",
    },
    "new_models_per_day": {
        "value": 3_000,
        "source": "estimate: issue 17 ('gains thousands a day'); ~1M models (early 2025) to ~2M (late 2025) is "
        "~2,700/day on average; O. Sanseviero's talk 'Distributing a Million Open Models in the Wild' (2024) "
        "counts 3,000-4,000 new Llama-based repos a week alone",
    },
    "size_mix": {
        "value": {"tiny": 0.70, "1b": 0.20, "7b": 0.10},
        "source": "assumption for the projection (not a cited figure): most repos are small (<1B, adapters and "
        "tiny models), a fifth ~1B-class, a tenth 7B-class or larger; the synthetic Hub's own mix is in its row",
    },
}


# ---- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One served repo: its id, size class, how it is made and what it came from."""

    repo: str
    cls: str
    role: str  # base | ft | ft-permuted | quant | mirror | unrelated
    seed: int  # base seed (the family's)
    own: int  # this model's drift / transform seed
    parent: str | None = None  # the repo it derives from (cards' base_model)
    source: str | None = None  # a mirror: the repo whose files it links
    reuse: str | None = None  # a checkpoint folder on disk to link instead of writing


def big_repos(n1b: int, reuse: Path) -> list[Planned]:
    """``n1b`` 1B-shaped repos: the distinct checkpoints of ``bench.refresh_bytes``' family when
    they are on disk (its base and fine-tunes: odd k plain, even k permuted - hard links, no
    disk), else a base and one fine-tune written here; the rest re-uploads of them."""
    distinct = [Planned("meta-synth/llama-1b", "1b", "base", 1, 0, reuse=str(reuse / "llama-1b-base"))]
    if (reuse / "llama-1b-base").is_dir():
        for k in range(1, 100):
            folder = reuse / f"llama-1b-ft{k}"
            if not folder.is_dir():
                break
            role = "ft-permuted" if k % 2 == 0 else "ft"
            distinct.append(
                Planned(f"tuners/llama-1b-ft{k}", "1b", role, 1, 1000 + k, distinct[0].repo, reuse=str(folder))
            )
    else:
        distinct = [Planned("meta-synth/llama-1b", "1b", "base", 1, 0)]
        distinct.append(Planned("tuners/llama-1b-ft1", "1b", "ft", 1, 1001, distinct[0].repo))
    distinct = distinct[: max(n1b, 0)]
    mirrors = [
        Planned(f"mirror{k}/{src.repo.split('/')[1]}-copy", "1b", "mirror", 1, 0, src.repo, src.repo)
        for k, src in ((k, distinct[k % len(distinct)]) for k in range(n1b - len(distinct)))
    ]
    return distinct + mirrors


def plan(repos: int, n1b: int, n7b: int, seed: int, reuse: Path = Path("/nonexistent")) -> list[Planned]:
    """Deterministic repo list: ``n7b`` and ``n1b`` big repos, the rest tiny families."""
    rng = np.random.default_rng(seed)
    out: list[Planned] = []
    out.extend(big_repos(n1b, reuse))
    if n7b:
        out.append(Planned("meta-synth/llama-7b", "7b", "base", 7, 0))
        for k in range(n7b - 1):
            repo = f"mirror{k}/llama-7b-copy"
            out.append(Planned(repo, "7b", "mirror", 7, 0, "meta-synth/llama-7b", "meta-synth/llama-7b"))
    family = 0
    while len(out) < repos:
        family += 1
        left = repos - len(out)
        org, base_seed = f"lab{family % 997}", 1000 + family
        if rng.random() < 0.3:
            out.append(Planned(f"{org}/tiny-solo-{family}", "tiny", "unrelated", base_seed, 0))
            continue
        size = int(min(rng.zipf(2.0), 40, left))
        base = f"{org}/tiny-{family}-base"
        members = [Planned(base, "tiny", "base", base_seed, 0)]
        for k in range(1, size):
            role = str(rng.choice(["ft", "ft-permuted", "quant", "mirror"], p=[0.55, 0.1, 0.25, 0.1]))
            parent = members[int(rng.integers(len(members)))] if role != "quant" else members[0]
            if parent.role in ("quant", "mirror"):
                parent = members[0]
            repo = f"{org}/tiny-{family}-{role}{k}"
            own = family * 100 + k
            members.append(
                Planned(repo, "tiny", role, base_seed, own, parent.repo, parent.repo if role == "mirror" else None)
            )
        out.extend(members)
    return out[:repos]


def order(planned: list[Planned], seed: int) -> list[Planned]:
    """Newest first, each class spread evenly over the order (a prefix holds a proportional mix)."""
    rng = np.random.default_rng(seed + 1)
    keys = []
    by_class = Counter(p.cls for p in planned)
    rank: Counter[str] = Counter()
    for p in planned:
        keys.append((rank[p.cls] + rng.random()) / by_class[p.cls])
        rank[p.cls] += 1
    return [planned[i] for i in np.argsort(keys, kind="stable")]


# ---- the checkpoints -----------------------------------------------------------------------------


@contextmanager
def _weights(drift_seed: int, quantize: bool) -> Iterator[None]:
    """``synthetic_llama``'s tensors + a drift seeded by ``drift_seed`` (0: none), then row-wise
    absmax int8 quantization (dequantized) when ``quantize``, while ``write_llama`` runs."""
    import torch

    from bench import synthetic_llama

    original = synthetic_llama._generate

    def generate(name: str, size: tuple[int, ...], seed: int, index: int) -> torch.Tensor:
        tensor = original(name, size, seed, index)
        if drift_seed:
            gen = torch.Generator().manual_seed(drift_seed * 7919 + index + 1)
            tensor = tensor + DRIFT * tensor.std() * torch.randn(tensor.shape, generator=gen)
        if quantize and tensor.dim() == 2:
            scale = tensor.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
            tensor = (tensor / scale).round().clamp(-127, 127) * scale
        return tensor

    synthetic_llama._generate = generate
    try:
        yield
    finally:
        synthetic_llama._generate = original


def _write(folder: Path, p: Planned, by_id: dict[str, Planned]) -> None:
    from bench.synthetic_llama import ChildOf, LlamaShape, write_llama

    shape = LlamaShape(**(TINY if p.cls == "tiny" else SHAPES[p.cls]))
    if p.role in ("base", "unrelated"):
        write_llama(folder, shape, seed=p.seed)
        return
    parent = by_id[p.parent] if p.parent else None
    # a child of a fine-tune carries the fine-tune's drift and its own (seeds add, drift ~ 7 %)
    drift_seed = p.own + (parent.own if parent and parent.role.startswith("ft") else 0)
    if p.role == "quant":
        with _weights(parent.own if parent and parent.role.startswith("ft") else 0, True):
            write_llama(folder, shape, seed=p.seed)
    elif p.role == "ft-permuted":
        with _weights(drift_seed, False):
            write_llama(folder, shape, seed=p.seed, child_of=ChildOf(seed=p.seed, drift=0.0, transform_seed=p.own))
    else:
        with _weights(drift_seed, False):
            write_llama(folder, shape, seed=p.seed)


def _card(p: Planned, when: datetime) -> str:
    lines = ["---", "library_name: transformers", f"last_modified: '{when.isoformat()}'"]
    if p.parent:
        relation = {"quant": "quantized", "mirror": "finetune"}.get(p.role, "finetune")
        lines += [f"base_model: {p.parent}", f"base_model_relation: {relation}"]
    return "\n".join([*lines, "---", f"# {p.repo}", ""])


def _needed_bytes(planned: list[Planned], root: Path) -> int:
    sizes = {"1b": 2.4e9, "7b": 12.6e9, "tiny": 0.9e6}
    return int(
        sum(
            sizes[p.cls]
            for p in planned
            if p.role != "mirror" and not (root / p.repo).is_dir() and not (p.reuse and Path(p.reuse).is_dir())
        )
    )


def build(planned: list[Planned], work: Path) -> dict[str, Any]:
    """Write the distinct checkpoints under ``work/models`` (kept between runs), link the mirrors,
    and write ``work/hub/ORG/NAME`` (hard links + a card) - the folder the server serves."""
    models, hub = work / "models", work / "hub"
    need = _needed_bytes(planned, models)
    free = shutil.disk_usage(work.parent if not work.exists() else work).free
    if need and free < need + DISK_MARGIN:
        raise SystemExit(f"not enough disk: {need / 1e9:.1f} GB to write, {free / 1e9:.1f} GB free in {work}")
    by_id = {p.repo: p for p in planned}
    started, written = time.perf_counter(), Counter[str]()
    for p in planned:
        if p.role == "mirror" or (models / p.repo).is_dir():
            continue
        partial = models / (p.repo + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        if p.reuse and Path(p.reuse).is_dir():
            partial.mkdir(parents=True)
            for file in Path(p.reuse).iterdir():
                (partial / file.name).hardlink_to(file)
        else:
            _write(partial, p, by_id)
        partial.rename(models / p.repo)
        written[p.cls] += 1
        if sum(written.values()) % 500 == 0 or p.cls != "tiny":
            print(f"  wrote {sum(written.values()):,} checkpoints ({p.repo})", flush=True)
    shutil.rmtree(hub, ignore_errors=True)
    now = datetime.now(UTC).replace(microsecond=0)
    for position, p in enumerate(planned):
        source = models / (p.source or p.repo)  # a mirror's source is never a mirror (plan)
        target = hub / p.repo
        target.mkdir(parents=True)
        for file in source.iterdir():
            if file.name != "README.md":
                (target / file.name).hardlink_to(file)
        (target / "README.md").write_text(_card(p, now - timedelta(minutes=position + 1)))
    return {"written": dict(written), "seconds": round(time.perf_counter() - started, 1)}


# ---- measuring -----------------------------------------------------------------------------------


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def listing_run(hub: RemoteHub) -> dict[str, Any]:
    """The whole listing through the link, as a refresh starts it (``crawler.listing``)."""
    import httpx

    from pedigree.crawler.listing import list_changed

    hub.reset_stats()
    started = time.perf_counter()
    with httpx.Client() as client:
        listing = list_changed(client, hub.url, None)
    seconds = time.perf_counter() - started
    stats = hub.stats()
    return {
        "repos": len(listing.repos),
        "rejected": listing.rejected_count,
        "pages": listing.pages,
        "seconds": round(seconds, 2),
        "repos_per_second": round(len(listing.repos) / seconds),
        "bytes": stats["bytes_sent"],
    }


def per_repo_bytes(stats: dict[str, Any]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for record in stats.get("log", []):
        if record.get("repo"):
            out[record["repo"]] += record["body_bytes"]
    return dict(out)


def by_class(
    planned: dict[str, Planned], done: dict[str, dict[str, Any]], repo_bytes: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """Per size class: models indexed, bytes (server count) and, when measured, CPU/wall per model."""
    out: dict[str, dict[str, Any]] = {}
    for cls in CLASSES:
        repos = [r for r, d in done.items() if planned[r].cls == cls and d.get("status") == "indexed"]
        if not repos:
            continue
        row: dict[str, Any] = {
            "indexed": len(repos),
            "bytes_per_model": round(float(np.mean([repo_bytes.get(r, 0) for r in repos]))),
        }
        cpu = [done[r]["cpu_s"] for r in repos if "cpu_s" in done[r]]
        if cpu:
            row["cpu_s_per_model"] = round(float(np.mean(cpu)), 3)
            row["wall_s_per_model"] = round(float(np.mean([done[r]["wall_s"] for r in repos])), 3)
        out[cls] = row
    return out


def local_run(hub: RemoteHub, home: Path, limit: int, planned: dict[str, Planned]) -> dict[str, Any]:
    """``Workspace.refresh`` in this process, per-repo CPU and wall from its callbacks."""
    from pedigree.config import load_settings
    from pedigree.workspace import Workspace

    shutil.rmtree(home, ignore_errors=True)
    hub.reset_stats()
    done: dict[str, dict[str, Any]] = {}
    current: dict[str, float] = {}

    def on_start(i: int, total: int, repo: str) -> None:
        current.update(cpu=time.process_time(), wall=time.perf_counter())
        if i % 100 == 0:
            print(f"    local: {i:,} repos started", flush=True)

    def on_done(state: Any) -> None:
        status = getattr(state.status, "value", str(state.status))
        done[state.repo_id] = {
            "status": status,
            "cpu_s": time.process_time() - current["cpu"],
            "wall_s": time.perf_counter() - current["wall"],
        }
        current.update(crawl_end_cpu=time.process_time(), crawl_end=time.perf_counter())

    cpu0, started = time.process_time(), time.perf_counter()
    with Workspace(load_settings(home)) as ws:
        summary = ws.refresh(hub.url, limit=limit, on_start=on_start, on_done=on_done)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    stats = hub.stats(log=True, timeout=120)
    indexed = summary.counts.get("new_models", 0)
    return {
        "executor": "local",
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "after_crawl_wall_s": round(started + wall - current.get("crawl_end", started), 1),
        "after_crawl_cpu_s": round(cpu0 + cpu - current.get("crawl_end_cpu", cpu0), 1),
        "counts": summary.counts,
        "indexed": indexed,
        "models_per_hour": round(indexed / wall * 3600),
        "bytes": stats["bytes_sent"],
        "requests": stats["requests"].get("total", 0),
        "requests_by_kind": stats["requests"],
        "log_complete": stats["requests"].get("total", 0) <= len(stats.get("log", [])),
        "bytes_per_model": round(stats["bytes_sent"] / max(indexed, 1)),
        "classes": by_class(planned, done, per_repo_bytes(stats)),
    }


def ray_run(
    hub: RemoteHub, home: Path, limit: int, workers: int, planned: dict[str, Planned], hub_rate: float
) -> dict[str, Any]:
    """``pedigree refresh --executor ray --workers N --hub-rate R`` (a local Ray) as a child process."""
    shutil.rmtree(home, ignore_errors=True)
    hub.reset_stats()
    command = [
        str(PEDIGREE), "refresh", "--endpoint", hub.url, "--home", str(home), "--limit", str(limit),
        "--executor", "ray", "--workers", str(workers), "--hub-rate", str(hub_rate), "--json",
    ]  # fmt: skip
    cpu0, started = cpu_children(), time.perf_counter()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall, cpu = time.perf_counter() - started, cpu_children() - cpu0
    if done.returncode != 0:
        return {"executor": f"ray x{workers}", "error": (done.stderr or done.stdout)[-2000:], "wall_s": round(wall, 1)}
    summary = json.loads(done.stdout)
    stats = hub.stats(log=True, timeout=120)
    indexed = summary["counts"].get("new_models", 0)
    statuses = {r["id"]: {"status": r["status"]} for r in summary.get("repos", [])}
    return {
        "executor": f"ray x{workers}",
        "workers": workers,
        "hub_rate": hub_rate,
        "wall_s": round(wall, 1),
        "cpu_s_reaped": round(cpu, 1),
        "counts": summary["counts"],
        "indexed": indexed,
        "models_per_hour": round(indexed / wall * 3600),
        "bytes": stats["bytes_sent"],
        "requests": stats["requests"].get("total", 0),
        "requests_by_kind": stats["requests"],
        "bytes_per_model": round(stats["bytes_sent"] / max(indexed, 1)),
        "classes": by_class(planned, statuses, per_repo_bytes(stats)),
    }


def ray_available() -> str | None:
    """None when ``pedigree refresh --executor ray`` can run here, else why not."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "not run: Ray is not installed (pip install 'pedigree[ray]')"
    helped = subprocess.run([str(PEDIGREE), "refresh", "--help"], capture_output=True, text=True, check=False)
    if "--executor" not in helped.stdout:
        return "not run: executor not landed (`pedigree refresh --executor ray` does not exist yet)"
    return None


RATE_LIMITS: dict[str, Any] = {
    "value": {"api_per_5min": 1000, "resolvers_per_5min": 5000},
    "source": "https://huggingface.co/docs/hub/rate-limits (free user, 5-minute fixed windows; anonymous: 500 / "
    "3,000; higher for PRO/Team/Enterprise); the resolvers bucket is the URLs with a /resolve/ segment, so the "
    "CDN URLs they redirect to (pedigree's range reads) are outside the documented buckets",
}


def request_mix(stats_requests: dict[str, int], indexed: int) -> dict[str, float]:
    """Requests per indexed model in the Hub's rate-limit buckets (API, resolvers) and CDN."""
    api = sum(v for k, v in stats_requests.items() if k.startswith("api_"))
    resolve = stats_requests.get("resolve_head", 0) + stats_requests.get("resolve_get", 0)
    cdn = stats_requests.get("cdn_head", 0) + stats_requests.get("cdn_get", 0)
    n = max(indexed, 1)
    return {"api": round(api / n, 2), "resolvers": round(resolve / n, 2), "cdn": round(cdn / n, 2)}


def estimate_7b(classes: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """A 7B-shaped model's per-model figures when none was refreshed: this run's 1B figures times
    the 7B/1B ratios ``bench.crawl`` measured (bench/results/crawl.json, loopback, contiguous ids)."""
    path = ROOT / "bench" / "results" / "crawl.json"
    if "1b" not in classes or "cpu_s_per_model" not in classes["1b"] or not path.exists():
        return None
    rows = json.loads(path.read_text())["checkpoints"]
    pick = {r["checkpoint"]: r for r in rows if r["network"] == "loopback" and r["probe_ids"] == "contiguous"}
    if not {"1b", "7b"} <= set(pick):
        return None
    cpu = pick["7b"]["crawl_seconds"] / pick["1b"]["crawl_seconds"]
    nbytes = pick["7b"]["server_bytes_sent"] / pick["1b"]["server_bytes_sent"]
    one = classes["1b"]
    return {
        "indexed": 0,
        "bytes_per_model": round(one["bytes_per_model"] * nbytes),
        "cpu_s_per_model": round(one["cpu_s_per_model"] * cpu, 3),
        "wall_s_per_model": round(one["wall_s_per_model"] * cpu, 3),
        "estimated": f"this run's 1b x bench.crawl's 7b/1b ratios (CPU {cpu:.2f}x, bytes {nbytes:.2f}x; "
        f"bench/results/crawl.json, commit {json.loads(path.read_text())['environment'].get('commit', '?')})",
    }


def projection(local: dict[str, Any], rays: list[dict[str, Any]], window_h: float) -> dict[str, Any]:
    """Workers for a day of new models in ``window_h`` hours and for a 2M backfill in a week."""
    mix = HUB_FACTS["size_mix"]["value"]
    classes = dict(local["classes"])
    if "7b" not in classes and (seven := estimate_7b(classes)) is not None:
        classes["7b"] = seven
    missing = [c for c in mix if c not in classes or "cpu_s_per_model" not in classes[c]]
    if missing:
        return {"error": f"no measured model of class {', '.join(missing)} in the refreshed prefix"}
    after_cpu = local["after_crawl_cpu_s"] / max(local["indexed"], 1)
    after_wall = local["after_crawl_wall_s"] / max(local["indexed"], 1)
    cpu = sum(mix[c] * classes[c]["cpu_s_per_model"] for c in mix) + after_cpu
    wall = sum(mix[c] * classes[c]["wall_s_per_model"] for c in mix) + after_wall
    nbytes = sum(mix[c] * classes[c]["bytes_per_model"] for c in mix)
    efficiency = 1.0
    ok = [r for r in rays if "error" not in r]
    if len(ok) >= 2 and ok[0]["models_per_hour"]:
        efficiency = min(
            1.0, ok[1]["models_per_hour"] / (ok[0]["models_per_hour"] * ok[1]["workers"] / ok[0]["workers"])
        )
    daily = HUB_FACTS["new_models_per_day"]["value"]
    total = HUB_FACTS["models_on_hub"]["value"]
    requests = request_mix(local["requests_by_kind"], local["indexed"])
    resolver_rate = RATE_LIMITS["value"]["resolvers_per_5min"] / 300
    api_rate = RATE_LIMITS["value"]["api_per_5min"] / 300
    cap = min(resolver_rate * 3600 / max(requests["resolvers"], 1e-9), api_rate * 3600 / max(requests["api"], 1e-9))

    def need(models: float, seconds: float) -> dict[str, Any]:
        return {
            "models": models,
            "cpu_core_hours": round(models * cpu / 3600, 1),
            "worker_cores": math.ceil(models * cpu / seconds / efficiency),
            "two_core_machines_like_this_one": math.ceil(models * wall / seconds / efficiency),
            "mean_link_MB_per_s": round(models * nbytes / seconds / 1e6, 2),
            "hours_at_one_free_token_rate_limit": round(models / cap, 1),
            "tokens_for_the_window": math.ceil(models / cap / (seconds / 3600)),
        }

    return {
        "hub_mix": mix,
        "classes_used": classes,
        "cpu_s_per_model": round(cpu, 3),
        "wall_s_per_model_one_process": round(wall, 3),
        "bytes_per_model": round(nbytes),
        "requests_per_model": requests,
        "models_per_hour_cap_one_free_token": round(cap),
        "ray_efficiency_used": round(efficiency, 3),
        "nightly": {"window_h": window_h, **need(daily, window_h * 3600)},
        "backfill": {"days": 7, **need(total, 7 * 86400)},
    }


# ---- the report ----------------------------------------------------------------------------------


def _mb(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9)):
        if n >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{n / 1e6:,.2f} MB"


def markdown(result: dict[str, Any]) -> str:
    env, args, hub = result["environment"], result["args"], result["hub"]
    lines = [
        "## Synthetic Hub at 10k repos: refresh throughput and the whole-Hub projection (issue 17, part 2)",
        "",
        f"Command: `{env['command']}`  (commit {env['commit']}, {env['date']}, {env['cpus']} CPUs shared with "
        f"other work, `nice`; {result.get('wall_s', '?')} s in all)",
        "",
        f"Served: {hub['repos']:,} repos ({', '.join(f'{n:,} {c}' for c, n in hub['by_class'].items())}; roles "
        f"{', '.join(f'{n:,} {r}' for r, n in hub['by_role'].items())}) by the bundled server in its own process, "
        f"link {args['latency_ms']:g} ms per request and {args['bandwidth_mbs']:g} MB/s shared. "
        f"{_mb(hub['bytes_served_if_downloaded'])} of files in all"
        f" (distinct contents: {_mb(hub['disk_bytes'])}; the rest are hard links).",
        "",
        f"Listing (all {result['listing']['repos']:,} repos): {result['listing']['pages']} pages, "
        f"{result['listing']['seconds']} s ({result['listing']['repos_per_second']:,} repos/s), "
        f"{_mb(result['listing']['bytes'])}.",
        "",
        f"Refresh of the newest {args['refresh']:,} repos (`--limit`; the same prefix for every executor, a fresh "
        "data folder each): listing, range reads, fingerprints, evidence, candidate tests, graph.",
        "",
        "| executor | models indexed | wall s | models/hour | bytes/model (server) | requests | CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in result["runs"]:
        if "error" in run or "skipped" in run:
            lines.append(f"| {run['executor']} | {run.get('skipped') or 'failed: ' + run['error'][-300:]} | | | | | |")
            continue
        cpu = run.get("cpu_s", run.get("cpu_s_reaped"))
        lines.append(
            f"| {run['executor']} | {run['indexed']:,} | {run['wall_s']:,} | **{run['models_per_hour']:,}** | "
            f"{_mb(run['bytes_per_model'])} | {run['requests']:,} | {cpu} |"
        )
    if result.get("ray_scaling") is not None:
        lines += ["", f"Ray scaling, x2 / x1 models per hour (same run): **{result['ray_scaling']}**."]
    local = next((r for r in result["runs"] if r.get("executor") == "local" and "classes" in r), None)
    if local:
        lines += ["", "Local executor by size class (per model; CPU and wall from the crawl's per-repo callbacks):", ""]
        lines += ["| class | indexed | bytes read (server) | CPU s | wall s |", "|---|---|---|---|---|"]
        for cls, row in local["classes"].items():
            lines.append(
                f"| {cls} | {row['indexed']} | {_mb(row['bytes_per_model'])} | {row.get('cpu_s_per_model', '')} | "
                f"{row.get('wall_s_per_model', '')} |"
            )
        lines.append(
            f"| after the crawl (tests, graph), whole run | | | {local['after_crawl_cpu_s']} | "
            f"{local['after_crawl_wall_s']} |"
        )
    proj = result.get("projection") or {}
    if "nightly" in proj:
        n, b = proj["nightly"], proj["backfill"]
        lines += [
            "",
            "### On paper: the whole Hub",
            "",
            f"Per model at the Hub's size mix ({', '.join(f'{c} {v:.0%}' for c, v in proj['hub_mix'].items())}, "
            f"an assumption): **{proj['cpu_s_per_model']} CPU s**, {proj['wall_s_per_model_one_process']} s of one "
            f"refresh process, **{_mb(proj['bytes_per_model'])}** read, requests "
            f"{proj['requests_per_model']['api']} API + {proj['requests_per_model']['resolvers']} resolver + "
            f"{proj['requests_per_model']['cdn']} CDN; Ray efficiency applied: {proj['ray_efficiency_used']}."
            + "".join(
                f" {cls}: not refreshed here - {row['estimated']}."
                for cls, row in proj["classes_used"].items()
                if "estimated" in row
            ),
            "",
            "| job | models | CPU core-hours | worker cores | 2-core machines (measured wall) | mean link | "
            "hours at one free token's rate limit | tokens (or a higher tier) for the window |",
            "|---|---|---|---|---|---|---|---|",
            f"| nightly: a day of new models in {n['window_h']:g} h | {n['models']:,} | {n['cpu_core_hours']} | "
            f"**{n['worker_cores']}** | {n['two_core_machines_like_this_one']} | {n['mean_link_MB_per_s']} MB/s | "
            f"{n['hours_at_one_free_token_rate_limit']} | {n['tokens_for_the_window']} |",
            f"| backfill: {b['models']:,} models in 7 days | {b['models']:,} | {b['cpu_core_hours']:,} | "
            f"**{b['worker_cores']}** | {b['two_core_machines_like_this_one']} | {b['mean_link_MB_per_s']} MB/s | "
            f"{b['hours_at_one_free_token_rate_limit']:,} | {b['tokens_for_the_window']} |",
            "",
            "Sources:",
            "",
        ]
        lines += [f"- {name}: {fact['value']} - {fact['source']}" for name, fact in HUB_FACTS.items()]
        lines.append(f"- rate limits: {RATE_LIMITS['value']} - {RATE_LIMITS['source']}")
    elif proj:
        lines += ["", f"Projection not computed: {proj['error']}"]
    lines += ["", reading(result)]
    return "\n".join(lines)


def reading(result: dict[str, Any]) -> str:
    """What the figures say and what they leave out, from the measured run."""
    args, runs = result["args"], result["runs"]
    out = [
        f"Scope: the listing covers all {result['listing']['repos']:,} repos; the refresh covers the newest "
        f"{args['refresh']:,} (the same prefix for every executor) - a full 10k refresh per executor does not fit "
        "2 shared cores in this session (the local run's rate below puts it at "
        + next(
            (
                f"~{args['repos'] / r['models_per_hour']:.1f} h"
                for r in runs
                if r.get("executor") == "local" and r.get("models_per_hour")
            ),
            "hours",
        )
        + " each). Wall-clock rates include the other work on these 2 cores; CPU seconds per model are the "
        "figures the projection uses."
    ]
    ray_runs = [r for r in runs if r["executor"].startswith("ray")]
    if any("skipped" in r for r in ray_runs):
        out.append(f"Ray: {next(r['skipped'] for r in ray_runs if 'skipped' in r)}.")
    elif ray_runs and all("indexed" in r for r in ray_runs):
        out.append(
            "Ray runs are `pedigree refresh --executor ray` child processes (local Ray started by the driver, its "
            "start-up counted; Ray runs its task workers at nice 19); their CPU column is what the reaped process "
            "tree reports and may miss Ray's worker processes. They run with `--hub-rate "
            f"{args.get('hub_rate', 10):g}`: pedigree's default of 10 requests/s per host (the Hub-polite budget "
            "shared by all workers) would by itself cap a run at 36,000 requests an hour, i.e. "
            + next(
                (
                    f"~{36_000 * r['indexed'] / max(r['requests'], 1):,.0f} models/hour at this run's requests a model"
                    for r in runs
                    if r.get("executor") == "local" and r.get("requests")
                ),
                "a rate set by the requests per model",
            )
            + ", whatever the number of workers. On 2 cores, 2 workers compete with the driver "
            "(DuckDB writes, tests) and the Hub server, so the x2/x1 ratio here bounds what a second machine's "
            "worth of cores would add from below."
        )
    proj = result.get("projection") or {}
    if "nightly" in proj:
        n, b = proj["nightly"], proj["backfill"]
        cap = proj["models_per_hour_cap_one_free_token"]
        out.append(
            f"Projection: a day's {n['models']:,} new models need {n['cpu_core_hours']} CPU core-hours "
            f"({n['worker_cores']} worker cores for a {n['window_h']:g} h window); the 2M backfill needs "
            f"{b['cpu_core_hours']:,} core-hours ({b['worker_cores']} cores for a week). The Hub's rate limits cap one "
            f"free token at ~{cap:,} models/hour with these requests per model: the nightly run takes "
            f"{n['hours_at_one_free_token_rate_limit']} h of one token's budget, the backfill "
            f"{b['hours_at_one_free_token_rate_limit']:,} h, i.e. {b['tokens_for_the_window']} tokens' budgets (or a "
            "higher tier / an agreement with the Hub) for a week. "
            + (
                "So the nightly run fits one small machine and one token, while the backfill needs both the cores "
                "and more request budget than one identity has - the budget the Ray executor shares per host "
                "must be raised with it (its default of 10 requests/s is below one free token's resolver rate)."
                if b["tokens_for_the_window"] > 1
                else "Both jobs fit one token's request budget; cores are what they need."
            )
        )
    return "Reading: " + " ".join(out)


# ---- the run -------------------------------------------------------------------------------------


def hub_summary(planned: list[Planned], root: Path) -> dict[str, Any]:
    sizes, inodes = 0, {}
    for file in root.rglob("*"):
        if file.is_file():
            st = file.stat()
            sizes += st.st_size
            inodes[(st.st_dev, st.st_ino)] = st.st_size
    return {
        "repos": len(planned),
        "by_class": dict(Counter(p.cls for p in planned)),
        "by_role": dict(Counter(p.role for p in planned)),
        "bytes_served_if_downloaded": sizes,
        "disk_bytes": sum(inodes.values()),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.hub_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--repos", type=int, default=10_000)
    p.add_argument("--n1b", type=int, default=300, help="1B-shaped repos (a few distinct, the rest re-uploads)")
    p.add_argument(
        "--n7b", type=int, default=0, help="7B-shaped repos (1 distinct, 12.6 GB of disk; the rest re-uploads)"
    )
    p.add_argument("--reuse-1b", type=Path, default=REUSE_1B, help="bench.refresh_bytes' 1B family, linked if there")
    p.add_argument("--refresh", type=int, default=300, help="refresh the newest N repos (0: all)")
    p.add_argument("--ray", type=int, nargs="*", default=[1, 2], help="Ray worker counts to run (none: skip Ray)")
    p.add_argument("--no-local", action="store_true", help="skip the local executor's run")
    p.add_argument(
        "--hub-rate",
        type=float,
        default=1000.0,
        help="Ray's shared requests/s per Hub host (pedigree's default 10 is the Hub-polite budget; the "
        "benchmark lifts it so the runs measure the work, and the projection applies the Hub's limits)",
    )
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--bandwidth-mbs", type=float, default=100.0)
    p.add_argument("--window-h", type=float, default=6.0, help="the nightly window of the projection")
    p.add_argument("--work", type=Path, default=WORK)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--build-only", action="store_true")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--from-json", action="store_true", help="only re-render bench/results/hub_scale.json")
    args = p.parse_args(argv)
    if args.from_json:
        saved = json.loads((ROOT / "bench" / "results" / "hub_scale.json").read_text())
        rays = [r for r in saved["runs"] if r["executor"].startswith("ray") and "indexed" in r]
        local = next((r for r in saved["runs"] if r["executor"] == "local"), None)
        saved["projection"] = projection(local, rays, saved["args"]["window_h"]) if local else {}
        text = markdown(saved).replace(
            " in all)\n",
            " in all; this section re-rendered from its JSON by `python -m bench.hub_scale --from-json`)\n",
            1,
        )
        if not args.no_report:
            update_section("hub-scale", text)
        print(text)
        return
    started = time.perf_counter()
    planned = order(plan(args.repos, args.n1b, args.n7b, args.seed, args.reuse_1b), args.seed)
    print(f"plan: {len(planned):,} repos {dict(Counter(x.cls for x in planned))}", flush=True)
    built = build(planned, args.work)
    print(f"built in {built['seconds']} s: {built['written']}", flush=True)
    if args.build_only:
        return
    by_id = {x.repo: x for x in planned}
    limit = args.refresh or len(planned)
    result: dict[str, Any] = {"environment": environment(), "args": {**vars(args), "work": str(args.work)}}
    result["hub"] = hub_summary(planned, args.work / "hub")
    result["build"] = built
    runs: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with RemoteHub(args.work / "hub", latency_ms=args.latency_ms, bandwidth_mbs=args.bandwidth_mbs) as hub:
        result["server_start_s"] = round(time.perf_counter() - t0, 1)
        result["listing"] = listing_run(hub)
        print(f"listing: {result['listing']}", flush=True)
        if not args.no_local:
            runs.append(local_run(hub, args.work / "home-local", limit, by_id))
            write_json("hub_scale", {**result, "runs": runs, "complete": False})
            print(f"local: {runs[-1]['indexed']} models, {runs[-1]['wall_s']} s", flush=True)
        why_not = ray_available() if args.ray else None
        for workers in args.ray:
            if why_not:
                runs.append({"executor": f"ray x{workers}", "skipped": why_not})
                continue
            runs.append(ray_run(hub, args.work / f"home-ray{workers}", limit, workers, by_id, args.hub_rate))
            write_json("hub_scale", {**result, "runs": runs, "complete": False})
            print(f"ray x{workers}: {runs[-1].get('indexed')} models, {runs[-1]['wall_s']} s", flush=True)
    result["runs"] = runs
    rays = [r for r in runs if r["executor"].startswith("ray") and "indexed" in r]
    result["ray_scaling"] = (
        round(rays[1]["models_per_hour"] / rays[0]["models_per_hour"], 3)
        if len(rays) >= 2 and rays[0]["models_per_hour"]
        else None
    )
    local = next((r for r in runs if r["executor"] == "local"), None)
    result["projection"] = projection(local, rays, args.window_h) if local else {}
    result["hub_facts"], result["rate_limits"] = HUB_FACTS, RATE_LIMITS
    result["wall_s"] = round(time.perf_counter() - started, 1)
    path = write_json("hub_scale", result)
    text = markdown(result)
    if not args.no_report:
        update_section("hub-scale", text)
    print(text)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
