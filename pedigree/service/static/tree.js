// The family tree: a layered drawing of a family's lineage graph (node-link JSON from
// /api/models/{id}/family) as SVG - parents above children, a merge child with an edge from each
// parent, unseen (latent) ancestors dashed - with wheel zoom, drag to pan and click to navigate.

import { el, formatLog10p, shortName, svg } from "./dom.js";

const NODE_W = 176;
const NODE_H = 46;
const GAP_X = 34;
const GAP_Y = 84;
const MAX_LABEL = 24;

function clip(text, max = MAX_LABEL) {
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

/** Layers by longest directed path from a root (parents above children); siblings share a layer. */
export function layerNodes(ids, edges) {
  const layer = new Map(ids.map((id) => [id, 0]));
  const directed = edges.filter((e) => e.directed !== false);
  for (let pass = 0; pass < ids.length; pass++) {
    let changed = false;
    for (const e of directed) {
      const want = layer.get(e.source) + 1;
      if (layer.has(e.target) && want > layer.get(e.target)) {
        layer.set(e.target, want);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const hasParent = new Set(directed.map((e) => e.target));
  for (const e of edges.filter((x) => x.directed === false)) {
    if (!hasParent.has(e.target)) layer.set(e.target, layer.get(e.source));
    else if (!hasParent.has(e.source)) layer.set(e.source, layer.get(e.target));
  }
  return layer;
}

/** Order each layer (barycentre sweeps) and give every node an x, y (top-left corner). */
export function layout(ids, edges) {
  const layer = layerNodes(ids, edges);
  const depth = Math.max(0, ...layer.values()) + 1;
  const rows = Array.from({ length: depth }, () => []);
  for (const id of [...ids].sort()) rows[layer.get(id)].push(id);
  const parents = new Map(ids.map((id) => [id, []]));
  const children = new Map(ids.map((id) => [id, []]));
  for (const e of edges) {
    if (!parents.has(e.target) || !children.has(e.source)) continue;
    parents.get(e.target).push(e.source);
    children.get(e.source).push(e.target);
  }
  const position = new Map();
  const index = () => rows.forEach((row) => row.forEach((id, k) => position.set(id, k)));
  const sweep = (row, neighbours) => {
    const centre = (id) => {
      const around = neighbours.get(id).filter((n) => position.has(n));
      if (!around.length) return position.get(id);
      return around.reduce((sum, n) => sum + position.get(n), 0) / around.length;
    };
    row.sort((a, b) => centre(a) - centre(b) || (a < b ? -1 : 1));
  };
  index();
  for (let round = 0; round < 4; round++) {
    for (let d = 1; d < depth; d++) sweep(rows[d], parents), index();
    for (let d = depth - 2; d >= 0; d--) sweep(rows[d], children), index();
  }
  const widest = Math.max(...rows.map((r) => r.length));
  const placed = new Map();
  rows.forEach((row, d) => {
    const offset = ((widest - row.length) * (NODE_W + GAP_X)) / 2;
    row.forEach((id, k) => placed.set(id, { x: offset + k * (NODE_W + GAP_X), y: d * (NODE_H + GAP_Y) }));
  });
  return { placed, width: widest * (NODE_W + GAP_X) - GAP_X, height: depth * (NODE_H + GAP_Y) - GAP_Y };
}

function edgeTitle(e) {
  const confidence = typeof e.confidence === "number" ? `, confidence ${e.confidence.toFixed(3)}` : "";
  const direction = e.directed === false ? " (direction unknown)" : "";
  return `${e.source} → ${e.target}: ${e.relation}${direction}${confidence}, log10 p ${formatLog10p(e.log10_p)}`;
}

function drawEdge(e, placed, inDegree) {
  const from = placed.get(e.source);
  const to = placed.get(e.target);
  if (!from || !to) return null;
  const sameRow = from.y === to.y;
  const x1 = from.x + NODE_W / 2;
  const y1 = sameRow ? from.y + NODE_H / 2 : from.y + NODE_H;
  const x2 = to.x + NODE_W / 2;
  const y2 = sameRow ? to.y + NODE_H / 2 : to.y;
  const mid = (y1 + y2) / 2;
  const d = sameRow
    ? `M${x1},${y1} C${x1},${y1 + 60} ${x2},${y2 + 60} ${x2},${y2}`
    : `M${x1},${y1} C${x1},${mid} ${x2},${mid} ${x2},${y2}`;
  const classes = ["edge", e.directed === false ? "undirected" : "", e.relation === "merge" ? "merge" : ""];
  const label = e.log10_p === null || e.log10_p === undefined ? e.relation : `${e.relation} · ${formatLog10p(e.log10_p)}`;
  // the label sits three quarters of the way down the curve, near its child: the edges of a
  // parent with many children fan out there, so their labels do not pile up at one height
  // (a child with several parents, e.g. a merge, takes its labels halfway, where its edges are apart)
  const t = sameRow || (inDegree.get(e.target) || 0) > 1 ? 0.5 : 0.72;
  const u = 1 - t;
  const cy1 = sameRow ? y1 + 60 : mid;
  const cy2 = sameRow ? y2 + 60 : mid;
  const lx = u * u * u * x1 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t * t * t * x2;
  const ly = u * u * u * y1 + 3 * u * u * t * cy1 + 3 * u * t * t * cy2 + t * t * t * y2;
  return svg(
    "g",
    { class: classes.join(" ").trim(), "data-source": e.source, "data-target": e.target },
    svg("title", {}, edgeTitle(e)),
    svg("path", { d, "marker-end": e.directed === false ? null : "url(#arrow)" }),
    svg("text", { x: lx, y: ly, class: "edge-label", "text-anchor": "middle", "dominant-baseline": "middle" }, label),
  );
}

function drawNode(node, place, current, navigate) {
  const latent = node.latent === true || String(node.id).startsWith("latent:");
  const isCurrent = node.id === current;
  const classes = ["node", latent ? "latent" : "", isCurrent ? "current" : "", node.root ? "root" : ""];
  const ancestor = latent ? String(node.id).replace(/^latent:/, "").replace(/#\d+$/, "") : "";
  const first = latent ? "unseen ancestor" : clip(shortName(node.id));
  const second = latent ? clip(`derived from ${shortName(ancestor)}`, 28) : clip(node.id.split("/").slice(0, -1).join("/"), 28);
  const title = latent ? `unseen ancestor (not indexed), derived from ${ancestor}` : node.id;
  const group = svg(
    "g",
    {
      class: classes.join(" ").replace(/\s+/g, " ").trim(),
      transform: `translate(${place.x},${place.y})`,
      "data-id": node.id,
      tabindex: latent ? null : "0",
      role: latent ? "img" : "link",
      "aria-label": isCurrent ? `${title} (this model)` : title,
      "aria-current": isCurrent ? "page" : null,
    },
    svg("title", {}, title),
    svg("rect", { width: NODE_W, height: NODE_H, rx: 8, ry: 8 }),
    svg("text", { x: NODE_W / 2, y: 19, class: "name", "text-anchor": "middle" }, first),
    svg("text", { x: NODE_W / 2, y: 35, class: "org", "text-anchor": "middle" }, second),
  );
  if (!latent) {
    group.addEventListener("click", (event) => {
      if (group.ownerSVGElement && group.ownerSVGElement.dataset.dragged === "1") return;
      event.preventDefault();
      navigate(node.id);
    });
    group.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        navigate(node.id);
      }
    });
  }
  return group;
}

/** Wheel zoom about the pointer, drag to pan, buttons to zoom and fit; the state is the viewport's transform. */
function interactive(canvas, viewport, bounds, focus) {
  const view = { x: 0, y: 0, k: 1 };
  const apply = () => viewport.setAttribute("transform", `translate(${view.x.toFixed(1)},${view.y.toFixed(1)}) scale(${view.k.toFixed(4)})`);
  const size = () => ({ w: canvas.clientWidth || 800, h: canvas.clientHeight || 460 });
  const fit = () => {
    const { w, h } = size();
    const pad = 24;
    view.k = Math.min(1.2, (w - 2 * pad) / Math.max(bounds.width, 1), (h - 2 * pad) / Math.max(bounds.height, 1));
    if (view.k < 0.55 && focus) {
      view.k = 0.8;
      view.x = w / 2 - (focus.x + NODE_W / 2) * view.k;
      const tall = bounds.height * view.k > h - 2 * pad;
      view.y = tall ? h / 2 - (focus.y + NODE_H / 2) * view.k : (h - bounds.height * view.k) / 2;
    } else {
      view.x = (w - bounds.width * view.k) / 2;
      view.y = (h - bounds.height * view.k) / 2;
    }
    apply();
  };
  const zoomAt = (factor, px, py) => {
    const k = Math.min(4, Math.max(0.15, view.k * factor));
    view.x = px - ((px - view.x) * k) / view.k;
    view.y = py - ((py - view.y) * k) / view.k;
    view.k = k;
    apply();
  };
  canvas.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      const box = canvas.getBoundingClientRect();
      zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
    },
    { passive: false },
  );
  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    const start = { x: event.clientX, y: event.clientY, vx: view.x, vy: view.y };
    canvas.dataset.dragged = "0";
    const move = (e) => {
      const dx = e.clientX - start.x;
      const dy = e.clientY - start.y;
      if (Math.abs(dx) + Math.abs(dy) > 3) {
        canvas.dataset.dragged = "1";
        canvas.classList.add("panning");
      }
      view.x = start.vx + dx;
      view.y = start.vy + dy;
      apply();
    };
    const up = () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      canvas.classList.remove("panning");
      // a drag must not count as a click on the node it ended on
      setTimeout(() => (canvas.dataset.dragged = "0"), 0);
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  });
  const centre = () => {
    const { w, h } = size();
    return [w / 2, h / 2];
  };
  return {
    fit,
    zoomIn: () => zoomAt(1.25, ...centre()),
    zoomOut: () => zoomAt(0.8, ...centre()),
  };
}

/** The tree of ``graph`` (node-link JSON) with ``current`` highlighted; ``navigate(id)`` on a click. */
export function familyTree(graph, current, navigate) {
  const nodes = Array.isArray(graph.nodes) ? graph.nodes : [];
  const edges = (graph.edges || graph.links || []).filter((e) => e && e.source !== undefined && e.target !== undefined);
  const ids = nodes.map((n) => n.id);
  const { placed, width, height } = layout(ids, edges);
  const viewport = svg("g", { class: "viewport" });
  const inDegree = new Map();
  for (const e of edges) inDegree.set(e.target, (inDegree.get(e.target) || 0) + 1);
  viewport.append(...edges.map((e) => drawEdge(e, placed, inDegree)).filter(Boolean));
  viewport.append(...nodes.map((n) => drawNode(n, placed.get(n.id), current, navigate)));
  const canvas = svg(
    "svg",
    { class: "tree-canvas", role: "group", "aria-label": `family tree, ${nodes.length} models; drag to pan, wheel to zoom` },
    svg(
      "defs",
      {},
      svg(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" },
        svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow-head" }),
      ),
    ),
    viewport,
  );
  const controls = interactive(canvas, viewport, { width, height }, placed.get(current));
  const button = (label, text, action) => el("button", { type: "button", "aria-label": label, title: label, onclick: action }, text);
  const legend = el(
    "p",
    { class: "legend" },
    el("span", { class: "key current" }, "this model"),
    el("span", { class: "key latent" }, "unseen ancestor"),
    el("span", { class: "key undirected" }, "direction unknown"),
    "Edges read relation · log10 p; hover for confidence.",
  );
  const frame = el(
    "div",
    { class: "tree" },
    el("div", { class: "tree-tools" }, button("zoom in", "+", controls.zoomIn), button("zoom out", "−", controls.zoomOut), button("fit the tree", "Fit", controls.fit)),
    canvas,
    legend,
  );
  // the canvas has a size only once it is on the page
  requestAnimationFrame(() => controls.fit());
  return frame;
}
