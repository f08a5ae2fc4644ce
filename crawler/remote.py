"""Models indexed from a Hub endpoint: their source URI, and reopening them for later stages.

An indexed model remembers where it was read from.  For a crawled model that is
``<endpoint>#<repo_id>@<sha>`` ('#' never occurs in an endpoint URL's path or in a repo id), so
the independence tests and the lineage stage read exactly the revision that was fingerprinted,
through the same range-reading source (a repo whose weights are one ``.gguf`` through
:mod:`.http_gguf`, as the crawl read it).
"""

from __future__ import annotations

import os
from urllib.parse import quote

from pedigree.crawler.http_client import hub_client
from pedigree.crawler.http_fetch import Fetcher
from pedigree.crawler.http_gguf import HubGGUFCheckpoint, HubGGUFFile
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.crawler.http_source import HubCheckpoint
from pedigree.crawler.listing import MAX_INFO_BYTES, SHA, BadEntry, listed_repo, parse_page, valid_repo_id
from pedigree.errors import ModelNotFoundError, RemoteError
from pedigree.indexer.openers import register_opener
from pedigree.indexer.sources import TensorSource


def hub_uri(endpoint: str, repo_id: str, sha: str) -> str:
    return f"{endpoint.rstrip('/')}#{repo_id}@{sha}"


def parse_hub_uri(uri: str) -> tuple[str, str, str]:
    """(endpoint, repo id, sha) of a crawled model's source; the id and the sha are checked as the
    listing checks them (a stored URI naming ``o/../../r4`` is refused, not fetched)."""
    endpoint, _, rest = uri.partition("#")
    repo_id, _, sha = rest.rpartition("@")
    if not endpoint or not valid_repo_id(repo_id) or not (SHA.fullmatch(sha) or sha == "main"):
        raise ModelNotFoundError(f"not a Hub source: {uri[:300]!r}")
    return endpoint, repo_id, sha


def open_hub(uri: str, token: str | None = None) -> TensorSource:
    """The crawled revision of a model, reopened through HTTP range reads."""
    endpoint, repo_id, sha = parse_hub_uri(uri)
    token = token or os.environ.get("HF_TOKEN") or None
    client = hub_client(token)
    try:
        fetcher = Fetcher(client, endpoint, token=token, retry=RetryPolicy(), budget=None, label=repo_id)
        url = f"{endpoint}/api/models/{quote(repo_id, safe='/')}/revision/{quote(sha, safe='')}"
        info, _ = fetcher.read_json(url, f"{repo_id}@{sha}", MAX_INFO_BYTES, parse_page)
        listed = listed_repo(info)
        files = listed.files
        if listed.gguf_only:
            return HubGGUFCheckpoint(
                HubGGUFFile(endpoint, repo_id, sha, files, token=token, client=client, own_client=True)
            )
    except BadEntry as error:
        client.close()
        raise RemoteError(f"{repo_id}@{sha}: the Hub's model info is unusable: {error}") from None
    except BaseException:
        client.close()
        raise
    return HubCheckpoint(endpoint, repo_id, sha, list(files), token=token, client=client, own_client=True)


for _scheme in ("http", "https"):
    register_opener(_scheme, open_hub)
