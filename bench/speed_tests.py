"""Speed benchmark of the independence tests on 7B-shaped checkpoints (issue: exact tests).

    python -m bench.speed_tests [--dir /tmp/pedigree-7b] [--layers 32]

Three bf16 checkpoints shaped like Llama-2-7B (32 blocks, hidden 4096, MLP 11008, vocab 32000,
sharded, real tensor names; ``bench.synthetic_llama``): a parent, a child = parent + 5 % drift
then residual-permuted, MLP-unit-permuted and rescaled, and an independent model.  For the pairs
(parent, child) and (parent, independent) it times the full test battery (robust φ_MATCH +
constrained φ_U + embedding/head tests, default budget) and counts the bytes it read, next to
the naive approach measured in the same run: reading every byte of both checkpoints (streamed,
64 MiB at a time - the floor of any loader that loads both full models; 27 GB do not fit in this
machine's 24 GB of memory at once).  The page cache is dropped before each measurement when the
kernel allows it (recorded in the results).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from bench.report import environment, publish
from bench.synthetic_llama import ChildOf, LlamaShape, write_llama
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.independence.suite import run_battery
from pedigree.indexer.local_checkpoint import open_checkpoint

CHUNK = 64 * 2**20


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def ensure(folder: Path, shape: LlamaShape, seed: int, child_of: ChildOf | None = None) -> int:
    if (folder / "config.json").exists():
        return sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    started = time.perf_counter()
    size = write_llama(folder, shape, seed, child_of)
    print(f"wrote {folder} ({size / 1e9:.1f} GB) in {time.perf_counter() - started:.0f} s", flush=True)
    return size


def naive_read(folders: list[Path]) -> tuple[float, int]:
    """Seconds and bytes to stream every byte of every weight file of ``folders``."""
    started, total = time.perf_counter(), 0
    buffer = bytearray(CHUNK)
    for folder in folders:
        for path in sorted(folder.glob("*.safetensors")):
            with open(path, "rb", buffering=0) as handle:
                while n := handle.readinto(buffer):
                    total += n
    return time.perf_counter() - started, total


def battery(a: Path, b: Path) -> dict:
    with open_checkpoint(a) as source_a, open_checkpoint(b) as source_b:
        started = time.perf_counter()
        report = run_battery(ModelTensors(source_a, a.name), ModelTensors(source_b, b.name))
        seconds = time.perf_counter() - started
        read = source_a.bytes_read + source_b.bytes_read
    return {
        "seconds": round(seconds, 2),
        "bytes_read": read,
        "log10_p": round(report.log10_p, 2),
        "tests": {t.name: round(t.log10_p, 2) for t in report.tests},
    }


def run(directory: Path, shape: LlamaShape) -> dict:
    parent, child, independent = directory / "parent", directory / "child", directory / "independent"
    sizes = {
        "parent": ensure(parent, shape, seed=1),
        "child": ensure(child, shape, seed=0, child_of=ChildOf(seed=1)),
        "independent": ensure(independent, shape, seed=2),
    }
    result: dict = {"shape": shape.__dict__, "threads": torch.get_num_threads(), "sizes": sizes, "pairs": {}}
    for name, other in (("dependent (parent, child)", child), ("independent (parent, independent)", independent)):
        cold = drop_caches()
        tests = battery(parent, other)
        cold_naive = drop_caches()
        naive_seconds, naive_bytes = naive_read([parent, other])
        result["pairs"][name] = {
            **tests,
            "page_cache_dropped": cold and cold_naive,
            "naive_seconds": round(naive_seconds, 2),
            "naive_bytes": naive_bytes,
            "bytes_ratio": round(naive_bytes / tests["bytes_read"], 1),
            "speedup": round(naive_seconds / tests["seconds"], 2),
        }
    result["environment"] = environment()
    return result


def markdown(result: dict, command: str) -> str:
    shape = result["shape"]
    lines = [
        "## Independence tests on 7B-shaped checkpoints",
        "",
        f"Command: `{command}`  (commit {result['environment']['commit']}, {result['environment']['date']}, "
        f"{result['threads']} CPU threads)",
        "",
        f"bf16, {shape['layers']} blocks, hidden {shape['hidden']}, MLP {shape['mlp']}, vocab {shape['vocab']}; "
        f"{result['sizes']['parent'] / 1e9:.2f} GB per checkpoint. Child = parent + 5 % drift, residual- and "
        "MLP-unit-permuted, units rescaled.",
        "",
        "| pair | battery time (s) | bytes read | naive: read both (s) | naive bytes | fewer bytes | speed-up | "
        "combined log10 p | cold cache |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["pairs"].items():
        lines.append(
            f"| {name} | {row['seconds']} | {row['bytes_read'] / 1e9:.2f} GB | {row['naive_seconds']} | "
            f"{row['naive_bytes'] / 1e9:.2f} GB | {row['bytes_ratio']}× | {row['speedup']}× | {row['log10_p']} | "
            f"{row['page_cache_dropped']} |"
        )
    lines += [
        "",
        "Per test (log10 p): " + "; ".join(f"{name}: {row['tests']}" for name, row in result["pairs"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dir", type=Path, default=Path("/tmp/pedigree-7b"), help="where the checkpoints are written (~40 GB)"
    )
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    shape = LlamaShape(layers=args.layers)
    result = run(args.dir, shape)
    command = "python -m bench.speed_tests" + (f" --layers {args.layers}" if args.layers != 32 else "")
    publish(
        "speed-tests" if args.layers == 32 else f"speed-tests-{args.layers}l",
        result,
        markdown(result, command),
        report=not args.no_report and args.layers == 32,
    )


if __name__ == "__main__":
    main()
