// A small chart module (no library to vendor): stacked bars drawn in SVG (role="img", an aria-label summary and a
// <title> per mark, so values are readable without a mouse) and horizontal bars drawn in HTML.

import { h } from "./ui.js";

const NS = "http://www.w3.org/2000/svg";
const COLORS = ["var(--series-1)", "var(--series-2)", "var(--series-3)", "var(--series-4)", "var(--series-5)",
  "var(--series-6)"];

export const color = (i) => COLORS[i % COLORS.length];

// One colour per provider on every chart of the page (the timeline and the by-provider bars agree).
const KNOWN = ["deepgram", "elevenlabs", "gemini", "openai", "assemblyai", "resemble", "google", "sip"];
export function colorFor(name) {
  const i = KNOWN.indexOf(String(name));
  if (i >= 0) return COLORS[i % COLORS.length];
  let hash = 0;
  for (const ch of String(name)) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return COLORS[hash % COLORS.length];
}

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** A "nice" axis maximum and step for values up to `max`. */
function niceScale(max, ticks = 4) {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((m) => m >= raw) || 10 * mag;
  return { top: step * Math.ceil(max / step), step };
}

const seriesColor = (sr, i) => sr.color || color(i);

function legend(series) {
  if (series.length < 2) return null;
  return h("div", { class: "legend" }, series.map((sr, i) => h("span", {},
    h("i", { style: `background:${seriesColor(sr, i)}` }), sr.name)));
}

function frame({ width, height, pad, top, step, format, label }) {
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label,
    preserveAspectRatio: "xMidYMid meet" });
  const plotH = height - pad.top - pad.bottom;
  for (let v = 0; v <= top + 1e-12; v += step) {
    const y = pad.top + plotH - (v / top) * plotH;
    svg.append(s("line", { class: "grid-line", x1: pad.left, x2: width - pad.right, y1: y, y2: y }));
    svg.append(s("text", { x: pad.left - 6, y: y + 4, "text-anchor": "end" }, format(v)));
  }
  svg.append(s("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: pad.top + plotH, y2: pad.top + plotH }));
  return { svg, plotH };
}

function xLabels(svg, labels, xOf, y, every) {
  labels.forEach((lab, i) => {
    if ((labels.length - 1 - i) % every !== 0) return; // counted from the newest, which is always labelled
    svg.append(s("text", { x: xOf(i), y, "text-anchor": "middle" }, lab));
  });
}

/**
 * Stacked bars: labels along x, one stack per label, series [{name, values}] (values aligned with labels).
 * format(v) renders an axis value (with its unit).
 */
// Narrow screens get a narrower drawing, so its text is not scaled down to nothing.
const narrow = () => window.matchMedia("(max-width: 700px)").matches;

export function stackedBars({ labels, series, format = String, label = "chart", width = narrow() ? 400 : 760,
  height = narrow() ? 240 : 260 }) {
  const pad = { top: 12, right: 12, bottom: 28, left: 64 };
  const totals = labels.map((_, i) => series.reduce((sum, sr) => sum + (Number(sr.values[i]) || 0), 0));
  const { top, step } = niceScale(Math.max(0, ...totals));
  const { svg, plotH } = frame({ width, height, pad, top, step, format, label });
  const plotW = width - pad.left - pad.right;
  const slot = plotW / Math.max(1, labels.length);
  const barW = Math.max(2, Math.min(48, slot * 0.7));
  const xOf = (i) => pad.left + slot * i + slot / 2;
  labels.forEach((lab, i) => {
    let y = pad.top + plotH;
    series.forEach((sr, k) => {
      const v = Number(sr.values[i]) || 0;
      if (v <= 0) return;
      const bh = Math.max(1, (v / top) * plotH);
      y -= bh;
      svg.append(s("rect", { x: xOf(i) - barW / 2, y, width: barW, height: bh, fill: seriesColor(sr, k), rx: 2 },
        s("title", {}, `${lab} · ${sr.name}: ${format(v)}`)));
    });
    if (totals[i] === 0) {
      svg.append(s("rect", { x: xOf(i) - barW / 2, y: pad.top + plotH - 1, width: barW, height: 1,
        fill: "var(--line)" }, s("title", {}, `${lab}: ${format(0)}`)));
    }
  });
  xLabels(svg, labels, xOf, height - 8, Math.ceil(labels.length / (width < 500 ? 4 : 8)));
  return h("figure", { class: "chart-figure", style: "margin:0" }, svg, legend(series));
}

/**
 * Horizontal bars: items [{name, value, note?, color?}]. Drawn as HTML so the names stay readable in a narrow
 * panel; each row carries its value as text, and the whole list is one labelled figure.
 */
export function hbars(items, { format = String, label = "chart" } = {}) {
  const max = Math.max(0, ...items.map((i) => Number(i.value) || 0));
  return h("figure", { class: "hbars", role: "img", "aria-label": `${label}: ${items.map((i) => `${i.name} ${format(i.value)}`).join(", ")}`,
    style: "margin:0" },
  items.map((it, i) => {
    const v = Number(it.value) || 0;
    const pct = max > 0 ? Math.max(v > 0 ? 1 : 0, (100 * v) / max) : 0;
    return h("div", { class: "hbar", title: `${it.name}: ${format(v)}${it.note ? ` (${it.note})` : ""}` },
      h("span", { class: "name" }, it.name),
      h("span", { class: "track" }, h("span", { class: "fill", style: `width:${pct}%;background:${it.color || color(it.colorIndex ?? i)}` })),
      h("span", { class: "num" }, format(v)));
  }));
}
