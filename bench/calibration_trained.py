"""Independently trained small models for the calibration benchmark (``bench.calibration``).

    python -m bench.calibration_trained [--count 21] [--workers 1]

Two architectures, :data:`MODELS_PER_ARCH` models each: a gated (SwiGLU) Llama with grouped-query
attention and a non-gated, tied GPT-2, and a second batch of the GPT-2 (``gpt2-b``: the same shape
and recipe, its own seeds and its own cut of the corpus, salt :data:`CORPUS_SALT_B`) - a replication
of the first, drawn after its figure was known - and a third (``gpt2-c``, :data:`CORPUS_SALT_C`), drawn
after the two batches pooled were one pair over the bars.  Model i of an architecture has its own
initialisation seed, its own data seed and its own slice of the corpus: the i-th of
:data:`MODELS_PER_ARCH` disjoint slices of every domain of a stdlib corpus cut with its own salt
(:data:`CORPUS_SALT`, neither zoo A's nor zoo B's).  The tokenizers are zoo A's (its Llama and
GPT-2 roots): the models of one architecture share a tokenizer, as independently trained models of
one family on the Hub often do - every probe token is shared, the hardest case for the dimension
tests.  Nothing here is taken from
zoo B.

Each model is a Hub-layout folder under ``bench/.zoo/calibration/<arch>-<key>/model-NN`` (weights,
config, tokenizer files, ``train.json`` with seeds, slice, steps and held-out losses; ``train.json``
is written last, so a folder without it is rebuilt).  The key hashes this file, the zoo's training
and architecture code, the corpus, the tokenizer and the torch version: changing any of them
rebuilds, and nothing else does.  ``build_trained(arch, count)`` builds the first ``count`` models
(a quick run builds a prefix of the full set, so the full run reuses them).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch

from bench.report import ROOT
from pedigree.zoo.architectures import Dims, make_config
from pedigree.zoo.corpus import DOMAINS, build_corpus
from pedigree.zoo.models import init_state_dict, save_checkpoint
from pedigree.zoo.tokenization import encode, special_ids
from pedigree.zoo.training import TokenData, TrainConfig, train

CACHE = ROOT / "bench" / ".zoo" / "calibration"
ZOO_A = ROOT / "bench" / ".zoo" / "full"
MODELS_PER_ARCH = 21
CORPUS_SALT = "calibration-trained"
CORPUS_SALT_B = "calibration-trained-b"  # the second GPT-2 batch's cut of the corpus
CORPUS_SALT_C = "calibration-trained-c"  # the third's
CHARS_PER_DOMAIN = 600_000
STEPS, LR, BATCH, SEQ_LEN = 600, 3e-3, 16, 64
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
CODE_FILES = ("training.py", "architectures.py", "hf_layout.py", "tokenization.py", "models.py")


@dataclass(frozen=True)
class TrainedArch:
    name: str
    model_type: str
    tokenizer_root: str  # zoo A root whose tokenizer the models use
    dims: Dims
    seed_base: int
    corpus_salt: str = CORPUS_SALT


ARCHS = {
    "llama-gqa": TrainedArch(
        "llama-gqa", "llama", "llama-lab/tiny-llama-s1", Dims(64, 4, 4, 176, kv_heads=2, max_positions=128), 50_000
    ),
    "gpt2": TrainedArch("gpt2", "gpt2", "gpt-lab/tiny-gpt2", Dims(64, 4, 4, 256, max_positions=128), 60_000),
    "gpt2-b": TrainedArch(
        "gpt2-b", "gpt2", "gpt-lab/tiny-gpt2", Dims(64, 4, 4, 256, max_positions=128), 70_000, CORPUS_SALT_B
    ),
    "gpt2-c": TrainedArch(
        "gpt2-c", "gpt2", "gpt-lab/tiny-gpt2", Dims(64, 4, 4, 256, max_positions=128), 80_000, CORPUS_SALT_C
    ),
}


def _tokenizer_folder(arch: TrainedArch) -> Path:
    folder = ZOO_A / arch.tokenizer_root
    if not (folder / "tokenizer.json").exists():
        from pedigree.zoo.build import build_zoo

        build_zoo(ZOO_A, "full")
    return folder


def cache_key(arch: TrainedArch, corpus_sha256: str) -> str:
    """SHA-256 over this builder's source, the zoo code it trains with, corpus, tokenizer and torch."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    zoo_code = Path(init_state_dict.__code__.co_filename).parent
    for name in CODE_FILES:
        digest.update(name.encode() + b"\0" + (zoo_code / name).read_bytes())
    digest.update(corpus_sha256.encode())
    digest.update((_tokenizer_folder(arch) / "tokenizer.json").read_bytes())
    digest.update(".".join(torch.__version__.split(".")[:2]).encode())
    digest.update(arch.name.encode())
    return digest.hexdigest()


def corpus_slice(domains: dict[str, str], index: int) -> str:
    """The ``index``-th of :data:`MODELS_PER_ARCH` disjoint slices of every domain, joined."""
    parts = []
    for name in DOMAINS:
        text = domains[name]
        size = len(text) // MODELS_PER_ARCH
        parts.append(text[index * size : (index + 1) * size])
    return "\n\n".join(parts)


def _train_one(task: tuple[str, int, str, str]) -> dict:
    """Worker: train model ``index`` of ``arch`` on ``text`` and write its folder (under a file lock,
    so two builders never write one folder; the second reuses the first's model)."""
    arch_name, index, text, folder_name = task
    folder = Path(folder_name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "train.json").exists():
            return json.loads((folder / "train.json").read_text())
        return _train_locked(arch_name, index, text, folder)


def _train_locked(arch_name: str, index: int, text: str, folder: Path) -> dict:
    torch.set_num_threads(1)
    arch = ARCHS[arch_name]
    start = time.perf_counter()
    from tokenizers import Tokenizer

    source = _tokenizer_folder(arch)
    tok = Tokenizer.from_file(str(source / "tokenizer.json"))
    config = make_config(arch.model_type, arch.dims, tok.get_vocab_size(), special_ids(tok, arch.model_type), "float32")
    seed = arch.seed_base + index
    data = TokenData.from_ids(encode(tok, text))
    tc = TrainConfig(steps=STEPS, lr=LR, batch=BATCH, seq_len=SEQ_LEN, seed=seed + 1000)
    state_dict, result = train(config, init_state_dict(config, seed), data, tc)
    shutil.rmtree(folder, ignore_errors=True)
    save_checkpoint(folder, config, state_dict)
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copyfile(source / name, folder / name)
    notes = {
        "arch": arch_name,
        "index": index,
        "init_seed": seed,
        "data_seed": seed + 1000,
        "slice": f"{index}/{MODELS_PER_ARCH} of every domain (salt {arch.corpus_salt!r})",
        "train_tokens": len(data.train),
        "heldout_tokens": len(data.heldout),
        **result.as_notes(),
        "seconds": round(time.perf_counter() - start, 1),
    }
    (folder / "train.json").write_text(json.dumps(notes, indent=2) + "\n")
    return notes


def build_trained(arch_name: str, count: int = MODELS_PER_ARCH, workers: int = 1) -> list[Path]:
    """Build (or reuse) the first ``count`` models of ``arch_name``; returns their folders."""
    if not 0 < count <= MODELS_PER_ARCH:
        raise ValueError(f"count must be in 1..{MODELS_PER_ARCH}")
    arch = ARCHS[arch_name]
    corpus = build_corpus(CHARS_PER_DOMAIN, salt=arch.corpus_salt)
    root = CACHE / f"{arch_name}-{cache_key(arch, corpus.sha256)[:16]}"
    folders = [root / f"model-{i:02d}" for i in range(count)]
    todo = [(arch_name, i, corpus_slice(corpus.domains, i), str(f)) for i, f in enumerate(folders)]
    todo = [t for t in todo if not (Path(t[3]) / "train.json").exists()]
    if todo:
        with get_context("spawn").Pool(max(1, min(workers, len(todo)))) as pool:
            for notes in pool.imap_unordered(_train_one, todo):
                print(
                    f"trained {arch_name} #{notes['index']}: loss {notes['initial_loss']} -> {notes['final_loss']} "
                    f"in {notes['seconds']} s",
                    flush=True,
                )
    return folders


def training_summary(folders: list[Path]) -> dict:
    """Steps, seconds and held-out losses of built models (from their ``train.json``)."""
    notes = [json.loads((f / "train.json").read_text()) for f in folders]
    if not notes:
        return {}

    def spread(key: str) -> list[float]:
        values = [n[key] for n in notes]
        return [round(min(values), 3), round(sum(values) / len(values), 3), round(max(values), 3)]

    return {
        "models": len(notes),
        "steps": notes[0]["steps"],
        "tokens_seen": notes[0]["tokens_seen"],
        "train_tokens_min_mean_max": spread("train_tokens"),
        "initial_heldout_loss_min_mean_max": spread("initial_loss"),
        "final_heldout_loss_min_mean_max": spread("final_loss"),
        "seconds_per_model_min_mean_max": spread("seconds"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=MODELS_PER_ARCH)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--arch", choices=sorted(ARCHS), action="append")
    args = parser.parse_args(argv)
    names = args.arch or sorted(ARCHS)
    for count in sorted({min(4, args.count), args.count}):  # a quick run's prefix of every architecture first
        built = {name: build_trained(name, count, args.workers) for name in names}
    for name, folders in built.items():
        print(name, json.dumps(training_summary(folders)))


if __name__ == "__main__":
    main()
