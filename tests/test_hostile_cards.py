"""Hostile model cards, config.json and tokenizer files, through the real CLI in a subprocess.

One ``pedigree ingest`` run over a folder of hostile checkpoints beside a valid neighbour (all
copies of one small-zoo model with one file replaced), its peak memory the child's own
high-water mark (VmHWM, ``tests.bounded_cli``) while a watchdog kills it past :data:`KILL_RSS`
(so a regression fails the test instead of the machine).  Each test then asserts on that run: it
ended by itself, under :data:`PEAK_RSS`, with no traceback; the neighbour is indexed; nothing in
the input folder changed.

- A bad card never fails its model: the model is indexed without the card's facts and the
  stored card says ``card ignored: <reason>`` (alias bombs that expand when the card is written
  out, alias loops, a date like 2024-13-45, deep nesting, a list for front matter, a README
  that is not UTF-8 or larger than the card limit).
- A bad config.json or tokenizer file fails that one model with a one-line reason, never an
  ``internal error`` (nesting past Python's recursion limit, files whose parse would take
  gigabytes, bytes that are not UTF-8, components of the wrong type).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests import bounded_cli
from tests.bounded_cli import BoundedRun

ROOT = Path(__file__).resolve().parents[1]
BASE_MODEL = "llama-lab/tiny-llama-s1"
PEAK_RSS = 1 * 2**30  # the whole run, torch and DuckDB included (a clean run peaks near 0.55 GiB)
KILL_RSS = 3 * 2**30
RUN_TIMEOUT = 240


def run_cli_bounded(args: list[str], *, timeout: float = RUN_TIMEOUT, kill_rss: int = KILL_RSS) -> BoundedRun:
    """``python -m pedigree ARGS`` in a child, bounded (``tests.bounded_cli``)."""
    return bounded_cli.run_cli_bounded(args, timeout=timeout, kill_rss=kill_rss)


# -- the hostile files -------------------------------------------------------------------------

BIG = "x" * 500_000
LAUGHS = "\n".join(
    [f"l0: &l0 [{', '.join(['lol'] * 10)}]"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    + ["tags: *l8"]
)


def _front(body: str) -> str:
    return f"---\n{body}\n---\n\n# a card\n"


CARDS: dict[str, str | bytes] = {
    # 500 kB + 200 references: 100 MB when the card is written out as JSON
    "alias-expansion": _front(f"a: &a {BIG}\nbase_model: org/parent\ntags: [{', '.join(['*a'] * 200)}]"),
    # the probe's full case: a ~1 MB card, one large string referenced 60,000 times (30 GB written out)
    "alias-bomb": _front(f"a: &a {BIG}\ntags: [{', '.join(['*a'] * 60_000)}]"),
    "billion-laughs": _front(LAUGHS),
    "alias-loop": _front("base_model: &loop [org/parent, *loop]"),
    "bad-date": _front("base_model: org/parent\ncreated_at: 2024-13-45"),
    "bad-utc-offset": _front("created_at: 2024-01-01 00:00:00 +99:00"),
    "huge-integer": _front(f"base_model: org/parent\ndownloads: {'9' * 5000}"),
    "deep-block-nesting": _front(
        "base_model: org/parent\n" + "".join(" " * i + "k:\n" for i in range(200)) + " " * 200 + "v"
    ),
    "deep-flow-nesting": _front("base_model: org/parent\nx: " + "[" * 5000 + "]" * 5000),
    "not-a-mapping": _front("- org/parent\n- finetune"),
    "python-tag": _front("base_model: !!python/object/apply:os.system ['true']"),
    "not-utf8": b"---\nbase_model: org/parent\nlicense: \xff\xfe\n---\n",
    "too-large": _front("base_model: org/parent") + "y" * (2 * 2**20),
}
"""Card case -> README.md content."""

ODD_READMES: dict[str, Callable[[Path], None]] = {
    "readme-fifo": lambda path: os.mkfifo(path),
    "readme-device": lambda path: path.symlink_to("/dev/zero"),
}
"""Card case -> how README.md is made something other than a regular file."""


def _config(base: Path, tail: str) -> str:
    """The base config.json with ``"x": tail`` added (``tail`` raw JSON)."""
    return (base / "config.json").read_text().rstrip().rstrip("}").rstrip() + f', "x": {tail}}}'


def _tokenizer(base: Path, tail: str) -> str:
    return (base / "tokenizer.json").read_text().rstrip().rstrip("}").rstrip() + f', "x": {tail}}}'


def _nest(depth: int) -> str:
    return "[" * depth + "]" * depth


FILES: dict[str, tuple[Callable[[Path], dict[str, str | bytes | None]], str]] = {
    "config-nested-5000": (lambda b: {"config.json": _config(b, _nest(5000))}, "nested too deeply"),
    "config-nested-100": (lambda b: {"config.json": _config(b, _nest(100))}, "deeper than 64 levels"),
    "config-huge": (lambda b: {"config.json": _config(b, "[" + ",".join(["{}"] * 3_000_000) + "]")}, "byte limit"),
    "config-not-utf8": (lambda b: {"config.json": _config(b, '"\xff"').encode("latin-1")}, "not valid UTF-8"),
    "tokenizer-nested-5000": (lambda b: {"tokenizer.json": _tokenizer(b, _nest(5000))}, "nested too deeply"),
    "tokenizer-nested-100": (lambda b: {"tokenizer.json": _tokenizer(b, _nest(100))}, "deeper than 64 levels"),
    "tokenizer-many-objects": (
        lambda b: {"tokenizer.json": _tokenizer(b, "[" + ",".join(["{}"] * 2_500_000) + "]")},
        "JSON objects and arrays",
    ),
    "tokenizer-not-utf8": (lambda b: {"tokenizer.json": b"\xff" + (b / "tokenizer.json").read_bytes()}, "UTF-8"),
    "vocab-txt-not-utf8": (lambda b: {"tokenizer.json": None, "vocab.txt": b"[PAD]\n\xff\xfe\n"}, "UTF-8"),
    "tokenizer-model-garbage": (
        lambda b: {"tokenizer.json": None, "tokenizer.model": b"\x0a\xff\xff\xff"},
        "tokenizer",
    ),
}
"""Case -> (files to write (None: remove), a substring of the model's one-line reason)."""

WRONG_TYPES = {
    "tokenizer-component-types": lambda spec: {
        **spec,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": 5},
        "normalizer": {"type": "Sequence", "normalizers": {"a": 1}},
        "added_tokens": 7,
    },
}
"""Case -> a tokenizer.json whose components have the wrong JSON types: the model is indexed."""


@dataclass(frozen=True)
class HostileRun:
    folder: Path
    home: Path
    run: BoundedRun
    outcomes: dict[str, dict[str, Any]]
    cards: dict[str, dict[str, Any]]
    before: dict[str, tuple[int, int]]


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def _stored_cards(home: Path) -> dict[str, dict[str, Any]]:
    conn = duckdb.connect(str(home / "pedigree.duckdb"), read_only=True)
    try:
        rows = conn.execute("SELECT id, card, created_at FROM models").fetchall()
    finally:
        conn.close()
    return {i: {**(json.loads(card) if card else {}), "_created_at": created} for i, card, created in rows}


@pytest.fixture(scope="module")
def hostile_run(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> HostileRun:
    base = small_zoo / BASE_MODEL
    folder = tmp_path_factory.mktemp("hostile-cards") / "models"
    shutil.copytree(base, folder / "good" / "neighbour")
    for case, content in CARDS.items():
        target = shutil.copytree(base, folder / "cards" / case)
        (target / "README.md").write_bytes(content if isinstance(content, bytes) else content.encode())
    for case, make in ODD_READMES.items():
        target = shutil.copytree(base, folder / "cards" / case)
        (target / "README.md").unlink()
        make(target / "README.md")
    for case, (files, _) in FILES.items():
        target = shutil.copytree(base, folder / "files" / case)
        for name, data in files(base).items():
            if data is None:
                (target / name).unlink()
            else:
                (target / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    for case, change in WRONG_TYPES.items():
        target = shutil.copytree(base, folder / "files" / case)
        (target / "tokenizer.json").write_text(json.dumps(change(json.loads((base / "tokenizer.json").read_text()))))
    before = _tree(folder)
    home = folder.parent / "home"
    run = run_cli_bounded(["ingest", str(folder), "--home", str(home), "--confirm", "0", "--json"])
    outcomes: dict[str, dict[str, Any]] = {}
    if run.returncode == 0 and not run.killed:
        outcomes = {m["id"]: m for m in json.loads(run.stdout)["models"]}
    cards = _stored_cards(home) if (home / "pedigree.duckdb").exists() and outcomes else {}
    return HostileRun(folder, home, run, outcomes, cards, before)


def test_the_run_ends_by_itself_within_memory_and_without_traceback(hostile_run: HostileRun) -> None:
    run = hostile_run.run
    print(f"hostile cards run: {run.seconds:.1f} s, peak RSS {run.peak_rss / 2**20:.0f} MiB")
    assert not run.killed, run.killed
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stdout + run.stderr
    assert run.peak_rss < PEAK_RSS, f"peak RSS {run.peak_rss / 2**20:.0f} MiB"


def test_the_valid_neighbour_is_indexed_and_the_input_folder_untouched(hostile_run: HostileRun) -> None:
    assert hostile_run.outcomes["good/neighbour"]["status"] == "indexed"
    assert _tree(hostile_run.folder) == hostile_run.before


@pytest.mark.parametrize("case", sorted(CARDS) + sorted(ODD_READMES))
def test_a_bad_card_is_ignored_and_its_model_indexed(hostile_run: HostileRun, case: str) -> None:
    model_id = f"cards/{case}"
    assert hostile_run.outcomes[model_id]["status"] == "indexed", hostile_run.outcomes[model_id]
    card = hostile_run.cards[model_id]
    reason = card["card_error"]
    assert reason.startswith("card ignored: ") and "\n" not in reason and len(reason) < 400, reason
    assert card["base_model"] == [] and card["tags"] == [] and card["created_at"] is None
    assert card["_created_at"] is None
    assert len(json.dumps(card)) < 1000


def test_card_reasons_say_what_was_wrong(hostile_run: HostileRun) -> None:
    reasons = {case: hostile_run.cards[f"cards/{case}"]["card_error"] for case in [*CARDS, *ODD_READMES]}
    assert "expand" in reasons["alias-expansion"] and "expand" in reasons["billion-laughs"]
    assert "refers to the node that contains it" in reasons["alias-loop"]
    assert "month must be in 1..12" in reasons["bad-date"]
    assert "deeper than 64 levels" in reasons["deep-block-nesting"]
    assert "nesting depth" in reasons["deep-flow-nesting"]
    assert "not a mapping" in reasons["not-a-mapping"]
    assert "python/object" in reasons["python-tag"]
    assert "README.md is not valid UTF-8" in reasons["not-utf8"]
    assert "larger than the 1048576-byte limit" in reasons["too-large"]
    assert "README.md is not a regular file" in reasons["readme-fifo"]
    assert "README.md is not a regular file" in reasons["readme-device"]


def test_the_neighbours_good_card_is_kept(hostile_run: HostileRun) -> None:
    card = hostile_run.cards["good/neighbour"]
    assert card["card_error"] is None and card["created_at"] and card["tags"]


@pytest.mark.parametrize("case", sorted(FILES))
def test_a_bad_config_or_tokenizer_fails_its_model_with_a_reason(hostile_run: HostileRun, case: str) -> None:
    outcome = hostile_run.outcomes[f"files/{case}"]
    error = outcome["error"] or ""
    assert outcome["status"] == "failed", outcome
    assert FILES[case][1] in error and "internal error" not in error, error
    assert "\n" not in error and len(error) < 600


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_tokenizer_components_of_the_wrong_type_are_ignored(hostile_run: HostileRun, case: str) -> None:
    assert hostile_run.outcomes[f"files/{case}"]["status"] == "indexed", hostile_run.outcomes[f"files/{case}"]
