"""Bytes a ``pedigree refresh`` reads from a PyTorch zip checkpoint (``pytorch_model.bin``), beside
the same weights as safetensors (issue 16).

    python -m bench.bin_bytes

A 1B-shaped bf16 Llama (``bench.crawl``'s "1b" shape: 22 blocks, hidden 2048, MLP 5632, vocab
32000; ``bench.synthetic_llama``, seed 1) is built once under ``--work`` (default
``bench/.zoo/bin-bytes``, git-ignored) as ``synthetic/llama-1b`` (two safetensors shards) and
re-saved by ``torch.save`` (zip format, one file) as ``synthetic/llama-1b-bin`` with the same
config and tokenizer.  Both are served by the bundled Hub server in its own process on 127.0.0.1
(``bench.remote_hub``) and ``Workspace.refresh`` - what ``pedigree refresh`` runs - indexes them
into a fresh data folder.  Bytes are the server's own count of body bytes sent per repo (every
request: listing aside, metadata, headers, fingerprint, capture); the denominator is the repo's
weight files and every file served.  Then the .bin's header alone is measured: a
``HubCheckpoint`` opened on it (end records, central directory, ``data.pkl``, local headers) - the
bytes and requests it costs before any tensor is read.

Goal (issue 16): the .bin reads the same fraction as the safetensors (<= 2 %).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from bench.crawl import SHAPES
from bench.report import ROOT, environment, update_section, write_json

SAFETENSORS = "synthetic/llama-1b"
BIN = "synthetic/llama-1b-bin"
GOAL = 0.02


def build(work: Path) -> Path:
    """The hub folder with both repos (built once)."""
    import torch
    from safetensors.torch import load_file

    from bench.synthetic_llama import LlamaShape, write_llama

    root = work / "hub"
    source, copy = root / SAFETENSORS, root / BIN
    if not (source / "tokenizer.json").exists():
        print(f"writing {source} ...", flush=True)
        write_llama(source, LlamaShape(**SHAPES["1b"]), seed=1)  # type: ignore[arg-type]
    if not (copy / "pytorch_model.bin").exists():
        print(f"writing {copy} ...", flush=True)
        copy.mkdir(parents=True, exist_ok=True)
        state = {}
        for shard in sorted(source.glob("*.safetensors")):
            state |= load_file(str(shard))
        torch.save(state, copy / "pytorch_model.bin.tmp", _use_new_zipfile_serialization=True)
        (copy / "pytorch_model.bin.tmp").rename(copy / "pytorch_model.bin")
        for name in ("config.json", "tokenizer.json"):
            shutil.copy(source / name, copy / name)
    return root


def run(work: Path) -> dict:
    from bench import remote_hub
    from bench.remote_hub import RemoteHub
    from pedigree.config import load_settings
    from pedigree.crawler.http_source import HubCheckpoint
    from pedigree.workspace import Workspace

    remote_hub.STARTUP_TIMEOUT = max(remote_hub.STARTUP_TIMEOUT, 3600.0)  # it hashes every served file first
    root = build(work)
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    weights = {
        SAFETENSORS: sum(p.stat().st_size for p in (root / SAFETENSORS).glob("*.safetensors")),
        BIN: (root / BIN / "pytorch_model.bin").stat().st_size,
    }
    on_disk = {repo: sum(p.stat().st_size for p in (root / repo).iterdir()) for repo in weights}
    with RemoteHub(root) as hub:
        hub.reset_stats()
        started = time.perf_counter()
        with Workspace(load_settings(home)) as ws:
            summary = ws.refresh(hub.url)
            seconds = time.perf_counter() - started
            stats = hub.stats(log=True, timeout=300)
            relations = {
                repo: [(p.id, p.relation) for p in ws.query(repo).parents]
                + [(s.id, s.relation) for s in ws.query(repo).siblings]
                for repo in weights
            }
        log = stats.get("log", [])
        served = {repo: sum(r["body_bytes"] for r in log if r.get("repo") == repo) for repo in weights}
        requests = {repo: sum(1 for r in log if r.get("repo") == repo) for repo in weights}
        statuses = {r.id: r.status for r in summary.repos}
        crawler_count = {r.id: r.bytes_read for r in summary.repos}

        hub.reset_stats()
        from huggingface_hub import HfApi

        info = HfApi(endpoint=hub.url, token=False).model_info(BIN, files_metadata=False)
        with HubCheckpoint(hub.url, BIN, info.sha, [s.rfilename for s in info.siblings]) as src:
            src.settle()
            header = {"bytes": src.bytes_read, "requests": src.requests, "tensors": len(src.tensors())}
        header_stats = hub.stats(log=True, timeout=300)
        header["weight_file_bytes"] = sum(
            r["body_bytes"] for r in header_stats.get("log", []) if r.get("file") == "pytorch_model.bin"
        )
    rows = {
        repo: {
            "status": statuses.get(repo),
            "weights": weights[repo],
            "on_disk": on_disk[repo],
            "served": served[repo],
            "crawler_count": crawler_count.get(repo),
            "requests": requests[repo],
            "fraction_of_weights": served[repo] / weights[repo],
            "relations": relations[repo],
        }
        for repo in weights
    }
    return {"refresh_seconds": seconds, "repos": rows, "bin_header": header, "environment": environment()}


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def report(result: dict) -> str:
    env = result["environment"]
    rows = result["repos"]
    header = result["bin_header"]
    lines = [
        "## PyTorch zip checkpoints: bytes a refresh reads (issue 16)",
        "",
        f"Command: `nice python -m bench.bin_bytes`  (commit {env.get('commit')}, {env.get('date')})",
        "",
        "A 1B-shaped bf16 Llama (22 blocks, hidden 2048, MLP 5632, vocab 32000; `bench.synthetic_llama`, seed 1) as "
        "two safetensors shards and re-saved by `torch.save` (zip format) as one `pytorch_model.bin`, served by the "
        "bundled Hub server in its own process on 127.0.0.1; `Workspace.refresh` indexes both into a fresh data "
        "folder. Bytes: the server's count of body bytes sent per repo (metadata, headers, fingerprint, capture).",
        "",
        "| repo | weights | status | served | **of weights** | requests | related as |",
        "|---|---|---|---|---|---|---|",
    ]
    for repo, row in rows.items():
        related = ", ".join(f"{rel} of {other}" for other, rel in row["relations"]) or "-"
        lines.append(
            f"| {repo} | {row['weights'] / 1e9:.2f} GB | {row['status']} | {_mb(row['served'])} | "
            f"**{100 * row['fraction_of_weights']:.2f}%** | {row['requests']} | {related} |"
        )
    bin_frac, st_frac = rows[BIN]["fraction_of_weights"], rows[SAFETENSORS]["fraction_of_weights"]
    lines += [
        "",
        f"The .bin's header (opening a `HubCheckpoint`: end records, central directory, data.pkl, "
        f"{header['tensors']} local headers): {_mb(header['weight_file_bytes'])} of the weight file in "
        f"{header['requests']} requests (all files: {_mb(header['bytes'])}).",
        "",
        f"Goal (issue 16): the .bin reads what the safetensors reads, <= 2 %: .bin {100 * bin_frac:.2f}% vs "
        f"safetensors {100 * st_frac:.2f}% - same: {'met' if abs(bin_frac - st_frac) <= 0.002 else '**not met**'}; "
        f"<= 2 %: {'met' if bin_frac <= GOAL else '**not met**'} (the safetensors figure is issue 13's).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".zoo" / "bin-bytes")
    args = parser.parse_args()
    result = run(args.work)
    write_json("bin_bytes", result)
    update_section("torch-zip-bytes", report(result))
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=2, default=str))


if __name__ == "__main__":
    main()
