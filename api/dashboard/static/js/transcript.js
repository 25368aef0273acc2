// One rendering of a transcript turn, for recorded sessions, the Live page and the Talk page.

import { h, seconds, time } from "./ui.js";

function latency(m) {
  if (!m) return null;
  const parts = [];
  if (m.voice_to_voice != null) parts.push(`voice-to-voice ${seconds(m.voice_to_voice)}`);
  if (m.e2e_latency != null) parts.push(`e2e ${seconds(m.e2e_latency)}`);
  if (m.llm_ttft != null) parts.push(`LLM first token ${seconds(m.llm_ttft)}`);
  if (m.tts_ttfb != null) parts.push(`TTS first byte ${seconds(m.tts_ttfb)}`);
  if (m.end_of_turn_delay != null) parts.push(`end of turn ${seconds(m.end_of_turn_delay)}`);
  return parts.length ? parts.join(" · ") : null;
}

/** item: {speaker: "USER"|"AGENT", content, timestamp, metrics?, providers?, source?, interrupted?, partial?} */
export function turn(item) {
  const agent = item.speaker === "AGENT";
  const meta = [time(item.timestamp)];
  if (item.source === "supervisor") meta.push("said for the supervisor");
  if (item.interrupted) meta.push("interrupted");
  const lat = latency(item.metrics);
  if (lat) meta.push(lat);
  if (item.providers && (item.providers.stt || item.providers.llm || item.providers.tts)) {
    meta.push([item.providers.stt, item.providers.llm, item.providers.tts].filter(Boolean).join(" → "));
  }
  return h("div", { class: `turn ${agent ? "agent" : "user"}${item.partial ? " partial" : ""}`,
    dataset: { speaker: item.speaker } },
    h("span", { class: "speaker" }, item.label || (agent ? "Agent" : "Caller")),
    h("div", { class: "content" }, item.content),
    h("div", { class: "meta" }, meta.filter(Boolean).join(" · ")));
}

/** call: one of a session's toolCalls {name, type, arguments, status, httpStatus, latencyMs, result, startedAt} */
export function toolTurn(call) {
  const args = typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments);
  const meta = [time(call.startedAt), call.status, call.latencyMs != null ? `${call.latencyMs} ms` : null,
    call.httpStatus != null ? `HTTP ${call.httpStatus}` : null];
  return h("div", { class: `turn tool ${call.status}`, dataset: { speaker: "TOOL", tool: call.name } },
    h("span", { class: "speaker" }, "Tool"),
    h("div", { class: "content mono" }, `${call.name}(${args})`),
    call.result ? h("div", { class: "content small mono" }, `→ ${call.result.slice(0, 400)}`) : null,
    h("div", { class: "meta" }, meta.filter(Boolean).join(" · ")));
}

/** The turns and, between them at the time they started, the tool calls. */
export function transcriptBox(items, { live = false, toolCalls = [] } = {}) {
  const rows = [...items.map((i) => [i.timestamp, turn(i)]), ...toolCalls.map((c) => [c.startedAt, toolTurn(c)])];
  rows.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  return h("div", { class: "transcript", role: "log", "aria-live": live ? "polite" : "off",
    "aria-label": "Transcript" }, rows.map((r) => r[1]));
}
