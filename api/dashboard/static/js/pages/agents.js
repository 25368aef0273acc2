// Agents: list, create, edit, delete. Provider choices come from the server's OpenAPI document and validation
// messages from the API's own 422 body, shown next to the fields they name.

import { ApiError, del, get, post, put, schemaEnum } from "../api.js";
import {
  confirmDialog, count, duration, empty, field, fill, h, modal, showFieldErrors, statusBadge, table, toast,
  rowActivate,
} from "../ui.js";

const PAGE_SIZE = 100; // the API's default page
const ALL_PAGE = 500; // the API's largest page

// Every agent of the tenant (the list is paged): for pages that name agents or let you pick one.
export async function everyAgent() {
  const all = [];
  for (let page = 1; ; page++) {
    const { agents, total } = await get("/api/agents", { page, limit: ALL_PAGE });
    all.push(...agents);
    if (!agents.length || all.length >= total) return all;
  }
}

export async function render(main) {
  const state = { page: 1 };
  const list = h("div", {});
  const head = h("div", { class: "page-head" },
    h("div", {}, h("h1", {}, "Agents"), h("p", { class: "muted" }, "Each agent is a prompt and its STT → LLM → TTS providers.")),
    h("button", { type: "button", class: "primary", onclick: () => openForm(null, reload) }, "New agent"));
  main.append(head, h("section", { class: "panel", "aria-label": "Agents" }, list));
  const reload = () => fill(list, async () => {
    let { agents, total } = await get("/api/agents", { page: state.page, limit: PAGE_SIZE });
    if (!agents.length && state.page > 1) { // the last agent of the last page was deleted
      state.page = Math.max(1, Math.ceil(total / PAGE_SIZE));
      ({ agents, total } = await get("/api/agents", { page: state.page, limit: PAGE_SIZE }));
    }
    if (!agents.length) {
      return empty("No agents yet.", h("button", { type: "button", class: "primary", onclick: () => openForm(null, reload) },
        "Create your first agent"));
    }
    const rows = agents.map((a) => rowActivate(h("tr", { "data-agent": a.id },
      h("td", {}, h("strong", {}, a.name), h("div", { class: "muted small mono" }, a.slug || a.id)),
      h("td", {}, `${a.sttProvider} → ${a.llmProvider} → ${a.ttsProvider}`),
      h("td", {}, statusBadge(a.enabled === false ? "disabled" : a.status || "active"),
        a.webhookStatus === "failing"
          ? h("div", { class: "small field-error", "data-webhook": "failing" },
            `webhook failing (${a.webhookFailures} in a row)`) : null,
        (a.tools || []).length ? h("div", { class: "muted small" }, count(a.tools.length, "tool")) : null),
      h("td", { class: "num" }, count(a.totalCalls, "call")),
      h("td", { class: "num" }, duration(Math.round((a.totalMinutes || 0) * 60))),
      h("td", {}, h("div", { class: "actions" },
        h("a", { class: "button", href: `#/talk/${encodeURIComponent(a.id)}`, onclick: (e) => e.stopPropagation() }, "Talk"),
        h("button", { type: "button", onclick: (e) => { e.stopPropagation(); openForm(a, reload); } }, "Edit"),
        h("button", { type: "button", class: "danger", onclick: (e) => { e.stopPropagation(); remove(a, reload); } }, "Delete")))),
    () => openForm(a, reload)));
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const pager = pages > 1 ? h("div", { class: "actions", style: "margin-top:.8rem" },
      h("button", { type: "button", disabled: state.page <= 1, onclick: () => { state.page--; reload(); } }, "← Newer"),
      h("button", { type: "button", disabled: state.page >= pages, onclick: () => { state.page++; reload(); } }, "Older →"),
      h("span", { class: "muted small" }, `page ${state.page} of ${pages}`)) : null;
    return [h("p", { class: "muted small" }, count(total, "agent")),
      table([{ title: "Name" }, { title: "Pipeline" }, { title: "Status" }, { title: "Calls", num: true },
        { title: "Talk time", num: true }, { title: "" }], rows, { label: "Agents" }), pager];
  }, "Loading agents");
  await reload();
}

async function remove(agent, reload) {
  if (!(await confirmDialog(`Delete the agent “${agent.name}”? Its past calls stay in the history.`))) return;
  try {
    await del(`/api/agents/${encodeURIComponent(agent.id)}`);
    toast(`Deleted ${agent.name}`);
    reload();
  } catch (err) {
    toast(`Could not delete: ${err.message}`, "error");
  }
}

function select(name, options, value, { blank } = {}) {
  return h("select", { name, id: `agent-${name}` },
    blank !== undefined ? h("option", { value: "" }, blank) : null,
    options.map((o) => h("option", { value: o, selected: o === value }, o)));
}

function checks(name, options, chosen) {
  return h("fieldset", { class: "fields", style: "border:0;padding:0;margin:0" },
    h("legend", { class: "small" }, name.replace("fallback", "Fallback ").replace("Providers", " providers")),
    options.map((o) => h("label", { class: "check" },
      h("input", { type: "checkbox", name, value: o, checked: (chosen || []).includes(o) }), o)));
}

async function openForm(agent, reload) {
  const [stt, llm, tts, modes, statuses, types] = await Promise.all([
    schemaEnum("AgentCreate", "sttProvider", ["deepgram", "assemblyai", "elevenlabs"]),
    schemaEnum("AgentCreate", "llmProvider", ["gemini", "openai"]),
    schemaEnum("AgentCreate", "ttsProvider", ["elevenlabs", "resemble", "google"]),
    schemaEnum("AgentCreate", "firstMessageMode", ["assistant_waits", "assistant_speaks_first"]),
    schemaEnum("AgentCreate", "status", ["active", "inactive"]),
    schemaEnum("AgentCreate", "type", ["inbound", "outbound"]),
  ]);
  const a = agent || {};
  const submit = h("button", { type: "submit", class: "primary" }, agent ? "Save changes" : "Create agent");
  const form = h("form", { class: "stack", novalidate: true, "aria-label": agent ? "Edit agent" : "New agent" },
    h("div", { class: "fields" },
      field("Name", h("input", { name: "name", id: "agent-name", value: a.name || "", required: true, maxlength: 200 })),
      field("Language", h("input", { name: "language", value: a.language || "", placeholder: "en" }), "BCP 47, e.g. en or en-US"),
      field("Status", select("status", statuses, a.status || "active")),
      field("Type", select("type", types, a.type || "inbound"))),
    field("System prompt", h("textarea", { name: "systemPrompt", id: "agent-systemPrompt", rows: 6, required: true },
      a.systemPrompt || "")),
    h("div", { class: "fields" },
      field("Speech to text", select("sttProvider", stt, a.sttProvider || stt[0])),
      field("Language model", select("llmProvider", llm, a.llmProvider || llm[0])),
      field("Text to speech", select("ttsProvider", tts, a.ttsProvider || tts[0])),
      field("Voice", h("input", { name: "voiceId", value: a.voiceId || "", placeholder: "provider default" }))),
    h("div", { class: "fields" },
      field("First message", h("input", { name: "firstMessage", value: a.firstMessage || "",
        placeholder: "Hello! How can I help?" })),
      field("Who speaks first", select("firstMessageMode", modes, a.firstMessageMode || "assistant_waits"))),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "enabled", checked: a.enabled !== false }),
      "Enabled (takes calls)"),
    h("details", {},
      h("summary", {}, "Models, fallbacks and error message"),
      h("div", { class: "stack", style: "display:grid;gap:.8rem;margin-top:.8rem" },
        h("div", { class: "fields" },
          field("STT model", h("input", { name: "sttModel", value: a.sttModel || "", placeholder: "default" })),
          field("LLM model", h("input", { name: "llmModel", value: a.llmModel || "", placeholder: "default" })),
          field("TTS model", h("input", { name: "ttsModel", value: a.ttsModel || "", placeholder: "default" }))),
        checks("fallbackSttProviders", stt, a.fallbackSttProviders),
        checks("fallbackLlmProviders", llm, a.fallbackLlmProviders),
        checks("fallbackTtsProviders", tts, a.fallbackTtsProviders),
        field("Error message", h("input", { name: "errorMessage", value: a.errorMessage || "" }),
          "What the agent says before hanging up when a provider fails for good."))),
    h("details", { open: Boolean((a.tools || []).length || a.webhookUrl || a.contextWebhookUrl) },
      h("summary", {}, "Tools and webhooks"),
      h("div", { class: "stack", style: "display:grid;gap:.8rem;margin-top:.8rem" },
        field("Tools (JSON)", h("textarea", { name: "tools", id: "agent-tools", rows: 8, class: "mono",
          placeholder: TOOLS_EXAMPLE }, (a.tools || []).length ? JSON.stringify(a.tools, null, 2) : ""),
        "HTTP tools and call tools (end_call, transfer_call, send_dtmf); header values show masked and are kept."),
        h("div", { class: "fields" },
          field("Pre-call webhook", h("input", { name: "contextWebhookUrl", type: "url", value: a.contextWebhookUrl || "",
            placeholder: "https://…" }), "Its JSON answer joins the call's context before the call starts."),
          field("Post-call webhook", h("input", { name: "webhookUrl", type: "url", value: a.webhookUrl || "",
            placeholder: "https://…" }), a.webhookStatus === "failing"
            ? `Failing: the last ${a.webhookFailures} deliveries failed.` : "Session, transcript, tool calls, analysis, cost.")),
        (a.warnings || []).length ? h("ul", { class: "muted small", "aria-label": "Warnings" },
          a.warnings.map((w) => h("li", {}, w))) : null)),
    h("div", { class: "form-error" }),
    h("div", { class: "actions" }, submit, h("button", { type: "button", onclick: () => m.close() }, "Cancel")));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    let body;
    try {
      body = bodyOf(form, agent);
    } catch (err) {
      showFieldErrors(form, err);
      return;
    }
    submit.disabled = true;
    try {
      const saved = agent ? await put(`/api/agents/${encodeURIComponent(agent.id)}`, body) : await post("/api/agents", body);
      toast(agent ? `Saved ${saved.name}` : `Created ${saved.name}`);
      m.close();
      reload();
    } catch (err) {
      showFieldErrors(form, err);
    } finally {
      submit.disabled = false;
    }
  });
  const m = modal(agent ? `Edit ${agent.name}` : "New agent", form);
  form.querySelector("#agent-name").focus();
}

const OPTIONAL_TEXT = ["language", "voiceId", "firstMessage", "sttModel", "llmModel", "ttsModel", "errorMessage",
  "webhookUrl", "contextWebhookUrl"];
const TOOLS_EXAMPLE = `[{"type": "http", "name": "book_slot", "description": "Book an appointment",
  "parameters": {"type": "object", "properties": {"time": {"type": "string"}}, "required": ["time"]},
  "url": "https://api.example.com/book", "method": "POST"},
 {"type": "end_call"}]`;

// The tools textarea: a JSON array, checked here before the API checks each tool (a 422 names the one it refuses).
function toolsOf(text) {
  if (!text.trim()) return [];
  let tools;
  try {
    tools = JSON.parse(text);
  } catch (e) {
    throw new ApiError(422, { detail: "Tools are not valid JSON", errors: [{ loc: ["body", "tools"], msg: `not valid JSON: ${e.message}` }] });
  }
  if (!Array.isArray(tools)) {
    throw new ApiError(422, { detail: "Tools must be a JSON array", errors: [{ loc: ["body", "tools"], msg: "must be a JSON array of tools" }] });
  }
  return tools;
}

function bodyOf(form, agent) {
  const data = new FormData(form);
  const body = {
    name: String(data.get("name") || "").trim(),
    systemPrompt: String(data.get("systemPrompt") || ""),
    sttProvider: data.get("sttProvider"), llmProvider: data.get("llmProvider"), ttsProvider: data.get("ttsProvider"),
    firstMessageMode: data.get("firstMessageMode"), status: data.get("status"), type: data.get("type"),
    enabled: data.get("enabled") === "on",
  };
  for (const k of OPTIONAL_TEXT) {
    const v = String(data.get(k) || "").trim();
    // On create an empty field is left out; on edit it clears what was stored.
    if (v) body[k] = v;
    else if (agent && agent[k]) body[k] = null;
  }
  for (const k of ["fallbackSttProviders", "fallbackLlmProviders", "fallbackTtsProviders"]) body[k] = data.getAll(k);
  body.tools = toolsOf(String(data.get("tools") || ""));
  return body;
}


