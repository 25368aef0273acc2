// Campaigns: the dialer's campaigns (status, progress, cost), a new one from a CSV file, and one campaign's progress
// per status, cost per outcome, controls and contacts with their attempts. Both views follow `campaign.progress` and
// `campaign.completed` on the live event stream (each carries the campaign's status and progress; a refetch then
// brings the costs and the contacts); the state changes made with the buttons are this page's own answers.

import { get, hasRoute, post } from "../api.js";
import { openCampaignForm, openContactsForm } from "../campaign-forms.js";
import { LiveFeed } from "../events.js";
import {
  clear, confirmDialog, count, describe, empty, fill, h, rowActivate, shortId, statusBadge, table, toast,
  unavailable, usdNanos, when,
} from "../ui.js";
import { everyAgent } from "./agents.js";

const STATUSES = ["pending", "in_progress", "retrying", "completed", "busy", "no_answer", "voicemail", "failed",
  "cancelled", "do_not_call"];
const LABELS = { in_progress: "in progress", no_answer: "no answer", do_not_call: "do not call" };
// action -> the states it may start from (core/store/campaigns.py ACTIONS); the API answers 409 to any other
const ACTIONS = [
  { name: "start", label: "Start", from: ["draft"] },
  { name: "pause", label: "Pause", from: ["running"] },
  { name: "resume", label: "Resume", from: ["paused"] },
  { name: "cancel", label: "Cancel campaign", from: ["draft", "running", "paused"], danger: true },
];
const CLOSED = ["completed", "cancelled"];
const OPEN = ["pending", "retrying", "in_progress"]; // a contact still to be called
const CONTACTS_PAGE = 100;

const label = (status) => LABELS[status] || status;
const contactsOf = (progress) => STATUSES.reduce((n, s) => n + ((progress || {})[s] || 0), 0);
const isCampaignEvent = (ev) => typeof ev.type === "string" && ev.type.startsWith("campaign.");

export async function render(main, params) {
  if (!(await hasRoute("POST", "/api/campaigns"))) {
    main.append(h("div", { class: "page-head" }, h("h1", {}, "Campaigns")), unavailable("Campaigns (/api/campaigns)"));
    return undefined;
  }
  if (params[0]) return renderCampaign(main, params[0]);
  return renderList(main);
}

/** Where the live updates come from, as the Live page says it. */
function modeText(box, mode) {
  clear(box, mode === "stream" ? [h("span", { class: "badge live" }, "live"), " live updates connected"]
    : mode === "polling" ? [h("span", { class: "badge warn" }, "polling"),
      " the event stream is not available on this server; refreshing now and then"]
      : [h("span", { class: "spinner" }), "connecting to the event stream…"]);
}

/** Redraw `target` from `load()` keeping what it shows until the new content is there (no loading flash). */
function quietly(target, load) {
  let running = null;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        clear(target, await load());
      } catch {
        // the next event or poll tries again; the first load's error state stays where it was shown
      }
    })();
    await running;
    running = null;
    if (again) {
      again = false;
      await run();
    }
    return undefined;
  };
  return run;
}

function progressBar(progress) {
  const total = contactsOf(progress);
  if (!total) return null;
  return h("div", { class: "progress-bar", role: "img", "aria-label": STATUSES.filter((s) => progress[s])
    .map((s) => `${progress[s]} ${label(s)}`).join(", ") },
  STATUSES.filter((s) => progress[s]).map((s) => h("span", { class: `seg ${s}`,
    style: `width:${(100 * progress[s]) / total}%` })));
}

function progressText(progress) {
  const parts = STATUSES.filter((s) => (progress || {})[s]).map((s) => `${progress[s]} ${label(s)}`);
  return parts.length ? parts.join(" · ") : "no contacts yet";
}

// ---- the list --------------------------------------------------------------------------------------------------

async function renderList(main) {
  const list = h("div", { "data-testid": "campaigns" });
  const modeBox = h("p", { class: "muted small", "aria-live": "polite", "data-testid": "campaigns-live" });
  let agents = [];
  const create = () => {
    if (!agents.length) {
      toast("Create an agent first: a campaign calls its contacts with one agent.", "error");
      return;
    }
    openCampaignForm(agents, { onDone: () => refresh() });
  };
  main.append(
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Campaigns"), h("p", { class: "muted" },
        "Batch outbound calls: a list of contacts called by one agent, inside a schedule, a few at a time."), modeBox),
      h("button", { type: "button", class: "primary", onclick: create }, "New campaign")),
    h("section", { class: "panel", "aria-label": "Campaigns" }, list));

  const load = async () => {
    const [{ campaigns }, agentList] = await Promise.all([get("/api/campaigns"), everyAgent().catch(() => [])]);
    agents = agentList;
    const names = Object.fromEntries(agents.map((a) => [a.id, a.name]));
    const dialed = campaigns.filter((c) => c.id); // the others are names 004's ledger carries (outreach, costs)
    if (!dialed.length) {
      return empty("No campaigns yet.", h("button", { type: "button", class: "primary", onclick: create },
        "Create your first campaign"));
    }
    const rows = dialed.map((c) => {
      const open = () => { location.hash = `#/campaigns/${encodeURIComponent(c.id)}`; };
      return rowActivate(h("tr", { dataset: { campaign: c.id } },
        h("td", {}, h("strong", {}, c.name), h("div", { class: "muted small mono" }, c.id)),
        h("td", {}, names[c.agent_id] || shortId(c.agent_id)),
        h("td", {}, statusBadge(c.status),
          c.status_reason ? h("div", { class: "muted small" }, c.status_reason) : null),
        h("td", { class: "num", "data-testid": "contacts" }, count(contactsOf(c.progress), "contact")),
        h("td", {}, progressBar(c.progress), h("div", { class: "small" }, progressText(c.progress))),
        h("td", { class: "num" }, usdNanos(c.total_cost_nanos))), open);
    });
    const others = campaigns.length - dialed.length;
    return [
      table([{ title: "Campaign" }, { title: "Agent" }, { title: "Status" }, { title: "Contacts", num: true },
        { title: "Progress" }, { title: "Cost", num: true }], rows, { label: "Campaigns" }),
      others ? h("p", { class: "muted small" }, `${count(others, "other campaign name")} in the cost and outreach ` +
        "data (not dialled here): see Costs.") : null,
    ];
  };
  const refresh = quietly(list, load);
  await fill(list, load, "Loading campaigns");

  let soon = null;
  const feed = new LiveFeed({
    onEvent: (ev) => {
      if (!isCampaignEvent(ev)) return;
      clearTimeout(soon);
      soon = setTimeout(refresh, 300); // one refetch per burst of events
    },
    onMode: (mode) => modeText(modeBox, mode),
    poll: () => { if (feed.mode !== "connecting") refresh(); }, // the first load is done already
    pollMs: 10000, // each refresh reads every campaign's record (for its cost)
    safetyPollMs: 30000,
  });
  modeText(modeBox, "connecting");
  feed.start();
  return () => {
    clearTimeout(soon);
    feed.close();
  };
}

// ---- one campaign ----------------------------------------------------------------------------------------------

async function renderCampaign(main, id) {
  const path = `/api/campaigns/${encodeURIComponent(id)}`;
  const st = { campaign: null, agentName: null, page: 1, busy: false };
  const head = h("div", { class: "page-head" }, h("div", {}, h("p", { class: "small" },
    h("a", { href: "#/campaigns" }, "← All campaigns")), h("h1", {}, "Campaign")));
  const modeBox = h("p", { class: "muted small", "aria-live": "polite", "data-testid": "campaign-live" });
  const actionError = h("div", { "aria-live": "assertive" });
  const reasonBox = h("div", {});
  const progressBox = h("div", { "data-testid": "campaign-progress" });
  const costsBox = h("div", { "data-testid": "campaign-costs" });
  const settingsBox = h("div", {});
  const contactsBox = h("div", { "data-testid": "campaign-contacts" });
  const buttons = ACTIONS.map((a) => h("button", { type: "button", class: a.danger ? "danger" : "primary",
    dataset: { action: a.name }, disabled: true, onclick: () => act(a) }, a.label));
  const addContacts = h("button", { type: "button", disabled: true, onclick: () => openContactsForm(st.campaign,
    { onDone: (changed) => { if (changed) refresh(); } }) }, "Add contacts (CSV)");
  const body = h("div", {},
    h("section", { class: "panel", "aria-label": "Controls" }, h("div", { class: "actions" }, buttons, addContacts),
      modeBox, actionError),
    reasonBox,
    h("section", { class: "panel", "aria-labelledby": "pg-h" }, h("h2", { id: "pg-h" }, "Progress"), progressBox),
    h("div", { class: "grid" },
      h("section", { class: "panel", "aria-labelledby": "co-h" }, h("h2", { id: "co-h" }, "Cost"), costsBox),
      h("section", { class: "panel", "aria-labelledby": "se-h" }, h("h2", { id: "se-h" }, "Settings"), settingsBox)),
    h("section", { class: "panel", "aria-labelledby": "ct-h" }, h("h2", { id: "ct-h" }, "Contacts"), contactsBox));
  const shell = h("div", {});
  main.append(head, shell);

  function syncButtons() {
    const status = st.campaign && st.campaign.status;
    for (const [i, a] of ACTIONS.entries()) buttons[i].disabled = st.busy || !a.from.includes(status);
    addContacts.disabled = st.busy || !status || CLOSED.includes(status);
  }

  function draw() {
    const c = st.campaign;
    clear(head, h("div", {},
      h("p", { class: "small" }, h("a", { href: "#/campaigns" }, "← All campaigns")),
      h("h1", {}, c.name),
      h("p", { class: "muted" }, "Calls with ", h("strong", {}, st.agentName || shortId(c.agent_id)), " · ",
        h("span", { "data-testid": "campaign-status" }, statusBadge(c.status)), " · created ", when(c.created_at),
        c.started_at ? ` · started ${when(c.started_at)}` : "", c.ended_at ? ` · ended ${when(c.ended_at)}` : "")));
    clear(reasonBox, c.status_reason ? h("div", { class: `state ${c.status === "paused" ? "error" : ""}`,
      role: "status", "data-testid": "status-reason", style: "margin-bottom:1rem;text-align:left" },
    h("strong", {}, c.status === "paused" ? "Paused: " : `${c.status[0].toUpperCase()}${c.status.slice(1)}: `),
    c.status_reason, c.status === "paused" ? " Resume to call again." : "") : null);
    drawProgress();
    drawCosts();
    drawSettings();
    syncButtons();
  }

  function drawProgress() {
    const p = st.campaign.progress;
    const total = contactsOf(p);
    clear(progressBox,
      h("p", { class: "muted small" }, count(total, "contact")),
      progressBar(p),
      h("div", { class: "cards", style: "margin-top:.8rem" }, STATUSES.map((s) => h("div", { class: "card",
        dataset: { status: s } }, h("div", { class: "label" }, label(s)), h("div", { class: "value" }, p[s] || 0)))));
  }

  function drawCosts() {
    const k = st.campaign.costs;
    const outcomes = Object.entries(k.by_outcome_nanos || {});
    clear(costsBox,
      h("p", { class: "big-number", "data-testid": "campaign-total-cost" }, usdNanos(k.total_cost_nanos)),
      h("p", { class: "muted small" }, `${count(k.successful_calls, "successful call")} · per successful call `,
        usdNanos(k.cost_per_success_nanos)),
      outcomes.length ? table([{ title: "Attempt outcome" }, { title: "Cost", num: true }],
        outcomes.map(([o, v]) => h("tr", { dataset: { outcome: o } }, h("td", {}, label(o)),
          h("td", { class: "num" }, usdNanos(v)))), { label: "Cost per outcome" })
        : empty("No call has cost anything yet."));
  }

  function drawSettings() {
    const c = st.campaign;
    const s = c.schedule;
    const r = c.retry || {};
    const b = c.circuit_breaker;
    const rows = [
      ["Schedule", s ? `${s.days.join(", ")} · ${s.start}–${s.end} · ${s.timezone}` : "any time"],
      ["Calls at once", c.max_concurrent_calls],
      ["Attempts", r.max_attempts > 1 ? `up to ${r.max_attempts}, again after ${(r.on || []).map(label).join(", ")}, ` +
        `${r.backoff_seconds} s apart` : "one per contact"],
      ["Circuit breaker", b ? `pauses when over ${Math.round(b.failure_ratio * 100)} % of the calls in ` +
        `${b.window_seconds} s failed (at least ${b.min_calls})` : "none"],
      ["Status callbacks", c.callback_url || "none"],
    ];
    clear(settingsBox, h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])));
  }

  async function loadContacts() {
    const { contacts, total } = await get(`${path}/contacts`, { page: st.page, limit: CONTACTS_PAGE });
    if (!contacts.length) {
      return empty(total ? "No contacts on this page." : "No contacts yet: add a CSV file.");
    }
    const rows = contacts.map((c) => h("tr", { dataset: { phone: c.phone_number } },
      h("td", { class: "mono nowrap" }, c.phone_number),
      h("td", {}, statusBadge(c.status), c.next_attempt_at
        ? h("div", { class: "muted small" }, `next attempt ${when(c.next_attempt_at)}`) : null),
      h("td", { class: "small" }, c.variables ? Object.entries(c.variables).map(([k, v]) =>
        h("div", {}, h("span", { class: "muted" }, `${k}: `), typeof v === "string" ? v : JSON.stringify(v))) : "—"),
      h("td", { class: "small", "data-testid": "attempts" }, c.attempts.length ? h("ol", { class: "attempts" },
        c.attempts.map((a) => h("li", {}, statusBadge(a.status), ` ${when(a.started_at)}`,
          a.end_reason ? ` · ${a.end_reason}` : "", a.sip_status_code ? ` · SIP ${a.sip_status_code}` : "",
          ` · ${usdNanos(a.cost_nanos)}`,
          a.session_id ? [" · ", h("a", { href: `#/calls/${encodeURIComponent(a.session_id)}` }, "open the call")]
            : null)))
        : h("span", { class: "muted" }, OPEN.includes(c.status) ? "not called yet" : "not called"))));
    const pages = Math.max(1, Math.ceil(total / CONTACTS_PAGE));
    return [
      h("p", { class: "muted small" }, count(total, "contact")),
      table([{ title: "Number" }, { title: "Status" }, { title: "Variables" }, { title: "Attempts" }], rows,
        { label: "Contacts" }),
      pages > 1 ? h("div", { class: "actions", style: "margin-top:.8rem" },
        h("button", { type: "button", disabled: st.page <= 1, onclick: () => { st.page--; showContacts(); } }, "← Previous"),
        h("button", { type: "button", disabled: st.page >= pages, onclick: () => { st.page++; showContacts(); } }, "Next →"),
        h("span", { class: "muted small" }, `page ${st.page} of ${pages}`)) : null,
    ];
  }
  const showContacts = () => fill(contactsBox, loadContacts, "Loading contacts");
  const refreshContacts = quietly(contactsBox, loadContacts);

  async function refresh() {
    try {
      st.campaign = await get(path);
      draw();
    } catch {
      // kept as it was; the next event or poll tries again
    }
    await refreshContacts();
  }

  async function act(action) {
    const c = st.campaign;
    if (action.name === "cancel" && !(await confirmDialog(`Cancel the campaign “${c.name}”? Its contacts not yet ` +
      "called are cancelled; a call in progress goes on to its end.", { confirm: "Cancel campaign",
      dismiss: "Keep it" }))) return;
    clear(actionError);
    st.busy = true;
    syncButtons();
    try {
      const done = await post(`${path}/${action.name}`);
      toast(`${c.name} is ${done.status}`);
      await refresh();
    } catch (err) {
      clear(actionError, h("div", { class: "state error", role: "alert", style: "margin-top:.8rem" },
        h("strong", {}, `Could not ${action.name === "cancel" ? "cancel" : action.name}: `), describe(err)));
    } finally {
      st.busy = false;
      syncButtons();
    }
  }

  await fill(shell, async () => {
    const [campaign, agents] = await Promise.all([get(path), everyAgent().catch(() => [])]);
    st.campaign = campaign;
    st.agentName = (agents.find((a) => a.id === campaign.agent_id) || {}).name;
    draw();
    showContacts();
    return body;
  }, "Loading the campaign");
  if (!st.campaign) return undefined;

  let soon = null;
  const feed = new LiveFeed({
    onEvent: (ev) => {
      if (!isCampaignEvent(ev) || (ev.call_sid !== id && ev.campaign_id !== id)) return;
      // the event's own status and progress at once; the costs and contacts with the refetch
      if (ev.status) st.campaign.status = ev.status;
      if (ev.progress) st.campaign.progress = ev.progress;
      draw();
      clearTimeout(soon);
      soon = setTimeout(refresh, 300);
    },
    onMode: (mode) => modeText(modeBox, mode),
    poll: () => { if (feed.mode !== "connecting") refresh(); },
  });
  modeText(modeBox, "connecting");
  feed.start();
  return () => {
    clearTimeout(soon);
    feed.close();
  };
}
