"""Bytes indexing reads from a 7B-shaped GGUF over HTTP range requests (issue 16).

    python -m bench.gguf_bytes

A Llama-7B-shaped GGUF (``bench.crawl``'s "7b" shape: 32 blocks, hidden 4096, MLP 11008, 32 heads,
vocab 32000 with ``bench.synthetic_llama``'s tokenizer) in a Q4_K_M-like mix (Q4_K; attn_v,
ffn_down and output Q6_K; norms F32), about 3.9 GB, is written *sparsely*: the header by the
``gguf`` package's writer (tensor infos only), the file extended to its full size, and random
blocks (small fp16 scales) written only into the first rows of every matrix (2,048 of the
embedding and head: the probe tokens' ids are contiguous from 3; 256 of the others) - the rest are
holes that read as zero blocks.  It takes ~0.3 GB of disk.  The bundled Hub server serves it on
127.0.0.1 and ``ingest_source`` indexes it through :class:`~pedigree.crawler.http_gguf.HubGGUFFile`
(what a crawl of a GGUF repo opens); bytes are that source's count of body bytes received (header,
rows, card; every request).

Goal (issue 16): the same <= 2 % of the weights as safetensors.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from bench.report import ROOT, environment, publish

REPO = "synthetic/llama-7b-gguf"
GOAL = 0.02
SHAPE = dict(layers=32, hidden=4096, heads=32, mlp=11008, vocab=32000)
Q6_K = ("attn_v", "ffn_down", "output")


def tensors(shape: dict[str, int]) -> list[tuple[str, tuple[int, ...], str]]:
    """(llama.cpp name, row-major shape, ggml type) in file order."""
    h, m, v = shape["hidden"], shape["mlp"], shape["vocab"]
    out = [("token_embd.weight", (v, h), "Q4_K")]
    for i in range(shape["layers"]):
        out += [(f"blk.{i}.attn_norm.weight", (h,), "F32"), (f"blk.{i}.ffn_norm.weight", (h,), "F32")]
        for part, rows, cols in (
            ("attn_q", h, h),
            ("attn_k", h, h),
            ("attn_v", h, h),
            ("attn_output", h, h),
            ("ffn_gate", m, h),
            ("ffn_up", m, h),
            ("ffn_down", h, m),
        ):
            out.append((f"blk.{i}.{part}.weight", (rows, cols), "Q6_K" if part in Q6_K else "Q4_K"))
    return out + [("output_norm.weight", (h,), "F32"), ("output.weight", (v, h), "Q6_K")]


def write_sparse_gguf(path: Path, seed: int = 1) -> int:
    """The 7B-shaped GGUF at ``path`` (see the module docstring); returns its size."""
    import gguf

    from bench.synthetic_llama import LlamaShape, _tokenizer
    from pedigree.indexer.gguf_format import parse_gguf

    specs = tensors(SHAPE)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(4096)
    writer.add_embedding_length(SHAPE["hidden"])
    writer.add_block_count(SHAPE["layers"])
    writer.add_feed_forward_length(SHAPE["mlp"])
    writer.add_head_count(SHAPE["heads"])
    writer.add_head_count_kv(SHAPE["heads"])
    writer.add_layer_norm_rms_eps(1e-5)
    vocab = _tokenizer(LlamaShape(**SHAPE))["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.__getitem__)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i < 3 else 1 for i in range(len(tokens))])
    for name, shape, qtype in specs:
        kind = getattr(gguf.GGMLQuantizationType, qtype)
        block, size = gguf.GGML_QUANT_SIZES[kind]
        nbytes = int(np.prod(shape)) // block * size
        writer.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    head = path.read_bytes()
    header = parse_gguf(lambda a, b: head[a:b].ljust(b - a, b"\0"), 1 << 62, str(path))  # offsets: no data yet
    end = max(t.end for t in header.tensors.values())
    rng = np.random.default_rng(seed)
    with open(path, "r+b") as f:
        f.truncate(end)
        for t in header.tensors.values():
            kind = getattr(gguf.GGMLQuantizationType, t.ggml_type.name)
            block, size = gguf.GGML_QUANT_SIZES[kind]
            rows = t.shape[0] if len(t.shape) > 1 else 1
            keep = (
                rows if len(t.shape) == 1 else min(rows, 2048 if t.name.startswith(("token_embd", "output.")) else 256)
            )
            row_bytes = (t.end - t.begin) // rows
            if t.ggml_type.name == "F32":
                data = rng.normal(1.0, 0.05, size=t.shape).astype("<f4").tobytes()
            else:
                blocks = rng.integers(0, 256, size=(keep * row_bytes // size, size), dtype=np.uint8)
                scales = rng.uniform(1e-3, 4e-3, size=(len(blocks), 2)).astype("<f2").view(np.uint8)
                for offset in (0, 2) if t.ggml_type.name == "Q4_K" else (208,):
                    blocks[:, offset : offset + 2] = scales[:, :2] if offset != 2 else scales[:, 2:]
                data = blocks.tobytes()
            f.seek(t.begin)
            f.write(data)
    return end


def run(work: Path) -> dict[str, object]:
    from pedigree.crawler.http_gguf import open_hub_gguf
    from pedigree.crawler.hub_server import HubServer
    from pedigree.indexer.pipeline import ingest_source
    from pedigree.storage.db import Store

    folder = work / "hub" / REPO
    gguf_path = folder / "llama-7b-Q4_K_M.gguf"
    if not gguf_path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "README.md").write_text("# A 7B-shaped GGUF (sparse; bench.gguf_bytes)\n")
        write_sparse_gguf(gguf_path)
    size = gguf_path.stat().st_size
    disk = gguf_path.stat().st_blocks * 512
    shutil.rmtree(work / "home", ignore_errors=True)
    (work / "home").mkdir(parents=True)
    with HubServer(work / "hub") as server:
        repo = server.store.get(REPO)
        files = list(repo.files)
        opened = []

        def open_source():  # noqa: ANN202 - the ingest callback
            opened.append(open_hub_gguf(server.url, REPO, repo.sha, files))
            return opened[-1]

        store = Store(work / "home" / "pedigree.duckdb")
        started = time.perf_counter()
        outcome = ingest_source(store, REPO, open_source, revision=repo.sha, uri=f"{server.url}#{REPO}@{repo.sha}")
        seconds = time.perf_counter() - started
        store.close()
    source = opened[-1]
    read = source.bytes_read
    return {
        "repo": REPO,
        "status": outcome.status,
        "error": outcome.error,
        "weights_bytes": size,
        "disk_bytes": disk,
        "bytes_read": read,
        "header_bytes": source.header.header_bytes,
        "requests": source.file.requests,
        "fraction": read / size,
        "goal_met": read / size <= GOAL,
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".zoo" / "gguf-bytes")
    args = parser.parse_args()
    result = run(args.work)
    env = environment()
    result["environment"] = env
    mib = 2**20
    markdown = (
        "## GGUF: bytes read from a 7B-shaped GGUF over HTTP (issue 16)\n\n"
        f"Command: `python -m bench.gguf_bytes`  (commit {env.get('commit')}, {env.get('cpus', '?')} CPUs)\n\n"
        "| checkpoint | weights | on disk (sparse) | bytes read | of which header | requests | fraction | status "
        "| index s |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        f"| 7B-shaped GGUF, Q4_K_M-like mix | {result['weights_bytes'] / 2**30:.2f} GiB | "
        f"{result['disk_bytes'] / mib:.0f} MiB | {result['bytes_read'] / mib:.1f} MiB | "
        f"{result['header_bytes'] / mib:.2f} MiB | {result['requests']} | "
        f"**{100 * result['fraction']:.2f}%** | {result['status']} | {result['seconds']} |\n"
    )
    publish("gguf_bytes", result, markdown)


if __name__ == "__main__":
    main()
