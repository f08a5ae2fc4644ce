// pedigree's web page: a single-page app over the JSON API with hash routes -
//   #/ and #/search?q=...   search the index (id prefix or substring)
//   #/model/<id>            a model: lineage, evidence, fingerprint image, family tree
//   #/pair/<a>/<b>          two models compared (ids percent-encoded whole)
//   #/discrepancies         model cards the weights contradict, with suggested card snippets
//   #/status                the last crawl / refresh runs and what the index holds

import { ApiError, badge, copyText, el, facts, formatLog10p, getJson, modelHref, put, table } from "./dom.js";
import { modelView } from "./model.js";
import { pairView } from "./pair.js";

const main = document.getElementById("main");
const searchForm = document.getElementById("search-form");
const searchBox = document.getElementById("search-box");

function decode(part) {
  try {
    return decodeURIComponent(part);
  } catch (_) {
    return part;
  }
}

/** The route of a hash: {view, ...arguments}. */
export function route(hash) {
  const raw = (hash || "").replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?", 2);
  const params = new URLSearchParams(query);
  if (path.startsWith("model/")) return { view: "model", id: path.slice(6).split("/").map(decode).join("/") };
  if (path.startsWith("pair/")) {
    const parts = path.slice(5).split("/");
    if (parts.length === 2) return { view: "pair", a: decode(parts[0]), b: decode(parts[1]) };
    return { view: "missing", what: "a pair link needs two encoded ids: #/pair/<a>/<b>" };
  }
  if (path === "discrepancies") return { view: "discrepancies" };
  if (path === "status") return { view: "status" };
  if (path === "" || path === "search") return { view: "search", q: params.get("q") || "", cursor: params.get("cursor") || "" };
  return { view: "missing", what: `no page at #/${path}` };
}

// ---- search -------------------------------------------------------------------------------

async function searchView(root, q, cursor) {
  searchBox.value = q;
  put(root, el("p", { class: "loading" }, "Searching…"));
  const params = new URLSearchParams({ q, limit: "50" });
  if (cursor) params.set("cursor", cursor);
  const answer = await getJson(`/api/models?${params}`);
  const models = answer.models || [];
  const heading = q ? `Models matching “${q}”` : "All models";
  const count = typeof answer.total === "number" ? `${answer.total} found` : `${models.length} shown`;
  const list = el(
    "ul",
    { class: "results", "aria-label": "search results" },
    models.map((m) =>
      el(
        "li",
        {},
        el("a", { href: modelHref(m.id), class: "result-id" }, m.id),
        " ",
        m.status ? badge(m.status) : null,
        el(
          "span",
          { class: "result-facts" },
          [m.architecture, [].concat(m.declared_base || []).length ? `declares ${[].concat(m.declared_base).join(", ")}` : null, m.created_at ? String(m.created_at).slice(0, 10) : null]
            .filter(Boolean)
            .join(" · "),
        ),
      ),
    ),
  );
  const next = answer.next
    ? el("p", {}, el("a", { href: `#/search?${new URLSearchParams({ q, cursor: answer.next })}`, class: "button" }, "Next page →"))
    : null;
  put(root, 
    el("h1", {}, heading),
    el("p", { class: "muted" }, count),
    models.length ? list : el("p", { class: "muted" }, "Nothing matches: try part of an id, e.g. an organisation name."),
    next,
  );
}

// ---- discrepancies ------------------------------------------------------------------------

const KINDS = {
  contradicted: "the declared base is indexed but the weights are not related to it",
  ancestor_declared: "the declared base is an ancestor, not the parent",
  reversed: "the declared base is in fact derived from this model",
  misplaced: "related, but the weights place the model under another parent",
  relation_mismatch: "the parent is right, the kind of step is not",
};

function snippet(text, model) {
  const code = el("pre", { class: "snippet", "aria-label": `suggested card for ${model}` }, text);
  const status = el("span", { class: "copied", role: "status", "aria-live": "polite" });
  const button = el(
    "button",
    {
      type: "button",
      class: "copy",
      "aria-label": `copy the suggested card for ${model}`,
      onclick: async () => {
        const ok = await copyText(text);
        status.textContent = ok ? "Copied" : "Select the text and copy it";
      },
    },
    "Copy",
  );
  return el("div", { class: "snippet-box" }, code, el("div", { class: "snippet-tools" }, button, status));
}

function weightsParents(parents) {
  if (!parents || !parents.length) return "none found";
  return el(
    "span",
    {},
    parents.map((p, k) => [k ? "; " : "", el("a", { href: modelHref(p.id) }, p.id), ` (${p.relation}, log10 p ${formatLog10p(p.log10_p)})`]),
  );
}

async function discrepanciesView(root) {
  put(root, el("p", { class: "loading" }, "Reading the cards…"));
  const answer = await getJson("/api/discrepancies");
  const items = answer.discrepancies || [];
  const undeclared = answer.undeclared || [];
  const unverifiable = answer.unverifiable || [];
  const card = (d, kindText) =>
    el(
      "article",
      { class: "discrepancy" },
      el("h3", {}, el("a", { href: modelHref(d.model) }, d.model), " ", d.kind ? badge(d.kind, "kind") : null),
      kindText ? el("p", {}, kindText) : null,
      facts([
        ["card declares", d.declared_base_model ? `${d.declared_base_model}${d.declared_relation ? ` (${d.declared_relation})` : ""}` : null],
        ["weights show", weightsParents(d.parents_from_weights)],
        ["why", d.reason || null],
      ]),
      d.suggested_card ? snippet(d.suggested_card, d.model) : el("p", { class: "muted" }, "No card to suggest: the weights show no parent."),
    );
  put(root, 
    el("h1", {}, "Cards vs weights"),
    el("p", { class: "muted" }, `Graph build ${answer.graph_build ?? "—"}. Each suggested card snippet can be pasted into the model's README front matter.`),
    el("section", { "aria-labelledby": "d-title" }, el("h2", { id: "d-title" }, `Contradicted (${items.length})`), items.length ? items.map((d) => card(d, KINDS[d.kind] || "")) : el("p", { class: "muted" }, "None.")),
    el(
      "section",
      { "aria-labelledby": "u-title" },
      el("h2", { id: "u-title" }, `Undeclared (${undeclared.length})`),
      undeclared.length ? undeclared.map((d) => card({ ...d, kind: "undeclared" }, "the weights show a parent the card does not declare")) : el("p", { class: "muted" }, "None."),
    ),
    el(
      "section",
      { "aria-labelledby": "v-title" },
      el("h2", { id: "v-title" }, `Unverifiable (${unverifiable.length})`),
      unverifiable.length
        ? table("Declared bases that are not in the index", ["model", "declares", "why"], unverifiable.map((u) => [el("a", { href: modelHref(u.model) }, u.model), u.declared_base_model, u.reason]))
        : el("p", { class: "muted" }, "None."),
    ),
  );
}

// ---- status -------------------------------------------------------------------------------

function counts(map) {
  const entries = Object.entries(map || {}).filter(([, v]) => typeof v !== "object");
  return entries.length ? entries.map(([k, v]) => `${k} ${v}`).join(", ") : "—";
}

async function statusView(root) {
  put(root, el("p", { class: "loading" }, "Reading the status…"));
  const status = await getJson("/api/status");
  const runs = status.runs || [];
  const snapshot = status.snapshot && typeof status.snapshot === "object" ? status.snapshot : null;
  put(root, 
    el("h1", {}, "Status"),
    el(
      "div",
      { class: "columns" },
      el("section", { "aria-labelledby": "index-title" }, el("h2", { id: "index-title" }, "The index"), facts([
        ["models", counts(status.models)],
        ["crawl", counts(status.crawl)],
        ["evidence", counts(status.evidence)],
      ])),
      snapshot
        ? el("section", { "aria-labelledby": "snap-title" }, el("h2", { id: "snap-title" }, "Serving snapshot"), facts(Object.entries(snapshot).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)])))
        : null,
    ),
    el(
      "section",
      { "aria-labelledby": "runs-title" },
      el("h2", { id: "runs-title" }, "Last runs"),
      runs.length
        ? table(
            "Crawl and refresh runs, newest first",
            ["run", "kind", "status", "started", "finished", "endpoint", "counts", "errors"],
            runs.map((r) => [
              String(r.run_id),
              r.kind,
              badge(r.status),
              r.started_at || "—",
              r.finished_at || "running",
              r.endpoint || "—",
              el("span", { class: "small" }, counts(r.counts)),
              String((r.errors || []).length),
            ]),
            { class: "runs" },
          )
        : el("p", { class: "muted" }, "No crawl or refresh has run on this data folder yet."),
    ),
    (status.high_water || []).length
      ? table("Crawl high-water marks", ["endpoint", "high water", "updated"], status.high_water.map((h) => [h.endpoint, h.high_water || "—", h.updated_at]))
      : null,
  );
}

// ---- the router ---------------------------------------------------------------------------

function showError(root, error) {
  const message = error instanceof ApiError ? error.message : `Something went wrong: ${error && error.message ? error.message : error}`;
  const hint = error instanceof ApiError && error.status === 404 ? " Search for it instead?" : "";
  put(root, el("h1", {}, error instanceof ApiError && error.status === 404 ? "Not found" : "Error"), el("p", { class: "error", role: "alert" }, message + hint));
}

function markNavigation(view) {
  for (const link of document.querySelectorAll("nav a[data-view]")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

let renderToken = 0;

async function render() {
  const token = ++renderToken;
  const where = route(location.hash);
  markNavigation(where.view);
  if (where.view !== "search") searchBox.value = "";
  const root = el("div", { class: "view", "data-view": where.view });
  main.replaceChildren(root);
  main.setAttribute("aria-busy", "true");
  try {
    if (where.view === "search") await searchView(root, where.q, where.cursor);
    else if (where.view === "model") await modelView(root, where.id, (id) => (location.hash = modelHref(id)));
    else if (where.view === "pair") await pairView(root, where.a, where.b);
    else if (where.view === "discrepancies") await discrepanciesView(root);
    else if (where.view === "status") await statusView(root);
    else showError(root, new ApiError(404, where.what));
    document.title = `${root.querySelector("h1")?.textContent || "pedigree"} · pedigree`;
  } catch (error) {
    if (token === renderToken) showError(root, error);
  } finally {
    if (token === renderToken) {
      main.removeAttribute("aria-busy");
      root.dataset.ready = "1";
    }
  }
}

// the skip link focuses the content without touching the hash (the hash is the route)
document.querySelector("a.skip")?.addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
searchForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = searchBox.value.trim();
  location.hash = q ? `#/search?${new URLSearchParams({ q })}` : "#/";
});
window.addEventListener("hashchange", () => {
  render();
  window.scrollTo(0, 0);
});
render();
