// Live: the calls in progress (from the event stream, or polling /api/calls/active where the stream is not
// served), the selected call's transcript as it is spoken, and the supervisor's controls.

import { get, hasRoute, post, put } from "../api.js";
import { everyAgent } from "./agents.js";
import { LiveFeed, speakerOf, textOf } from "../events.js";
import { transcriptBox } from "../transcript.js";
import {
  clear, confirmDialog, describe, duration, empty, errorState, group, h, loading, shortId, statusBadge, toast,
} from "../ui.js";

const DIGITS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];

export async function render(main, params) {
  const st = {
    calls: null, error: null, selected: params[0] || null, finals: new Map(), partials: new Map(), names: {},
    ended: new Map(),
    mode: "connecting", transferAvailable: false,
  };
  const modeBox = h("p", { class: "muted small", "aria-live": "polite", "data-testid": "live-mode" });
  const listBox = h("div", { "data-testid": "live-calls" }, loading("Looking for calls"));
  const detail = h("section", { class: "panel", "aria-label": "Selected call" });
  main.append(
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Live"),
      h("p", { class: "muted" }, "Calls in progress. Select one to follow its transcript and step in.")), modeBox),
    h("div", { class: "split" }, h("section", { class: "panel", "aria-labelledby": "live-h" },
      h("h2", { id: "live-h" }, "In progress"), listBox), detail));

  const [agents, transfer] = await Promise.all([
    everyAgent().catch(() => []),
    hasRoute("POST", "/api/override/transfer"),
  ]);
  st.names = Object.fromEntries(agents.map((a) => [a.id, a.name]));
  st.transferAvailable = transfer;

  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      st.calls = await get("/api/calls/active");
      st.error = null;
      if (st.selected) await loadTranscript(st.selected);
    } catch (err) {
      st.error = err;
    } finally {
      polling = false;
    }
    drawList();
    drawDetail();
  }

  async function loadTranscript(sid) {
    try {
      st.finals.set(sid, await get(`/api/sessions/${encodeURIComponent(sid)}/transcripts`));
    } catch {
      // a call that just ended or is not ours: the list says so
    }
  }

  // The events' own fields (README "Live event stream"): call.started {agent_id, direction, from_number, to_number,
  // started_at}, call.updated {status, ...}, call.ended {duration, reason, error, ended_at}, transcript.partial and
  // transcript.final {speaker: "user"|"agent", text, source?}, context.updated {context}, error {detail, stage?,
  // recoverable?}. Each change is shown at once; a refetch (one per burst) then brings what the event does not carry.
  let refetch = null;
  let refetchTranscript = null;
  const refetchSoon = () => {
    clearTimeout(refetch);
    refetch = setTimeout(poll, 150);
  };
  function onEvent(ev) {
    const sid = ev.call_sid;
    if (ev.type === "call.started" && sid) {
      if (st.calls && !st.calls.some((c) => c.call_sid === sid)) {
        st.calls.push({ id: sid, call_sid: sid, agent_id: ev.agent_id, direction: ev.direction,
          from_number: ev.from_number, to_number: ev.to_number, started_at: ev.started_at || ev.timestamp,
          status: "in-progress", context: null });
      }
      st.ended.delete(sid);
      drawList();
      refetchSoon();
      return;
    }
    if (ev.type === "call.updated" && sid) {
      const call = st.calls && st.calls.find((c) => c.call_sid === sid);
      if (call && ev.status) call.status = ev.status;
      drawList();
      refetchSoon();
    } else if (ev.type === "call.ended" && sid) {
      st.ended.set(sid, { reason: ev.reason, duration: ev.duration, error: ev.error });
      st.partials.delete(sid);
      if (st.calls) st.calls = st.calls.filter((c) => c.call_sid !== sid);
      drawList();
      refetchSoon();
    } else if (ev.type === "transcript.partial" && sid) {
      const p = st.partials.get(sid) || {};
      p[speakerOf(ev)] = textOf(ev);
      st.partials.set(sid, p);
    } else if (ev.type === "transcript.final" && sid) {
      const speaker = speakerOf(ev);
      const list = st.finals.get(sid) || [];
      list.push({ speaker, content: textOf(ev), timestamp: ev.timestamp, source: ev.source });
      st.finals.set(sid, list);
      const p = st.partials.get(sid);
      if (p) delete p[speaker];
      if (sid === st.selected) { // the stored item adds its latencies and providers
        clearTimeout(refetchTranscript);
        refetchTranscript = setTimeout(() => loadTranscript(sid).then(() => drawDetail()), 300);
      }
    } else if (ev.type === "context.updated" && sid && st.calls) {
      const call = st.calls.find((c) => c.call_sid === sid);
      if (call && ev.context) call.context = ev.context;
    } else if (ev.type === "error") {
      const where = [ev.stage, sid ? `call ${shortId(sid)}` : null].filter(Boolean).join(", ");
      const fatal = ev.recoverable === false ? "; the call ends" : "";
      toast(`Stream: ${ev.detail || "error"}${where ? ` (${where})` : ""}${fatal}`, "error");
      return;
    }
    if (sid === st.selected) drawDetail();
  }

  function onMode(mode) {
    st.mode = mode;
    drawMode();
  }

  function drawMode() {
    clear(modeBox,
      st.mode === "stream" ? [h("span", { class: "badge live" }, "live"), " event stream connected"]
        : st.mode === "polling" ? [h("span", { class: "badge warn" }, "polling"),
          " the event stream is not available on this server; refreshing every 2 s"]
          : [h("span", { class: "spinner" }), "connecting to the event stream…"]);
  }

  const rows = new Map(); // call_sid -> { li, button, sig }
  const listUl = h("ul", { style: "list-style:none;padding:0;margin:0" });
  function drawList() {
    if (st.error && !st.calls) {
      clear(listBox, errorState(st.error, poll));
      return;
    }
    if (!st.calls) return;
    if (!st.calls.length) {
      clear(listBox, empty("No calls in progress. Start one from the Talk page or place an outbound call."));
      return;
    }
    // A call's row is kept while it is listed and only its contents change, so a redraw (every event and poll)
    // never swaps the button between a click's press and release: the click would be lost (CI, 2026-12-04).
    const lis = st.calls.map((c) => {
      let row = rows.get(c.call_sid);
      if (!row) {
        const button = h("button", { type: "button", class: "call-item", dataset: { sid: c.call_sid },
          style: "width:100%;text-align:left;margin-bottom:.4rem", onclick: () => select(c.call_sid) });
        row = { li: h("li", {}, button), button, sig: null };
        rows.set(c.call_sid, row);
      }
      row.button.setAttribute("aria-pressed", String(c.call_sid === st.selected));
      const sig = JSON.stringify([st.names[c.agent_id], c.agent_id, c.status, c.to_number, c.started_at]);
      if (sig !== row.sig) {
        row.sig = sig;
        clear(row.button, h("strong", {}, st.names[c.agent_id] || shortId(c.agent_id)), " ", statusBadge(c.status),
          h("div", { class: "muted small" }, c.to_number ? `→ ${c.to_number}` : "web call", " · ",
            h("span", { class: "ticker", dataset: { started: c.started_at } }, duration(elapsed(c.started_at)))));
      }
      return row.li;
    });
    const listed = new Set(st.calls.map((c) => c.call_sid));
    for (const sid of [...rows.keys()]) if (!listed.has(sid)) rows.delete(sid);
    if (listUl.parentNode !== listBox) clear(listBox, listUl);
    const same = listUl.children.length === lis.length && lis.every((li, i) => listUl.children[i] === li);
    if (!same) { // a row moved: moving the focused button takes its focus away, so it is given back
      const focused = document.activeElement?.dataset?.sid;
      listUl.replaceChildren(...lis);
      if (focused) rows.get(focused)?.button.focus();
    }
  }

  function select(sid) {
    st.selected = sid;
    history.replaceState(null, "", `#/live/${encodeURIComponent(sid)}`);
    drawList();
    drawDetail();
    loadTranscript(sid).then(() => drawDetail());
  }

  // The selected call's view keeps its controls while the call stays selected, so a poll or an event never
  // takes away what the supervisor is typing (or the focus).
  const headBox = h("div", {});
  const trBox = h("div", { "data-testid": "live-transcript" });
  const ctlBox = h("div", {});
  let controlsFor = null;
  function drawDetail() {
    const call = st.calls && st.calls.find((c) => c.call_sid === st.selected);
    if (!call) {
      controlsFor = null;
      if (!st.selected || !st.calls) {
        clear(detail, h("h2", {}, "No call selected"), empty(st.calls && st.calls.length
          ? "Select a call on the left." : "Waiting for a call."));
      } else {
        const end = st.ended.get(st.selected);
        const how = end ? [end.reason ? `Ended: ${end.reason}` : "Ended", end.duration != null
          ? ` after ${duration(end.duration)}` : "", end.error ? ` (${end.error})` : "", ". "] : [];
        clear(detail, h("h2", {}, `Call ${shortId(st.selected)}`),
          empty("This call is not in progress any more.", h("p", {}, ...how,
            h("a", { href: `#/calls/${encodeURIComponent(st.selected)}` }, "Open its record"))));
      }
      return;
    }
    if (controlsFor !== call.call_sid) {
      clear(ctlBox, controlPanel(call));
      controlsFor = call.call_sid;
      clear(detail, headBox, trBox, ctlBox);
    }
    const items = [...(st.finals.get(call.call_sid) || [])];
    const partial = st.partials.get(call.call_sid) || {};
    for (const [speaker, content] of Object.entries(partial)) {
      if (content) items.push({ speaker, content, partial: true, timestamp: null });
    }
    const box = trBox.querySelector(".transcript");
    const atBottom = !box || box.scrollTop + box.clientHeight >= box.scrollHeight - 24;
    clear(headBox,
      h("h2", {}, st.names[call.agent_id] || "Call", " ", statusBadge(call.status)),
      h("p", { class: "muted small" }, h("span", { class: "mono" }, call.call_sid), " · ",
        call.to_number ? `phone ${call.to_number}` : "web call", " · started ",
        h("span", { class: "ticker", dataset: { started: call.started_at } }, duration(elapsed(call.started_at))), " ago"));
    clear(trBox, items.length ? transcriptBox(items, { live: true }) : empty("Nothing said yet."));
    const nb = trBox.querySelector(".transcript");
    if (nb && atBottom) nb.scrollTop = nb.scrollHeight;
  }

  function controlPanel(call) {
    const sid = call.call_sid;
    const phone = Boolean(call.to_number || call.from_number);
    const out = h("p", { class: "small", "aria-live": "polite" });
    const run = async (what, fn) => {
      out.textContent = `${what}…`;
      try {
        const r = await fn();
        out.textContent = r && r.message ? r.message : `${what}: done`;
        toast(`${what}: done`);
        return r || {};
      } catch (err) {
        out.textContent = `${what} failed: ${describe(err)}`;
        toast(`${what} failed: ${describe(err)}`, "error");
        return null;
      }
    };

    const say = h("form", { class: "actions", "aria-label": "Say" },
      h("input", { name: "text", placeholder: "Have the agent say…", "aria-label": "Text for the agent to say",
        style: "flex:1;min-width:180px", maxlength: 2000 }),
      h("button", { type: "submit" }, "Say"));
    say.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = say.elements.text.value.trim();
      if (!text) return;
      if (await run("Say", () => post("/api/override/text", { call_sid: sid, text }))) say.reset();
    });

    const keypad = h("div", { class: "actions", role: "group", "aria-label": "DTMF keypad" },
      DIGITS.map((d) => h("button", { type: "button", disabled: !phone, "aria-label": `DTMF ${d}`,
        onclick: () => run(`DTMF ${d}`, () => post("/api/override/dtmf", { call_sid: sid, digit: d })) }, d)));

    const canTransfer = st.transferAvailable && phone; // a SIP REFER: there is no line to refer on a web call
    const transfer = h("form", { class: "actions", "aria-label": "Transfer" },
      h("input", { name: "target", type: "text", placeholder: "+15551111111 or sip:desk@pbx.example.com",
        "aria-label": "Transfer to (E.164 or SIP URI)", autocomplete: "off", disabled: !canTransfer,
        style: "flex:1;min-width:160px" }),
      h("select", { name: "mode", "aria-label": "Transfer mode", disabled: !canTransfer },
        h("option", { value: "cold" }, "Cold: hand over at once"),
        h("option", { value: "warm" }, "Warm: brief a person first")),
      h("button", { type: "submit", disabled: !canTransfer }, "Transfer"));
    transfer.addEventListener("submit", async (e) => {
      e.preventDefault();
      const target = transfer.elements.target.value.trim();
      const mode = transfer.elements.mode.value;
      // cold is the API's default: sent only when warm is chosen
      const body = mode === "warm" ? { call_sid: sid, target, mode } : { call_sid: sid, target };
      if (target) await run("Transfer", () => post("/api/override/transfer", body));
    });

    const ctx = h("textarea", { name: "context", rows: 4, class: "mono", "aria-label": "Context (JSON)" },
      JSON.stringify(call.context || {}, null, 2));
    const ctxForm = h("form", { class: "stack" }, ctx, h("div", { class: "actions" },
      h("button", { type: "submit" }, "Push context")));
    ctxForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      let context;
      try {
        context = JSON.parse(ctx.value || "{}");
        if (!context || typeof context !== "object" || Array.isArray(context)) throw new Error("a JSON object is needed");
      } catch (err) {
        out.textContent = `The context is not a JSON object: ${err.message}`;
        ctx.setAttribute("aria-invalid", "true");
        ctx.focus();
        return;
      }
      ctx.removeAttribute("aria-invalid");
      const r = await run("Push context", () => put(`/api/calls/${encodeURIComponent(sid)}/context`, { context }));
      if (r && r.context) ctx.value = JSON.stringify(r.context, null, 2); // what the call holds now, merged
    });

    const end = h("button", { type: "button", class: "danger", onclick: async () => {
      if (!(await confirmDialog("End this call now? The caller is disconnected.", { confirm: "End call" }))) return;
      if (await run("End call", () => post("/api/override/end", { call_sid: sid }))) poll();
    } }, "End call");

    return h("div", { class: "stack", style: "display:grid;gap:.9rem;margin-top:1rem" },
      h("h3", {}, "Supervisor"),
      say,
      group("DTMF", keypad, phone ? null : "Digits go to phone calls only; this is a web call."),
      group("Transfer", transfer, !st.transferAvailable ? "Transfer: not available on this server."
        : phone ? "To a number (E.164) or a SIP URI. Cold: the call ends here once it is transferred. Warm: the caller"
          + " holds while the agent briefs the person, who presses 1 (or says yes) to take the call."
          : "Transfers go to phone calls only; this is a web call."),
      group("Context", ctxForm, "Merged into the call's context (a null value removes a key); the agent uses it from its next turn."),
      h("div", { class: "actions" }, end),
      out);
  }

  const ticker = setInterval(() => {
    for (const el of document.querySelectorAll(".ticker")) el.textContent = duration(elapsed(el.dataset.started));
  }, 1000);
  drawMode();
  drawDetail();
  const feed = new LiveFeed({ onEvent, onMode, poll }).start();
  return () => {
    clearInterval(ticker);
    clearTimeout(refetch);
    clearTimeout(refetchTranscript);
    feed.close();
  };
}

function elapsed(startedAt) {
  const t = Date.parse(startedAt);
  return Number.isNaN(t) ? null : (Date.now() - t) / 1000;
}
