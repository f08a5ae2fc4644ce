// The pair page: two models compared (/api/compare) - the fingerprint score, the layer map as a
// heatmap (block i of A against block j of B, coloured by cosine) and each test's log10 p.

import { el, facts, fixed, formatLog10p, getJson, modelHref, modelPath, put, svg, table } from "./dom.js";

// viridis at 9 stops: a perceptual palette, readable in grey and by most colour-blind readers
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"];

/** The palette colour of t in [0, 1]. */
export function colour(t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const k = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - k;
  const [a, b] = [VIRIDIS[k], VIRIDIS[k + 1]].map((hex) => [1, 3, 5].map((p) => parseInt(hex.slice(p, p + 2), 16)));
  return `rgb(${a.map((v, c) => Math.round(v + f * (b[c] - v))).join(",")})`;
}

/** A heatmap: rows x cols cells, value(i, j) -> number|null, scale(v) -> [0, 1], label(v) -> text. */
function heatmap({ rows, cols, value, scale, label, caption, rowName, colName }) {
  const cell = Math.max(14, Math.min(44, Math.floor(480 / Math.max(rows, cols, 1))));
  const left = 54;
  const top = 40;
  const width = left + cols * cell + 8;
  const height = top + rows * cell + 8;
  const picture = svg("svg", {
    class: "heatmap",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `${caption}: ${rows} blocks of ${rowName} by ${cols} blocks of ${colName}`,
  });
  picture.append(svg("text", { x: left, y: 12, class: "axis-title" }, `${colName} block →`));
  picture.append(svg("text", { x: 4, y: top - 6, class: "axis-title" }, `${rowName} ↓`));
  const every = Math.ceil(Math.max(rows, cols) / 16);
  for (let j = 0; j < cols; j += every) {
    picture.append(svg("text", { x: left + j * cell + cell / 2, y: top - 8, class: "axis", "text-anchor": "middle" }, String(j)));
  }
  for (let i = 0; i < rows; i++) {
    if (i % every === 0) {
      picture.append(svg("text", { x: left - 6, y: top + i * cell + cell / 2 + 4, class: "axis", "text-anchor": "end" }, String(i)));
    }
    for (let j = 0; j < cols; j++) {
      const v = value(i, j);
      const known = v !== null && v !== undefined && Number.isFinite(v);
      picture.append(
        svg(
          "rect",
          {
            class: known ? "cell" : "cell empty",
            x: left + j * cell,
            y: top + i * cell,
            width: cell - 1,
            height: cell - 1,
            fill: known ? colour(scale(v)) : null,
            "data-i": i,
            "data-j": j,
          },
          svg("title", {}, `${rowName} block ${i} · ${colName} block ${j}: ${known ? label(v) : "not matched"}`),
        ),
      );
    }
  }
  return el("figure", { class: "heatmap-figure" }, picture, el("figcaption", {}, caption));
}

function scaleBar(low, high, note) {
  const stops = Array.from({ length: 11 }, (_, k) => k / 10);
  return el(
    "div",
    { class: "scale", "aria-hidden": "true" },
    el("span", {}, low),
    el("span", { class: "ramp" }, stops.map((t) => el("i", { style: `background:${colour(t)}` }))),
    el("span", {}, high),
    note ? el("span", { class: "note" }, note) : null,
  );
}

/** The layer map as a grid: cosine of matched block pairs (a full similarity matrix when the API gives one). */
function layerMapHeatmap(result, a, b) {
  const [rows, cols] = Array.isArray(result.layers) ? result.layers : [0, 0];
  const matched = new Map();
  for (const row of result.layer_map || []) matched.set(`${row[0]},${row[1]}`, row[2]);
  const full = Array.isArray(result.similarity) ? result.similarity : null;
  const value = (i, j) => (full && full[i] ? full[i][j] : matched.get(`${i},${j}`) ?? null);
  return heatmap({
    rows,
    cols,
    value,
    scale: (v) => (v - 0.5) / 0.5,
    label: (v) => `cosine ${v.toFixed(4)}`,
    caption: `Layer map: cosine of each matched block pair (${(result.layer_map || []).length} matched; grey: not matched)`,
    rowName: "A",
    colName: "B",
  });
}

/** Per-block-pair log10 p of a test that localises its evidence (detail.localized: rows x cols). */
function localizedHeatmap(test) {
  const grid = test.detail.localized;
  const strongest = Math.max(1, ...grid.flat().filter(Number.isFinite).map((v) => -v));
  return heatmap({
    rows: grid.length,
    cols: grid[0].length,
    value: (i, j) => grid[i][j],
    scale: (v) => Math.log1p(-v) / Math.log1p(strongest),
    label: (v) => `log10 p ${formatLog10p(v)}`,
    caption: `${test.name}: log10 p of each block pair (brighter: stronger evidence of a shared origin)`,
    rowName: "A",
    colName: "B",
  });
}

function testsTable(result) {
  const tests = Array.isArray(result.tests) ? result.tests : [];
  if (!tests.length) return el("p", { class: "muted" }, "No independence tests were run for this pair.");
  return table(
    "Independence tests (log10 p under each test's null hypothesis: very negative means a shared origin)",
    ["test", "log10 p", "null hypothesis"],
    tests.map((t) => [el("code", {}, t.name), el("span", { class: "num" }, formatLog10p(t.log10_p)), el("span", { class: "small" }, t.null || "")]),
    { class: "tests" },
  );
}

function verdict(result) {
  if (result.confirmed === true) return el("p", { class: "verdict yes" }, "Confirmed related: the tests reject independent initialisation (Holm, 1 % family-wise).");
  if (result.confirmed === false) return el("p", { class: "verdict no" }, "Not confirmed: the tests do not reject independence at the index's bar.");
  return null;
}

/** Render the pair page for models a and b into ``root``. */
export async function pairView(root, a, b) {
  put(root, el("p", { class: "loading" }, "Comparing…"));
  const result = await getJson(`/api/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
  const withLocal = (result.tests || []).filter(
    (t) => t.detail && Array.isArray(t.detail.localized) && t.detail.localized.length && Array.isArray(t.detail.localized[0]),
  );
  const pictures = el(
    "div",
    { class: "pair-images" },
    [a, b].map((id, k) =>
      el(
        "figure",
        {},
        el("img", { src: `${modelPath(id)}/fingerprint.svg`, alt: `fingerprint image of ${id}`, width: 128, height: 128, loading: "lazy" }),
        el("figcaption", {}, k === 0 ? "A: " : "B: ", el("a", { href: modelHref(id) }, id)),
      ),
    ),
  );
  const layers = Array.isArray(result.layers) ? result.layers : [null, null];
  put(root, 
    el("h1", {}, "Pair"),
    el("p", { class: "pair-ids" }, "A ", el("a", { href: modelHref(a) }, a), " · B ", el("a", { href: modelHref(b) }, b)),
    verdict(result),
    el(
      "div",
      { class: "columns" },
      el(
        "section",
        { "aria-labelledby": "pair-figures" },
        el("h2", { id: "pair-figures" }, "Figures"),
        facts([
          ["fingerprint score", fixed(result.score, 4)],
          ["combined log10 p", formatLog10p(result.log10_p)],
          ["Holm-adjusted log10 p", result.log10_q === null || result.log10_q === undefined ? null : formatLog10p(result.log10_q)],
          ["model cosine", fixed(result.model_cosine, 4)],
          ["embedding cosine", fixed(result.embedding_cosine, 4)],
          ["head cosine", fixed(result.head_cosine, 4)],
          ["blocks (A, B)", `${layers[0]}, ${layers[1]}`],
        ]),
      ),
      pictures,
    ),
    el(
      "section",
      { "aria-labelledby": "pair-map" },
      el("h2", { id: "pair-map" }, "Layer map"),
      layerMapHeatmap(result, a, b),
      scaleBar("cosine 0.5", "1.0", null),
      withLocal.length ? localizedHeatmap(withLocal[0]) : null,
    ),
    el("section", { "aria-labelledby": "pair-tests" }, el("h2", { id: "pair-tests" }, "Tests"), testsTable(result)),
  );
}
