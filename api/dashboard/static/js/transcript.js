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

export function transcriptBox(items, { live = false } = {}) {
  return h("div", { class: "transcript", role: "log", "aria-live": live ? "polite" : "off",
    "aria-label": "Transcript" }, items.map(turn));
}
