"""The interactive API docs work offline: /docs is Swagger UI whose script and styles come from
this server (vendored in package data), never from a CDN."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from serving import served


def test_docs_load_swagger_ui_from_this_server_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with served(home) as server:
        page = httpx.get(f"{server.url}/docs", timeout=30)
        assert page.status_code == 200 and "swagger-ui" in page.text
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page.text)
        assert urls, page.text
        assert not [u for u in urls if "://" in u], urls  # every asset relative to this server
        assets = [u for u in urls if u.startswith("/static/")]
        assert {Path(u).name for u in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
        for url in assets:
            response = httpx.get(f"{server.url}{url}", timeout=30)
            assert response.status_code == 200 and len(response.content) > 100, url
        spec = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
        assert "/api/models/{model_id}/lineage" in spec["paths"] or any("lineage" in p for p in spec["paths"])
