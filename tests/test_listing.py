"""The crawler's own listing client: pages, bounds, and entries that do not describe a model."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pedigree.crawler.http_client import hub_client
from pedigree.crawler.hub_server import HubServer
from pedigree.crawler.listing import BadEntry, list_changed, listed_repo
from pedigree.errors import RemoteError


def test_an_entry_is_read_with_its_card_fields():
    repo = listed_repo(
        {
            "id": "org/name",
            "sha": "a" * 40,
            "lastModified": "2024-03-01T00:00:00.000Z",
            "createdAt": "2024-02-01T12:00:00.000Z",
            "siblings": [{"rfilename": "model.safetensors"}, {"rfilename": "config.json"}],
            "cardData": {"base_model": "org/base", "base_model_relation": "finetune"},
            "gated": "manual",
        }
    )
    assert repo.repo_id == "org/name" and repo.has_safetensors and repo.gated == "manual"
    assert repo.last_modified == datetime(2024, 3, 1, tzinfo=UTC) and repo.base_model == ["org/base"]


@pytest.mark.parametrize(
    "entry, why",
    [
        ("not an object", "not a JSON object"),
        ({"id": 42}, "not a model id"),
        ({"id": "../etc/passwd"}, "not a model id"),
        ({"id": "org/a", "lastModified": "2024-13-45T00:00:00Z"}, "not a timestamp"),
        ({"id": "org/a", "siblings": "model.safetensors"}, "not a list"),
        ({"id": "org/a", "siblings": [{"name": 1}]}, "no file name"),
        ({"id": "org/a", "sha": ["x"]}, "sha"),
    ],
)
def test_a_malformed_entry_is_set_aside_with_its_reason(entry: object, why: str):
    with pytest.raises(BadEntry, match=why):
        listed_repo(entry)


def test_pages_are_followed_to_the_end(small_zoo: Path):
    with HubServer(small_zoo, page_size=5, max_page_size=5) as hub, hub_client() as client:
        listing = list_changed(client, hub.url, None)
    names = {p.parent.relative_to(small_zoo).as_posix() for p in small_zoo.glob("*/*/config.json")}
    assert {r.repo_id for r in listing.repos} == names and listing.pages == -(-len(names) // 5)
    assert not listing.rejected


def test_an_endpoint_nobody_listens_on_is_one_remote_error():
    from pedigree.crawler.http_retry import RetryPolicy

    with hub_client() as client, pytest.raises(RemoteError, match="127.0.0.1:1 listing page 1: ConnectError"):
        list_changed(client, "http://127.0.0.1:1", None, retry=RetryPolicy(attempts=2, base_delay=0.01))
