// The Campaigns page's two forms: a new campaign from a CSV file (the campaign is created, then the file is sent as
// it is, text/csv, to POST /api/campaigns/{id}/contacts) and more contacts for a campaign. The API checks every
// number; a refused file is a 422 naming each refused row by its index (`contacts[3].phone_number ...`), shown here
// row by row beside the API's own message, and nothing of it is written.

import { ApiError, post, postRaw } from "./api.js";
import { count, describe, field, group, h, modal, showFieldErrors, toast } from "./ui.js";

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const WEEKDAYS = DAYS.slice(0, 5);
const RETRY_ON = ["busy", "no_answer", "voicemail", "failed"];
const CSV_HINT = "A phone_number column (E.164, e.g. +14155550100); every other column is a variable of its contact.";

function fileInput(id) {
  return h("input", { type: "file", name: "contacts", id, accept: ".csv,text/csv", required: true });
}

function noFile() {
  return new ApiError(422, { detail: "Choose a CSV file", errors: [{ loc: ["body", "contacts"],
    msg: "choose a CSV file with a phone_number column" }] });
}

/** The rows a refused contact list names: [{index, text}], from the errors' locations and their messages. */
export function refusedRows(err) {
  const rows = new Map();
  const note = (index, text) => {
    const list = rows.get(index) || [];
    if (!list.includes(text)) list.push(text);
    rows.set(index, list);
  };
  for (const e of err.errors || []) {
    const loc = e.loc || [];
    if (loc[1] === "contacts" && Number.isInteger(loc[2])) {
      note(loc[2], `${loc.slice(3).join(".") || "contact"}: ${e.msg}`);
      continue;
    }
    const msg = String(e.msg || "").replace(/^Value error, /, "");
    for (const part of msg.split("; ")) {
      const m = /^contacts\[(\d+)\]\.?(.*)$/.exec(part);
      if (m) note(Number(m[1]), m[2].replace(/contacts\[(\d+)\]/g, (_, i) => `row ${Number(i) + 1}`));
    }
  }
  return [...rows.entries()].sort((a, b) => a[0] - b[0]).map(([index, texts]) => ({ index, text: texts.join("; ") }));
}

/** What a refused upload says: each refused row (row 1 is the line after the header), then the API's message. */
export function refusal(err, lead) {
  const rows = err instanceof ApiError && err.status === 422 ? refusedRows(err) : [];
  return h("div", { class: "state error", role: "alert", "data-testid": "contacts-refused" },
    h("p", {}, h("strong", {}, lead)),
    rows.length ? h("ul", { "aria-label": "Refused rows" }, rows.map((r) =>
      h("li", { dataset: { row: r.index + 1 } }, h("strong", {}, `Row ${r.index + 1}`), ` (line ${r.index + 2}): `, r.text)))
      : null,
    h("p", { class: "small" }, `${err instanceof ApiError && err.status ? `HTTP ${err.status}: ` : ""}${describe(err)}`));
}

function showRefusal(form, err, lead) {
  showFieldErrors(form, null);
  const input = form.querySelector('[name="contacts"]');
  input.setAttribute("aria-invalid", "true");
  form.querySelector(".form-error").append(refusal(err, lead));
  input.focus();
}

function added(result) {
  return `${count(result.added, "contact")} added${result.duplicates ? `, ${result.duplicates} already there` : ""}`;
}

function uploadContacts(campaignId, file) {
  return postRaw(`/api/campaigns/${encodeURIComponent(campaignId)}/contacts`, file, "text/csv");
}

// ---- a new campaign --------------------------------------------------------------------------------------------

export function openCampaignForm(agents, { onDone }) {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const submit = h("button", { type: "submit", class: "primary" }, "Create campaign");
  const settings = h("div", { class: "stack", style: "display:grid;gap:.8rem" },
    h("div", { class: "fields" },
      field("Name", h("input", { name: "name", id: "campaign-name", required: true, maxlength: 200 })),
      field("Agent", h("select", { name: "agent_id", id: "campaign-agent" },
        agents.map((a) => h("option", { value: a.id }, a.name)))),
      field("Max concurrent calls", h("input", { name: "max_concurrent_calls", type: "number", min: 1, max: 100,
        value: 1 }), "Calls at once, 1 to 100.")),
    h("details", {},
      h("summary", {}, "Schedule (optional)"),
      h("div", { class: "stack", style: "display:grid;gap:.8rem;margin-top:.8rem" },
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "use_schedule" }),
          "Call only inside this schedule (otherwise at any time)"),
        h("div", { class: "fields" },
          field("Time zone", h("input", { name: "timezone", value: zone, list: "campaign-zones", autocomplete: "off" }),
            "IANA, e.g. America/New_York"),
          field("From", h("input", { name: "start", value: "09:00", placeholder: "HH:MM", inputmode: "numeric" }),
            "Local time"),
          field("Until", h("input", { name: "end", value: "18:00", placeholder: "HH:MM", inputmode: "numeric" }),
            "Not included; 24:00 for midnight")),
        h("datalist", { id: "campaign-zones" }, zones.map((z) => h("option", { value: z }))),
        group("Days", h("div", { class: "actions" }, DAYS.map((d) => h("label", { class: "check" },
          h("input", { type: "checkbox", name: "days", value: d, checked: WEEKDAYS.includes(d) }), d)))))),
    h("details", {},
      h("summary", {}, "Retries (optional)"),
      h("div", { class: "stack", style: "display:grid;gap:.8rem;margin-top:.8rem" },
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "use_retry" }),
          "Call a contact again after these outcomes (otherwise once)"),
        h("div", { class: "fields" },
          field("Attempts in all", h("input", { name: "max_attempts", type: "number", min: 1, max: 10, value: 3 }),
            "The first call included, up to 10."),
          field("Wait between attempts (s)", h("input", { name: "backoff_seconds", type: "number", min: 30,
            max: 86400, value: 1800 }))),
        group("Retry on", h("div", { class: "actions" }, RETRY_ON.map((o) => h("label", { class: "check" },
          h("input", { type: "checkbox", name: "retry_on", value: o, checked: o === "busy" || o === "no_answer" }),
          o.replace("_", " "))))))));
  const form = h("form", { class: "stack", novalidate: true, "aria-label": "New campaign" },
    settings,
    field("Contacts (CSV)", fileInput("campaign-contacts"), CSV_HINT),
    h("div", { class: "form-error" }),
    h("div", { class: "actions" }, submit, h("button", { type: "button", onclick: () => m.close() }, "Close")));

  let created = null; // made by this dialog, its contacts refused: the next file goes to it, not to a new campaign
  onFileSubmit(form, submit, async (file) => {
    if (!created) {
      try {
        created = await post("/api/campaigns", bodyOf(form));
      } catch (err) {
        showFieldErrors(form, err);
        return;
      }
      // its settings are saved: what is left is a file the API takes
      for (const el of settings.querySelectorAll("input, select")) el.disabled = true;
      submit.textContent = "Upload contacts";
    }
    try {
      const result = await uploadContacts(created.id, file);
      toast(`Created ${created.name}: ${added(result)}`);
      m.close();
    } catch (err) {
      showRefusal(form, err, `The campaign “${created.name}” is saved as a draft, but the file's contacts were ` +
        "refused and none was added. Choose a corrected file and upload it again.");
    }
  });
  const m = modal("New campaign", form, { onClose: () => onDone(created) });
  form.querySelector("#campaign-name").focus();
}

/** The form's submit: its errors cleared, a chosen contacts file required, the button held while `send(file)` runs. */
function onFileSubmit(form, submit, send) {
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    const file = form.elements.contacts.files[0];
    if (!file) {
      showFieldErrors(form, noFile());
      return;
    }
    submit.disabled = true;
    try {
      await send(file);
    } finally {
      submit.disabled = false;
    }
  });
}

function bodyOf(form) {
  const data = new FormData(form);
  const int = (name) => Number.parseInt(String(data.get(name) || ""), 10);
  const body = {
    name: String(data.get("name") || "").trim(),
    agent_id: String(data.get("agent_id") || ""),
    max_concurrent_calls: int("max_concurrent_calls"),
  };
  if (data.get("use_schedule") === "on") {
    body.schedule = { timezone: String(data.get("timezone") || "").trim(), days: data.getAll("days"),
      start: String(data.get("start") || "").trim(), end: String(data.get("end") || "").trim() };
  }
  if (data.get("use_retry") === "on") {
    body.retry = { max_attempts: int("max_attempts"), on: data.getAll("retry_on"),
      backoff_seconds: int("backoff_seconds") };
  }
  return body;
}

// ---- more contacts ---------------------------------------------------------------------------------------------

export function openContactsForm(campaign, { onDone }) {
  const submit = h("button", { type: "submit", class: "primary" }, "Upload contacts");
  const form = h("form", { class: "stack", novalidate: true, "aria-label": "Add contacts" },
    field("Contacts (CSV)", fileInput("campaign-more-contacts"), `${CSV_HINT} A number already in the campaign is ` +
      "not added again."),
    h("div", { class: "form-error" }),
    h("div", { class: "actions" }, submit, h("button", { type: "button", onclick: () => m.close() }, "Close")));
  let changed = false;
  onFileSubmit(form, submit, async (file) => {
    try {
      const result = await uploadContacts(campaign.id, file);
      changed = true;
      toast(`${campaign.name}: ${added(result)}`);
      m.close();
    } catch (err) {
      showRefusal(form, err, "The file's contacts were refused; none was added.");
    }
  });
  const m = modal(`Add contacts to ${campaign.name}`, form, { onClose: () => onDone(changed) });
  form.querySelector("#campaign-more-contacts").focus();
}
