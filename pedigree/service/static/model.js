// The model page: what the index knows about one model (/api/models/{id}), its place in the
// lineage (/api/models/{id}/lineage: parents with relation, confidence, log10 p and evidence in
// plain words; ancestors; children; relatives), its fingerprint image and the family tree.

import { badge, el, facts, fixed, formatLog10p, getJson, modelHref, modelPath, pairHref, put, shortName, table } from "./dom.js";
import { evidenceText } from "./evidence.js";
import { familyTree } from "./tree.js";

function modelLink(id) {
  if (String(id).startsWith("latent:")) return el("span", { class: "latent-id" }, "unseen ancestor");
  return el("a", { href: modelHref(id) }, id);
}

function declaredBase(detail) {
  const value = detail.declared_base ?? detail.declared_base_model ?? (detail.card && detail.card.base_model);
  if (Array.isArray(value)) return value.length ? value.join(", ") : null;
  return value || null;
}

function layersOf(family) {
  const count = new Map();
  for (const node of (family && family.nodes) || []) if (typeof node.layers === "number") count.set(node.id, node.layers);
  return count;
}

/** Parents or children as a table: model, relation, confidence, log10 p, evidence in words, pair link. */
function linksTable(caption, model, links, related, layers, empty) {
  if (!links || !links.length) return el("p", { class: "muted" }, empty);
  const blocksOf = new Map((related || []).map((r) => [r.id, r.layers]));
  return table(
    caption,
    ["model", "relation", "confidence", "log10 p", "evidence", ""],
    links.map((link) => [
      modelLink(link.id),
      badge(link.relation, "relation"),
      el("span", { class: "num" }, fixed(link.confidence, 3)),
      el("span", { class: "num" }, formatLog10p(link.log10_p)),
      el(
        "span",
        { class: "evidence" },
        evidenceText(link.evidence, { blocks: blocksOf.get(link.id), layersA: layers.get(model), layersB: layers.get(link.id) }),
      ),
      String(link.id).startsWith("latent:") ? "" : el("a", { href: pairHref(model, link.id), class: "pair-link" }, "compare"),
    ]),
    { class: "links" },
  );
}

function relatedTable(model, related) {
  if (!related || !related.length) return el("p", { class: "muted" }, "No indexed model has a similar fingerprint.");
  return table(
    "Nearest fingerprints (score: 1 is identical; the tests decide what is related)",
    ["model", "score", "blocks matched", ""],
    related.map((r) => [
      modelLink(r.id),
      el("span", { class: "num" }, fixed(r.score, 4)),
      el("span", { class: "num" }, String((r.layers || []).length)),
      el("a", { href: pairHref(model, r.id), class: "pair-link" }, "compare"),
    ]),
    { class: "related" },
  );
}

function ancestorsList(model, ancestors, root) {
  if (!ancestors || !ancestors.length) {
    return el("p", { class: "muted" }, root && root !== model ? `Root of the family: ${root}` : "No ancestors: a root of its family.");
  }
  return el("ol", { class: "ancestors", "aria-label": "ancestors, nearest first" }, ancestors.map((id) => el("li", {}, modelLink(id))));
}

function configFacts(detail) {
  const summary = detail.config || detail.config_summary || {};
  if (!summary || typeof summary !== "object") return null;
  const rows = Object.entries(summary).filter(([, v]) => v !== null && typeof v !== "object");
  if (!rows.length) return null;
  return el("details", { class: "config" }, el("summary", {}, "Configuration"), facts(rows.map(([k, v]) => [k, String(v)])));
}

function cardBlock(detail) {
  const card = detail.card;
  if (!card || (typeof card === "object" && !Object.keys(card).length)) return null;
  const text =
    typeof card === "string"
      ? card
      : Object.entries(card)
          .map(([key, value]) => `${key}: ${Array.isArray(value) ? value.join(", ") : typeof value === "object" && value !== null ? JSON.stringify(value) : value}`)
          .join("\n");
  return el("details", { class: "card" }, el("summary", {}, "Model card (front matter)"), el("pre", {}, text));
}

function familySection(model, family, navigate) {
  const section = el("section", { "aria-labelledby": "family-title", class: "family" }, el("h2", { id: "family-title" }, "Family tree"));
  if (family instanceof Error) {
    section.append(el("p", { class: "muted" }, `No family graph: ${family.message}`));
  } else if (!family || !family.nodes || family.nodes.length === 0) {
    section.append(el("p", { class: "muted" }, "Not in a family yet (no confirmed relative)."));
  } else {
    section.append(familyTree(family, model, navigate));
  }
  return section;
}

/** Render the model page for ``model`` into ``root``; ``navigate(id)`` opens another model. */
export async function modelView(root, model, navigate) {
  put(root, el("p", { class: "loading" }, `Loading ${model}…`));
  const path = modelPath(model);
  const [detail, lineage, family] = await Promise.all([
    getJson(path),
    getJson(`${path}/lineage`).catch((error) => error),
    getJson(`${path}/family?format=json`).catch((error) => error),
  ]);
  const answer = lineage instanceof Error ? {} : lineage;
  const layers = layersOf(family instanceof Error ? null : family);
  if (typeof detail.num_layers === "number") layers.set(model, detail.num_layers);
  const base = declaredBase(detail);
  const summary = facts([
    ["status", detail.status ? badge(detail.status) : null],
    ["reason", detail.reason || null],
    ["architecture", detail.architecture || (detail.config && detail.config.architecture) || null],
    ["declared base", base ? el("span", {}, base.split(", ").map((id, k) => [k ? ", " : "", modelLink(id)])) : "none declared"],
    ["declared relation", detail.declared_relation || null],
    ["created", detail.created_at || null],
    ["source", detail.source || null],
    ["revision", detail.revision || null],
    ["family", answer.family_size ? `${answer.family_size} models` : null],
  ]);
  put(root, 
    el("h1", { class: "model-id" }, el("span", { class: "org" }, model.includes("/") ? model.slice(0, model.lastIndexOf("/") + 1) : ""), shortName(model)),
    el(
      "div",
      { class: "columns" },
      el("section", { "aria-labelledby": "about-title" }, el("h2", { id: "about-title" }, "About"), summary, configFacts(detail), cardBlock(detail)),
      el(
        "figure",
        { class: "fingerprint" },
        el("img", { src: `${path}/fingerprint.svg`, alt: `fingerprint image of ${model}`, width: 192, height: 192 }),
        el("figcaption", {}, "Fingerprint image: relatives look alike."),
      ),
    ),
    lineage instanceof Error ? el("p", { class: "error" }, `No lineage answer: ${lineage.message}`) : null,
    el(
      "section",
      { "aria-labelledby": "parents-title" },
      el("h2", { id: "parents-title" }, "Parents"),
      linksTable("Where this model comes from", model, answer.parents, answer.related, layers, "No parent: a root of its family, or nothing related is indexed."),
    ),
    el("section", { "aria-labelledby": "ancestors-title" }, el("h2", { id: "ancestors-title" }, "Ancestors"), ancestorsList(model, answer.ancestors, answer.root)),
    el(
      "section",
      { "aria-labelledby": "children-title" },
      el("h2", { id: "children-title" }, "Children"),
      linksTable("Models derived from this one", model, answer.children, answer.related, layers, "No indexed model derives from this one."),
    ),
    answer.siblings && answer.siblings.length
      ? el(
          "section",
          { "aria-labelledby": "siblings-title" },
          el("h2", { id: "siblings-title" }, "Siblings"),
          linksTable("Related, neither shown to derive from the other", model, answer.siblings, answer.related, layers, ""),
        )
      : null,
    familySection(model, family, navigate),
    el("section", { "aria-labelledby": "related-title" }, el("h2", { id: "related-title" }, "Related by fingerprint"), relatedTable(model, answer.related)),
  );
}
