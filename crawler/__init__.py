"""The Hub crawler: list what changed, read only the bytes the index needs, keep state.

- :mod:`crawler.listing` - new and changed repos since the high-water mark (huggingface_hub);
- :mod:`crawler.http_source` / :mod:`crawler.http_retry` - ``TensorSource`` over HTTP range
  requests (httpx): 206/Content-Range checks, retries honouring RateLimit/Retry-After, a byte
  budget per model;
- :mod:`crawler.crawl` - the walk over the listing with per-repo status in DuckDB;
- :mod:`crawler.remote` - reopening a crawled revision for later stages;
- :mod:`crawler.hub_server` - the bundled Hub-compatible server (tests, demo, private mirrors).
"""
