// Small DOM and fetch helpers shared by the views.  Everything that comes from the API is put on the
// page through textContent or attributes (el() below), never through innerHTML.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An element: el("a", {href: "#/", class: "x"}, "text", child, ...); null/false children are skipped. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  return fill(node, attrs, children);
}

/** An SVG element, same calling convention as el(). */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  return fill(node, attrs, children);
}

function fill(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace the children of ``root`` (nested arrays flattened; null, undefined and false left out). */
export function put(root, ...children) {
  root.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return root;
}

/** An API error with the server's one-line message and the HTTP status. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET a JSON answer from the API; throws ApiError with the server's {"error": ...} line. */
export async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const message = body && typeof body.error === "string" ? body.error : `HTTP ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return body;
}

/** The API path of a model: each segment of the id percent-encoded, slashes kept. */
export function modelPath(id) {
  return "/api/models/" + id.split("/").map(encodeURIComponent).join("/");
}

/** The page link (hash route) of a model. */
export function modelHref(id) {
  return "#/model/" + id.split("/").map(encodeURIComponent).join("/");
}

/** The page link of a pair: both ids encoded whole (an id holds slashes). */
export function pairHref(a, b) {
  return `#/pair/${encodeURIComponent(a)}/${encodeURIComponent(b)}`;
}

/** log10 p as text: "-1270.95", "< -300" style figures stay exact; null -> "not tested". */
export function formatLog10p(value) {
  if (value === null || value === undefined) return "not tested";
  if (!Number.isFinite(value)) return String(value);
  return Math.abs(value) >= 100 ? value.toFixed(1) : value.toFixed(2);
}

/** A number with a fixed count of decimals, or an em dash. */
export function fixed(value, digits = 3) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

/** A short label for a model id: the part after the last slash. */
export function shortName(id) {
  const cut = id.lastIndexOf("/");
  return cut >= 0 ? id.slice(cut + 1) : id;
}

/** A table: headers (strings) and rows (arrays of cells: strings, numbers or nodes). */
export function table(caption, headers, rows, attrs = {}) {
  return el(
    "table",
    attrs,
    caption ? el("caption", {}, caption) : null,
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el(
      "tbody",
      {},
      rows.map((cells) => el("tr", {}, cells.map((c, k) => el("td", { "data-label": headers[k] || null }, c)))),
    ),
  );
}

/** A definition list from [term, value] pairs (values null/undefined are left out). */
export function facts(pairs) {
  const list = el("dl", { class: "facts" });
  for (const [term, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    list.append(el("dt", {}, term), el("dd", {}, value));
  }
  return list;
}

/** A status badge (indexed / failed / ...). */
export function badge(text, kind = "") {
  return el("span", { class: `badge ${kind || String(text).replace(/[^a-z0-9_-]/gi, "")}` }, text);
}

/** Copy text to the clipboard: navigator.clipboard, else a hidden textarea and execCommand. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      // fall through to the textarea fallback (permission refused, unfocused page)
    }
  }
  const area = el("textarea", { class: "offscreen", "aria-hidden": "true", readonly: true });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch (_) {
    ok = false;
  }
  area.remove();
  return ok;
}
