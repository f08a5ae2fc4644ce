"""A hostile model card on the crawl path: the bundled Hub server on 127.0.0.1 serves a repo whose
README front matter is the probe's alias bomb (a ~1 MB card, one 500 kB string referenced 60,000
times) beside a valid small-zoo model, and ``pedigree crawl`` runs in a child process (peak RSS from
VmHWM, a watchdog kill past the bound).  The issue: "a ~1 MB model card kills a whole ingest or
crawl"; tests/test_hostile_cards.py covers ingest, this the crawl.

The run must end by itself, under the memory bound, without a traceback; the neighbour is indexed,
the hostile model too, its card ignored with a one-line reason; the served folder is untouched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import test_hostile_cards as cards

from pedigree.crawler.hub_server import HubServer

BASE_MODEL = "llama-lab/tiny-llama-s1"
NEIGHBOUR = "good/neighbour"
HOSTILE = "cards/alias-bomb"


def test_an_alias_bomb_card_is_ignored_by_the_crawl_and_the_neighbour_indexed(small_zoo: Path, tmp_path: Path) -> None:
    root = tmp_path / "served"
    shutil.copytree(small_zoo / BASE_MODEL, root / NEIGHBOUR)
    target = shutil.copytree(small_zoo / BASE_MODEL, root / HOSTILE)
    bomb = cards.CARDS["alias-bomb"]
    (target / "README.md").write_bytes(bomb if isinstance(bomb, bytes) else bomb.encode())
    before = cards._tree(root)
    home = tmp_path / "home"
    with HubServer(root) as hub:
        run = cards.run_cli_bounded(["crawl", "--endpoint", hub.url, "--home", str(home), "--json"])
    print(f"crawl with an alias-bomb card: {run.seconds:.1f} s, peak RSS {run.peak_rss / 2**20:.0f} MiB")
    assert not run.killed, run.killed
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Traceback" not in run.stdout + run.stderr
    assert "internal error" not in run.stdout + run.stderr
    assert run.peak_rss < cards.PEAK_RSS, f"peak RSS {run.peak_rss / 2**20:.0f} MiB"
    outcomes = {r["id"]: r for r in json.loads(run.stdout)["repos"]}
    assert outcomes[NEIGHBOUR]["status"] == "indexed", outcomes
    assert outcomes[HOSTILE]["status"] == "indexed", outcomes
    stored = cards._stored_cards(home)
    reason = stored[HOSTILE]["card_error"]
    assert reason.startswith("card ignored: ") and "expand" in reason and "\n" not in reason, reason
    assert stored[HOSTILE]["tags"] == [] and len(json.dumps(stored[HOSTILE], default=str)) < 1000
    assert stored[NEIGHBOUR]["card_error"] is None and stored[NEIGHBOUR]["tags"]
    assert cards._tree(root) == before
