// Calls: the sessions list (filters, pages), one call's transcript with per-turn latency, its analysis and its
// cost breakdown, and the outbound call form with the call's status as it changes.

import { del, get, getBlob, post } from "../api.js";
import { hbars } from "../chart.js";
import { transcriptBox } from "../transcript.js";
import {
  add, count, describe, duration, empty, errorState, field, fill, h, rowActivate, showFieldErrors, shortId,
  statusBadge, table, toast, unavailable, usd, when,
} from "../ui.js";
import { navigate } from "../app.js";
import { everyAgent } from "./agents.js";

const PAGE_SIZE = 20;
const TERMINAL = new Set(["COMPLETED", "FAILED", "NO_ANSWER"]);

let agentNames = null;
async function agents() {
  if (!agentNames) {
    agentNames = everyAgent().catch(() => []);
  }
  return agentNames;
}

export async function render(main, params) {
  agentNames = null;
  if (params[0]) return renderCall(main, params[0]);
  return renderList(main);
}

// ---- the list --------------------------------------------------------------------------------------------------

async function renderList(main) {
  const state = { page: 1, direction: "", start_date: "", end_date: "" };
  const results = h("div", {});
  const filters = h("form", { class: "filters", "aria-label": "Filter calls" },
    field("Direction", h("select", { name: "direction" }, h("option", { value: "" }, "Any"),
      h("option", { value: "inbound" }, "Inbound and web"), h("option", { value: "outbound" }, "Outbound"))),
    field("From", h("input", { type: "date", name: "start_date" })),
    field("To", h("input", { type: "date", name: "end_date" })),
    h("button", { type: "submit" }, "Apply"));
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    const d = new FormData(filters);
    Object.assign(state, { page: 1, direction: d.get("direction"), start_date: d.get("start_date"),
      end_date: d.get("end_date") });
    load();
  });
  filters.addEventListener("change", (e) => {
    if (e.target.name === "direction") filters.requestSubmit();
  });

  const outbound = h("section", { class: "panel", "aria-labelledby": "outbound-h" });
  main.append(
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Calls"),
      h("p", { class: "muted" }, "Every call: web, inbound and outbound, with its transcript, analysis and cost."))),
    h("section", { class: "panel", "aria-label": "Sessions" }, filters, results),
    outbound);
  outboundForm(outbound);

  const load = () => fill(results, async () => {
    const [{ sessions, total }, list] = await Promise.all([
      get("/api/sessions", { page: state.page, limit: PAGE_SIZE, direction: state.direction,
        start_date: state.start_date, end_date: state.end_date }),
      agents(),
    ]);
    const names = Object.fromEntries(list.map((a) => [a.id, a.name]));
    if (!sessions.length) return empty(state.page > 1 ? "No more calls." : "No calls match.");
    const rows = sessions.map((s) => rowActivate(h("tr", { "data-session": s.id },
      h("td", { class: "nowrap" }, when(s.startedAt)),
      h("td", {}, names[s.agentId] || h("span", { class: "mono" }, shortId(s.agentId))),
      h("td", {}, s.direction === "outbound" ? `outbound ${s.outbound_phone_number || ""}` : "inbound / web"),
      h("td", { class: "num" }, s.duration == null ? "live" : duration(s.duration)),
      h("td", {}, statusBadge(s.call_status || s.status)),
      h("td", { class: "small" }, s.endReason || "")),
    () => navigate(`#/calls/${encodeURIComponent(s.id)}`)));
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const prev = h("button", { type: "button", disabled: state.page <= 1, onclick: () => { state.page--; load(); } }, "← Newer");
    const next = h("button", { type: "button", disabled: state.page >= pages, onclick: () => { state.page++; load(); } }, "Older →");
    return [
      table([{ title: "Started" }, { title: "Agent" }, { title: "Direction" }, { title: "Duration", num: true },
        { title: "Status" }, { title: "End reason" }], rows, { label: "Calls" }),
      h("div", { class: "actions", style: "margin-top:.8rem" }, prev, next,
        h("span", { class: "muted small" }, `page ${state.page} of ${pages} · ${count(total, "call")}`)),
    ];
  }, "Loading calls");
  await load();
}

async function outboundForm(panel) {
  const list = await agents();
  const status = h("div", { "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary" }, "Call");
  const form = h("form", { class: "stack", novalidate: true, "aria-label": "Place an outbound call" },
    h("div", { class: "fields" },
      field("Agent", h("select", { name: "agent_id", required: true },
        list.length ? list.map((a) => h("option", { value: a.id }, a.name)) : h("option", { value: "" }, "no agents yet"))),
      field("Phone number", h("input", { name: "phone_number", type: "tel", placeholder: "+15551234567",
        autocomplete: "off" }), "E.164"),
      field("Callback URL (optional)", h("input", { name: "callback_url", type: "url", placeholder: "https://…" }))),
    h("div", { class: "form-error" }), h("div", { class: "actions" }, submit), status);
  let polling = null;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    const d = new FormData(form);
    const body = { agent_id: d.get("agent_id"), phone_number: String(d.get("phone_number") || "").trim() };
    if (d.get("callback_url")) body.callback_url = String(d.get("callback_url")).trim();
    submit.disabled = true;
    try {
      const placed = await post("/api/calls/outbound", body);
      toast(`Calling ${body.phone_number}`);
      clearInterval(polling);
      polling = watchStatus(placed.call_id, status);
    } catch (err) {
      showFieldErrors(form, err);
    } finally {
      submit.disabled = false;
    }
  });
  panel.append(h("h2", { id: "outbound-h" }, "Place an outbound call"), form);
}

function watchStatus(callId, box) {
  const show = async () => {
    try {
      const s = await get(`/api/calls/${encodeURIComponent(callId)}/status`);
      box.replaceChildren(h("p", {}, "Call ", h("span", { class: "mono" }, shortId(callId)), " to ",
        s.outbound_phone_number || "", ": ", statusBadge(s.call_status),
        s.end_reason ? ` (${s.end_reason})` : "", s.duration ? ` · ${duration(s.duration)}` : "",
        s.session_id ? [" · ", h("a", { href: `#/calls/${encodeURIComponent(s.session_id)}` }, "open the call")] : ""));
      if (TERMINAL.has(s.call_status)) clearInterval(timer);
    } catch (err) {
      box.replaceChildren(h("p", { class: "field-error" }, describe(err)));
      clearInterval(timer);
    }
  };
  const timer = setInterval(show, 1000);
  show();
  return timer;
}

// ---- one call --------------------------------------------------------------------------------------------------

async function renderCall(main, id) {
  const head = h("div", { class: "page-head" });
  const body = h("div", {});
  main.append(head, body);
  await fill(body, async () => {
    const [s, list] = await Promise.all([get(`/api/sessions/${encodeURIComponent(id)}`), agents()]);
    const agent = list.find((a) => a.id === s.agentId);
    head.replaceChildren(h("div", {},
      h("p", { class: "small" }, h("a", { href: "#/calls" }, "← All calls")),
      h("h1", {}, `Call with ${agent ? agent.name : shortId(s.agentId)}`),
      h("p", { class: "muted" }, when(s.startedAt), " · ", s.duration == null ? "live" : duration(s.duration), " · ",
        statusBadge(s.call_status || s.status), s.endReason ? ` · ${s.endReason}` : "")));
    const costs = h("section", { class: "panel", "aria-labelledby": "cost-h" }, h("h2", { id: "cost-h" }, "Cost"));
    const costBody = h("div", {});
    costs.append(costBody);
    fill(costBody, () => costBreakdown(id), "Loading costs");
    return [
      s.error ? h("div", { class: "state error", role: "alert", style: "margin-bottom:1rem" }, s.error) : null,
      h("div", { class: "split" },
        h("div", {}, s.recordingUrl ? recordingPanel(s) : null, analysisPanel(s), costs),
        h("section", { class: "panel", "aria-labelledby": "tr-h" }, h("h2", { id: "tr-h" }, "Transcript"),
          s.transcript.length || (s.toolCalls || []).length
            ? transcriptBox(s.transcript, { toolCalls: s.toolCalls || [] }) : empty("Nothing was said in this call."))),
    ];
  }, "Loading the call");
}

// The recording's player: the API wants the credential in a header, which an <audio src> cannot send, so the file is
// fetched with it and played from an object URL (released when the page leaves the call).
function recordingPanel(s) {
  const panel = h("section", { class: "panel", "aria-labelledby": "rec-h" }, h("h2", { id: "rec-h" }, "Recording"));
  const player = h("audio", { controls: true, preload: "auto", "aria-label": "Call recording", "data-recording": s.id });
  const note = h("p", { class: "muted small" },
    s.recordingDuration == null ? "Still being recorded." : `${duration(Math.round(s.recordingDuration))} · stereo: the caller left, the agent right`);
  const remove = h("button", { type: "button", class: "secondary" }, "Delete recording");
  remove.addEventListener("click", async () => {
    if (!confirm("Delete this call's recording? This cannot be undone.")) return;
    try {
      await del(s.recordingUrl);
      if (player.src) URL.revokeObjectURL(player.src);
      panel.replaceChildren(h("h2", { id: "rec-h" }, "Recording"), empty("The recording was deleted."));
      toast("Recording deleted");
    } catch (e) {
      toast(e.detail || String(e), "error");
    }
  });
  panel.append(player, note, remove);
  getBlob(s.recordingUrl).then((blob) => {
    const url = URL.createObjectURL(blob);
    player.src = url;
    window.addEventListener("hashchange", () => URL.revokeObjectURL(url), { once: true });
  }).catch((e) => panel.replaceChildren(h("h2", { id: "rec-h" }, "Recording"), errorState(e)));
  return panel;
}

function analysisPanel(s) {
  const panel = h("section", { class: "panel", "aria-labelledby": "an-h" }, h("h2", { id: "an-h" }, "Analysis"));
  const a = s.analysis;
  if (a) {
    add(panel,
      h("p", {}, a.summary),
      h("p", {}, statusBadge(a.sentiment), ` sentiment ${Math.round(a.sentiment_score * 100)} / 100 · outcome: `,
        h("strong", {}, a.outcome)),
      a.topics.length ? h("p", { class: "small" }, "Topics: ", a.topics.join(", ")) : null,
      a.action_items.length ? [h("h3", {}, "Action items"), h("ul", {}, a.action_items.map((i) => h("li", {}, i)))] : null);
  } else if (s.analysisStatus === "pending" || s.status !== "ended") {
    panel.append(empty(s.status === "ended" ? "The analysis is being written." : "The call is still going."));
  } else {
    panel.append(empty(`No analysis (${s.analysisStatus || "none"})${s.analysisError ? `: ${s.analysisError}` : ""}.`));
  }
  return panel;
}

const UNITS = { stt_minutes: "min", sip_minutes: "min", storage_minutes: "min", llm_tokens: "tokens", tts_characters: "chars" };

async function costBreakdown(id) {
  let b;
  try {
    b = await get(`/api/sessions/${encodeURIComponent(id)}/cost-breakdown`, { events_limit: 200 });
  } catch (err) {
    if (err.status === 404 || err.status === 405) return unavailable("The cost breakdown");
    return errorState(err);
  }
  const types = Object.entries(b.cost_by_type || {}).sort((x, y) => y[1] - x[1]);
  const rows = b.events.map((e) => h("tr", {},
    h("td", {}, e.event_type.replace("_", " ")), h("td", {}, e.provider, e.model ? h("div", { class: "muted small" }, e.model) : null),
    h("td", { class: "num" }, `${Number(e.quantity).toLocaleString("en-US", { maximumFractionDigits: 3 })} ${UNITS[e.event_type] || e.unit}`,
      e.token_kind ? h("div", { class: "muted small" }, e.token_kind) : null),
    h("td", { class: "num" }, e.priced ? usd(e.total_cost, { digits: 6 }) : h("span", { class: "badge warn" }, "unpriced"))));
  return h("div", { "data-testid": "cost-breakdown" },
    h("p", { class: "big-number", "data-testid": "session-cost" }, usd(b.total_cost, { digits: 6 })),
    b.unpriced_event_count ? h("p", { class: "badge warn" }, `${count(b.unpriced_event_count, "event")} without a price (not counted)`) : null,
    types.length ? hbars(types.map(([name, value], i) => ({ name: name.replace("_", " "), value, colorIndex: i })),
      { format: (v) => usd(v, { digits: 5 }), label: "Cost by usage type" }) : empty("No usage recorded for this call."),
    b.events.length ? h("details", {}, h("summary", {}, `Usage events (${b.events_total})`),
      table([{ title: "Type" }, { title: "Provider" }, { title: "Quantity", num: true }, { title: "Cost", num: true }],
        rows, { label: "Usage events" })) : null);
}
