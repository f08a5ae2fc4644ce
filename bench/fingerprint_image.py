"""Fingerprint pictures: does the picture distance follow the fingerprint cosine?

``python -m bench.fingerprint_image`` indexes the small zoo A and the held-out zoo B with the real
CLI (``pedigree ingest ZOO --confirm 0`` into temporary data folders), draws every model's
picture (:mod:`pedigree.query.fingerprint_image`, nothing tuned on zoo B) and, over all pairs,
correlates the picture distance (mean absolute RGB difference of the rasters, / 255) with the
cosine of the model vectors (Pearson and Spearman), and with the block-aligned fingerprint score.
Pairs are related when truth.json puts them in one family or they share an ancestor (a merge of
two families is related to both).  It also writes the contact sheet (one family next to unrelated
models) and a scatter plot to docs/img/.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from scipy import stats

from bench.metrics import roc_auc
from bench.report import ROOT, environment, publish
from bench.zoo_cache import small_zoo_b_path, small_zoo_path
from pedigree.indexer.scoring import FingerprintView, align_layers
from pedigree.query import fingerprint_image as fi
from pedigree.query.related import view_of
from pedigree.storage.db import Store

IMAGES = ROOT / "docs" / "img"
SHEET_FAMILY = [
    "llama-lab/tiny-llama-s1",
    "testsmith/tiny-llama-tests",
    "quantfolk/tiny-llama-int8",
    "mirror-models/tiny-llama-remix",
    "slimming/tiny-llama-depth-pruned",
    "soup-kitchen/tiny-llama-merge",
]
SHEET_UNRELATED = [
    "llama-lab/tiny-llama-s2",
    "distill-works/tiny-llama-distilled",
    "qwen-lab/tiny-qwen2",
    "gpt-lab/tiny-gpt2",
    "neox-lab/tiny-neox",
    "bert-lab/tiny-bert",
]


def index_zoo(zoo: Path, home: Path) -> None:
    """``pedigree ingest ZOO --confirm 0 --home HOME`` (fingerprints only, no tests)."""
    command = [sys.executable, "-m", "pedigree", "ingest", str(zoo), "--confirm", "0", "--home", str(home), "--json"]
    subprocess.run(command, check=True, capture_output=True)


def ancestors(model: str, truth: dict) -> set[str]:
    """The model and every ancestor truth.json names (parents, recursively)."""
    seen, todo = set(), [model]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(truth.get(current, {}).get("parents", []))
    return seen


def related(a: str, b: str, truth: dict) -> bool:
    return truth[a]["family"] == truth[b]["family"] or bool(ancestors(a, truth) & ancestors(b, truth))


def measure(home: Path, truth: dict) -> tuple[dict, list[dict], dict[str, FingerprintView]]:
    """Every pair's cosine, score and picture distance, and the correlations over them."""
    with Store(home / "pedigree.duckdb", read_only=True) as store:
        ids = sorted(r.id for r in store.models("indexed"))
        views = {m: view_of(store, m, fi.stored_version(store, m) or "") for m in ids}
    rasters = {m: fi.raster(fi.picture_of(v)) for m, v in views.items()}
    pairs = []
    for a, b in combinations(ids, 2):
        pairs.append(
            {
                "a": a,
                "b": b,
                "related": related(a, b, truth),
                "cosine": round(float(np.dot(views[a].model, views[b].model)), 4),
                "score": round(align_layers(views[a].layers, views[b].layers).score, 4),
                "distance": round(fi.image_distance(rasters[a], rasters[b]), 4),
            }
        )
    distance = np.array([p["distance"] for p in pairs])
    rel = np.array([p["related"] for p in pairs])
    figures = {
        "models": len(ids),
        "pairs": len(pairs),
        "related_pairs": int(rel.sum()),
        "unrelated_pairs": int((~rel).sum()),
        "pearson_distance_cosine": _r(stats.pearsonr(distance, [p["cosine"] for p in pairs])[0]),
        "spearman_distance_cosine": _r(stats.spearmanr(distance, [p["cosine"] for p in pairs])[0]),
        "pearson_distance_score": _r(stats.pearsonr(distance, [p["score"] for p in pairs])[0]),
        "spearman_distance_score": _r(stats.spearmanr(distance, [p["score"] for p in pairs])[0]),
        "related_distance": _spread(distance[rel]),
        "unrelated_distance": _spread(distance[~rel]),
        # P(a related pair's picture is closer than an unrelated pair's)
        "auc_related_closer": _r(roc_auc(-distance[rel], -distance[~rel])),
        "related_closer_than_every_unrelated": int((distance[rel] < distance[~rel].min()).sum()),
    }
    return figures, pairs, views


def _r(value: float) -> float:
    return round(float(value), 4)


def _spread(values: np.ndarray) -> dict:
    return {"min": _r(values.min()), "median": _r(np.median(values)), "max": _r(values.max())}


def contact_sheet(views: dict[str, FingerprintView], truth: dict) -> str:
    """An SVG: the family of SHEET_FAMILY[0] on the first row, unrelated models on the second;
    each picture an embedded PNG, labelled with id, relation, cosine and picture distance to the root."""
    root = views[SHEET_FAMILY[0]]
    root_raster = fi.raster(fi.picture_of(root))
    cell_w, cell_h, label_h, top = 200, fi.HEIGHT, 58, 34
    width = 16 + cell_w * len(SHEET_FAMILY)
    height = 2 * (top + cell_h + label_h) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Verdana, sans-serif">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    rows = [
        (SHEET_FAMILY, f"One family: {SHEET_FAMILY[0]} and models derived from it"),
        (SHEET_UNRELATED, "Unrelated models: other seeds, distilled from scratch, other architectures"),
    ]
    for r, (models, title) in enumerate(rows):
        y0 = r * (top + cell_h + label_h) + 8
        parts.append(
            f'<text x="16" y="{y0 + 18}" font-size="15" font-weight="bold" fill="#18181b">{escape(title)}</text>'
        )
        for c, model in enumerate(models):
            picture = fi.picture_of(views[model])
            png = base64.b64encode(fi.png_bytes(picture, 2)).decode()
            x, y = 16 + c * cell_w, y0 + top
            parts.append(
                f'<image x="{x}" y="{y}" width="{fi.WIDTH}" height="{fi.HEIGHT}" href="data:image/png;base64,{png}"/>'
            )
            cosine = float(np.dot(root.model, views[model].model))
            distance = fi.image_distance(root_raster, fi.raster(picture))
            org, name = model.split("/", 1)
            lines = [
                (f"{org}/", "#52525b"),
                (name, "#18181b"),
                (f"{truth[model]['relation']} · cos {cosine:.2f} · d {distance:.3f}", "#3f3f46"),
            ]
            for i, (text, colour) in enumerate(lines):
                parts.append(
                    f'<text x="{x + 8}" y="{y + cell_h + 14 + 15 * i}" font-size="12" fill="{colour}">'
                    f"{escape(text)}</text>"
                )
    parts.append(
        f'<text x="16" y="{height - 12}" font-size="12" fill="#52525b">cos: model-vector cosine to '
        f"{escape(SHEET_FAMILY[0])}; d: picture distance to it (mean absolute RGB difference / 255)</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def scatter(zoos: dict[str, list[dict]]) -> str:
    """An SVG scatter plot: picture distance against model-vector cosine, every pair of each zoo."""
    panel_w, panel_h, pad = 360, 260, 46
    width, height = len(zoos) * (panel_w + pad) + pad, panel_h + 2 * pad
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Verdana, sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    top_distance = max(p["distance"] for pairs in zoos.values() for p in pairs) * 1.05
    for k, (name, pairs) in enumerate(zoos.items()):
        x0, y0 = pad + k * (panel_w + pad), pad
        parts.append(f'<rect x="{x0}" y="{y0}" width="{panel_w}" height="{panel_h}" fill="none" stroke="#a1a1aa"/>')
        parts.append(f'<text x="{x0}" y="{y0 - 10}" font-size="13" font-weight="bold">{escape(name)}</text>')
        parts.append(f'<text x="{x0 + panel_w / 2}" y="{y0 + panel_h + 32}" text-anchor="middle">model cosine</text>')
        parts.append(
            f'<text x="{x0 - 34}" y="{y0 + panel_h / 2}" text-anchor="middle" '
            f'transform="rotate(-90 {x0 - 34} {y0 + panel_h / 2})">picture distance</text>'
        )
        for tick in (-0.2, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
            tx = x0 + (tick + 0.2) / 1.2 * panel_w
            parts.append(f'<text x="{tx:.1f}" y="{y0 + panel_h + 15}" text-anchor="middle">{tick:g}</text>')
        for tick in np.arange(0.0, top_distance, 0.05):
            ty = y0 + panel_h - tick / top_distance * panel_h
            parts.append(f'<text x="{x0 - 6}" y="{ty + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
        for p in sorted(pairs, key=lambda p: p["related"]):
            px = x0 + (p["cosine"] + 0.2) / 1.2 * panel_w
            py = y0 + panel_h - p["distance"] / top_distance * panel_h
            colour = "#21918c" if p["related"] else "#e8590c"
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.6" fill="{colour}" fill-opacity="0.75"/>')
    legend_x = width - 250
    for i, (label, colour) in enumerate((("related pair", "#21918c"), ("unrelated pair", "#e8590c"))):
        parts.append(f'<circle cx="{legend_x + 110 * i}" cy="18" r="4" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x + 8 + 110 * i}" y="22">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-report", action="store_true", help="write the JSON only, not BENCHMARKS.md")
    parser.add_argument("--no-images", action="store_true", help="do not rewrite docs/img/")
    args = parser.parse_args()
    started = time.perf_counter()
    zoos = {"zoo A (small)": small_zoo_path(), "zoo B (small, held out)": small_zoo_b_path()}
    result: dict = {"environment": environment(), "recipe": fi.IMAGE_RECIPE, "zoos": {}}
    all_pairs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for k, (name, zoo) in enumerate(zoos.items()):
            truth = json.loads((zoo / "truth.json").read_text())
            home = Path(scratch) / f"home-{k}"
            index_zoo(zoo, home)
            figures, pairs, views = measure(home, truth)
            result["zoos"][name] = {"path": str(zoo), **figures, "pairs_detail": pairs}
            all_pairs[name] = pairs
            if k == 0 and not args.no_images:
                IMAGES.mkdir(parents=True, exist_ok=True)
                (IMAGES / "fingerprint-contact-sheet.svg").write_text(contact_sheet(views, truth))
    if not args.no_images:
        (IMAGES / "fingerprint-image-scatter.svg").write_text(scatter(all_pairs))
    result["seconds"] = round(time.perf_counter() - started, 1)
    publish("fingerprint_image", result, markdown(result), report=not args.no_report)


def markdown(r: dict) -> str:
    rows = []
    for name, z in r["zoos"].items():
        rel, unrel = z["related_distance"], z["unrelated_distance"]
        rows.append(
            f"| {name} | {z['models']} | {z['related_pairs']} / {z['unrelated_pairs']} | "
            f"{z['pearson_distance_cosine']} | {z['spearman_distance_cosine']} | "
            f"{z['pearson_distance_score']} | {z['spearman_distance_score']} | "
            f"{rel['min']} / {rel['median']} / {rel['max']} | {unrel['min']} / {unrel['median']} / {unrel['max']} | "
            f"{z['auc_related_closer']} |"
        )
    env = r["environment"]
    return "\n".join(
        [
            "## Fingerprint images",
            "",
            f"`{env['command']}` at {env['commit']} ({r['seconds']} s; recipe `{r['recipe']}`; "
            "docs/fingerprint-images.md). Picture distance = mean absolute RGB difference of the two "
            "rasters / 255; correlated over all pairs with the model-vector cosine and with the "
            "block-aligned fingerprint score (negative: closer pictures, higher cosine). Related = same "
            "truth.json family or a shared ancestor. Nothing was tuned on zoo B.",
            "",
            "| zoo | models | pairs related / unrelated | Pearson (d, cosine) | Spearman (d, cosine) "
            "| Pearson (d, score) | Spearman (d, score) | d related min / median / max "
            "| d unrelated min / median / max | AUC related closer |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )


if __name__ == "__main__":
    main()
