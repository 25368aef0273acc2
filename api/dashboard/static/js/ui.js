// DOM helpers, formatting (every number with its unit or currency) and the loading/empty/error/unavailable states.

import { ApiError, isMissingRoute } from "./api.js";

/** h("div", {class: "x", onclick: fn}, child, "text", [more]) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v; // CSSOM, which the page's CSP allows (a style attribute it does not)
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value" && (tag === "input" || tag === "textarea" || tag === "select")) el.value = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

/** el.append that skips null/false/undefined (DOM append would write "null"). */
export function add(el, ...children) {
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ---- formatting ------------------------------------------------------------------------------------------------

const usdFormats = new Map();

/** US dollars, with enough digits for per-call costs (a call often costs fractions of a cent). */
/** `exact`: every digit the API sent (to the nano-USD), at least cents. */
export function usd(value, { digits, exact = false } = {}) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  const v = Number(value);
  const a = Math.abs(v);
  const d = digits ?? (a === 0 || a >= 1 ? 2 : a >= 0.0001 ? 4 : 6);
  const key = exact ? "exact" : d;
  if (!usdFormats.has(key)) {
    usdFormats.set(key, new Intl.NumberFormat("en-US", { style: "currency", currency: "USD",
      minimumFractionDigits: exact ? 2 : d, maximumFractionDigits: exact ? 9 : d }));
  }
  return usdFormats.get(key).format(v);
}

export function usdFromNanos(nanos) {
  return usd(Number(nanos) / 1e9);
}

/**
 * Integer nano-USD with every digit, as `usd(v, {exact: true})` shows dollars ("$0.013017602", at least cents), but
 * in integer arithmetic: no float ever stands between the ledger's figure and the page.
 */
export function usdNanos(nanos) {
  if (nanos === null || nanos === undefined || nanos === "") return "—";
  let n;
  try {
    n = BigInt(nanos);
  } catch {
    return "—";
  }
  const sign = n < 0n ? "-" : "";
  if (n < 0n) n = -n;
  const fraction = String(n % 1000000000n).padStart(9, "0").replace(/0+$/, "").padEnd(2, "0");
  return `${sign}$${(n / 1000000000n).toLocaleString("en-US")}.${fraction}`;
}

export function seconds(value, digits = 2) {
  if (value === null || value === undefined) return "—";
  const v = Number(value);
  return v < 1 ? `${Math.round(v * 1000)} ms` : `${v.toFixed(digits)} s`;
}

/** Whole seconds as "1 h 02 min", "3 min 05 s" or "42 s". */
export function duration(total) {
  if (total === null || total === undefined) return "—";
  const s = Math.max(0, Math.round(Number(total)));
  const hrs = Math.floor(s / 3600), min = Math.floor((s % 3600) / 60), sec = s % 60;
  if (hrs) return `${hrs} h ${String(min).padStart(2, "0")} min`;
  if (min) return `${min} min ${String(sec).padStart(2, "0")} s`;
  return `${sec} s`;
}

export function count(n, unit) {
  const v = Number(n || 0);
  return `${v.toLocaleString("en-US")} ${unit}${v === 1 ? "" : "s"}`;
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit",
    minute: "2-digit", second: "2-digit" });
}

export function time(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit",
    second: "2-digit" });
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : "—";
}

// ---- states ----------------------------------------------------------------------------------------------------

export function loading(what = "Loading") {
  return h("div", { class: "state", role: "status", "aria-live": "polite" }, h("span", { class: "spinner" }), `${what}…`);
}

export function empty(message, ...extra) {
  return h("div", { class: "state empty" }, h("p", {}, message), ...extra);
}

export function unavailable(what) {
  return h("div", { class: "state unavailable", role: "note" },
    h("p", {}, h("strong", {}, `${what}: not available on this server.`)),
    h("p", { class: "small" }, "This version of voxarena does not serve the route behind it yet; it appears here by " +
      "itself once the server does."));
}

export function errorState(err, retry) {
  if (isMissingRoute(err)) return unavailable("This view");
  const box = h("div", { class: "state error", role: "alert" },
    h("p", {}, h("strong", {}, "Could not load: "), describe(err)));
  if (retry) box.append(h("div", { class: "actions" }, h("button", { type: "button", onclick: retry }, "Try again")));
  return box;
}

export function describe(err) {
  if (err instanceof ApiError) {
    let text = err.detail;
    if (err.retryAfter) text += ` (retry in ${err.retryAfter} s)`;
    return text;
  }
  return err && err.message ? err.message : String(err);
}

/**
 * Fill `target` with what `load()` renders: a loading state first, then the result, or the error with a retry.
 * `load` returns a Node (or array of Nodes).
 */
export async function fill(target, load, what) {
  clear(target, loading(what));
  try {
    const out = await load();
    clear(target, out);
  } catch (err) {
    if (err && err.name === "AbortError") return;
    clear(target, errorState(err, () => fill(target, load, what)));
  }
}

// ---- toasts, dialogs, forms ------------------------------------------------------------------------------------

let toastBox = null;

export function toast(message, kind = "ok") {
  if (!toastBox) {
    toastBox = h("div", { class: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(toastBox);
  }
  const el = h("div", { class: `toast ${kind}` }, message);
  toastBox.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

/** A modal <dialog> (Escape closes it; focus returns to what opened it). Returns {dialog, close}. */
export function modal(title, body, { onClose } = {}) {
  const opener = document.activeElement;
  const dialog = h("dialog", { "aria-label": title },
    h("div", { class: "page-head" }, h("h2", {}, title),
      h("button", { type: "button", "aria-label": "Close", onclick: () => close() }, "✕")),
    body);
  function close() {
    dialog.close();
  }
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (onClose) onClose();
    if (opener && opener.focus) opener.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close };
}

export function confirmDialog(message, { confirm = "Delete", dismiss = "Cancel", danger = true } = {}) {
  return new Promise((resolve) => {
    let answer = false;
    const yes = h("button", { type: "button", class: danger ? "danger" : "primary",
      onclick: () => { answer = true; m.close(); } }, confirm);
    const body = h("div", {}, h("p", {}, message),
      h("div", { class: "actions" }, yes, h("button", { type: "button", onclick: () => m.close() }, dismiss)));
    const m = modal("Please confirm", body, { onClose: () => resolve(answer) });
    yes.focus();
  });
}

/** Show an ApiError's validation messages next to the fields they name (loc: ["body", field, ...]). */
export function showFieldErrors(form, err) {
  for (const el of form.querySelectorAll(".field-error")) el.remove();
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  const general = form.querySelector(".form-error");
  if (general) general.replaceChildren();
  if (!err) return;
  let placed = 0;
  for (const e of (err instanceof ApiError && err.errors) || []) {
    const name = e.loc && e.loc.length > 1 ? String(e.loc[1]) : null;
    const input = name && form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (!input) continue;
    input.setAttribute("aria-invalid", "true");
    const id = `${input.id || name}-error`;
    input.setAttribute("aria-describedby", id);
    input.closest("label")?.append(h("span", { class: "field-error", id }, e.msg));
    placed++;
  }
  if (general && (placed === 0 || !(err instanceof ApiError) || !err.errors.length)) {
    general.append(h("div", { class: "state error", role: "alert" }, describe(err)));
  } else if (general) {
    general.append(h("p", { class: "field-error", role: "alert" }, describe(err)));
  }
  form.querySelector("[aria-invalid]")?.focus();
}

export function field(labelText, input, hint) {
  return h("label", {}, labelText, input, hint ? h("span", { class: "muted small" }, hint) : null);
}

/** A titled group of several controls (a <label> may hold only one). */
export function group(title, content, hint) {
  return h("div", { class: "group", role: "group", "aria-label": title }, h("span", { class: "title" }, title), content,
    hint ? h("span", { class: "muted small" }, hint) : null);
}

export function statusBadge(status) {
  const s = String(status || "").toLowerCase();
  const kind = ["completed", "ended", "answered", "active", "ok", "delivered", "positive", "transferred"].includes(s) ? "ok"
    : ["failed", "error", "no-answer", "no_answer", "busy", "declined", "suspended", "negative"].includes(s) ? "bad"
      : ["in-progress", "in_progress", "running", "ringing", "live", "pending"].includes(s) ? "live" : "warn";
  return h("span", { class: `badge ${kind}` }, status || "—");
}

/** Keyboard-usable clickable rows: Enter or Space opens them like a click. */
export function rowActivate(tr, fn) {
  tr.classList.add("clickable");
  tr.tabIndex = 0;
  tr.addEventListener("click", fn);
  tr.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      fn();
    }
  });
  return tr;
}

export function table(columns, rows, { label } = {}) {
  // Each cell knows its column's title: on a phone the rows are shown as cards that print it beside the value.
  for (const tr of rows) {
    [...tr.children].forEach((td, i) => {
      if (columns[i] && columns[i].title) td.dataset.label = columns[i].title;
    });
  }
  return h("div", { class: "table-wrap" },
    h("table", { "aria-label": label },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.title)))),
      h("tbody", {}, rows)));
}
