// Settings: API keys (the key is shown once), the callback signing secret, and tenant limits for platform admins.

import { ApiError, del, get, getCredential, getTenant, patch, post, setTenant } from "../api.js";
import {
  add, clear, confirmDialog, describe, empty, field, fill, h, showFieldErrors, statusBadge, table, toast, when,
} from "../ui.js";

export async function render(main) {
  const keys = h("div", {});
  const secret = h("div", {});
  const tenants = h("div", {});
  main.append(
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Settings"),
      h("p", { class: "muted" }, "Credentials for your backends, callback signing, and tenants."))),
    h("section", { class: "panel", "aria-labelledby": "keys-h" }, h("h2", { id: "keys-h" }, "API keys"), keys),
    h("section", { class: "panel", "aria-labelledby": "secret-h" }, h("h2", { id: "secret-h" }, "Callback signing secret"), secret),
    h("section", { class: "panel", "aria-labelledby": "ten-h" }, h("h2", { id: "ten-h" }, "Tenants"), tenants));
  await Promise.all([keysView(keys), secretView(secret), tenantsView(tenants)]);
}

// ---- API keys --------------------------------------------------------------------------------------------------

async function keysView(box) {
  const created = h("div", { "aria-live": "polite" });
  const list = h("div", {});
  const submit = h("button", { type: "submit", class: "primary" }, "Create key");
  const form = h("form", { class: "filters", novalidate: true, "aria-label": "New API key" },
    field("Name", h("input", { name: "name", placeholder: "e.g. CRM backend", maxlength: 200 })), submit,
    h("div", { class: "form-error", style: "flex-basis:100%" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    submit.disabled = true;
    try {
      const k = await post("/api/keys", { name: form.elements.name.value.trim() });
      form.reset();
      created.replaceChildren(h("div", { class: "panel", style: "border-color:var(--ok)" },
        h("p", {}, h("strong", {}, `New key “${k.name}”. `), "Copy it now: it is not shown again."),
        secretLine(k.key, "api-key-value")));
      reload();
    } catch (err) {
      showFieldErrors(form, err);
    } finally {
      submit.disabled = false;
    }
  });
  const reload = () => fill(list, async () => {
    const { keys } = await get("/api/keys");
    if (!keys.length) return empty("No API keys yet.");
    return table([{ title: "Name" }, { title: "Key" }, { title: "Created" }, { title: "Last used" }, { title: "" }],
      keys.map((k) => h("tr", {}, h("td", {}, k.name), h("td", { class: "mono" }, `${k.prefix}…`),
        h("td", { class: "nowrap" }, when(k.created_at)), h("td", { class: "nowrap" }, k.last_used_at ? when(k.last_used_at) : "never"),
        h("td", {}, h("button", { type: "button", class: "danger", onclick: () => revoke(k, reload) }, "Revoke")))),
      { label: "API keys" });
  }, "Loading keys");
  const note = getCredential()?.kind === "apikey"
    ? h("p", { class: "muted small" }, "You signed in with an API key: keys are made and revoked by signed-in users.") : null;
  add(box, h("p", { class: "muted small" }, "Send a key as ", h("code", {}, "Authorization: Bearer vxa_…"), " or ",
    h("code", {}, "X-API-Key"), "; it acts for this tenant."), note, form, created, list);
  await reload();
}

async function revoke(key, reload) {
  if (!(await confirmDialog(`Revoke the key “${key.name}”? It stops working at once.`, { confirm: "Revoke" }))) return;
  try {
    await del(`/api/keys/${encodeURIComponent(key.id)}`);
    toast(`Revoked ${key.name}`);
    reload();
  } catch (err) {
    toast(`Could not revoke: ${describe(err)}`, "error");
  }
}

function secretLine(value, testid) {
  const code = h("code", { "data-testid": testid }, value);
  return h("div", { class: "secret" }, code, h("button", { type: "button", onclick: async () => {
    try {
      await navigator.clipboard.writeText(value);
      toast("Copied");
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      toast("Selected: press Ctrl+C to copy");
    }
  } }, "Copy"));
}

// ---- callback secret -------------------------------------------------------------------------------------------

async function secretView(box) {
  const body = h("div", {});
  let shown = false;
  const draw = () => fill(body, async () => {
    const { secret } = await get("/api/calls/callback-secret");
    const masked = `${secret.slice(0, 6)}${"•".repeat(18)}`;
    const toggle = h("button", { type: "button", "aria-pressed": String(shown), onclick: () => { shown = !shown; draw(); } },
      shown ? "Hide" : "Reveal");
    const rotate = h("button", { type: "button", class: "danger", onclick: async () => {
      if (!(await confirmDialog("Rotate the secret? Callbacks are signed with the new one at once; update your receiver.",
        { confirm: "Rotate" }))) return;
      try {
        await post("/api/calls/callback-secret", {});
        shown = true;
        toast("Secret rotated");
        draw();
      } catch (err) {
        toast(`Could not rotate: ${describe(err)}`, "error");
      }
    } }, "Rotate");
    return [shown ? secretLine(secret, "callback-secret") : h("div", { class: "secret" }, h("code", {}, masked)),
      h("div", { class: "actions", style: "margin-top:.6rem" }, toggle, rotate)];
  }, "Loading the secret");
  box.append(h("p", { class: "muted small" }, "Outbound call callbacks carry ",
    h("code", {}, "X-Voxarena-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, \"t.body\")>"), "."), body);
  await draw();
}

// ---- tenants ---------------------------------------------------------------------------------------------------

async function tenantsView(box) {
  const acting = getTenant();
  const head = h("p", { class: "small" }, acting
    ? ["Acting in tenant ", h("code", {}, acting), " ", h("button", { type: "button", onclick: () => { setTenant(""); location.reload(); } },
      "Back to my own")]
    : "Acting in your own tenant.");
  const body = h("div", {});
  box.append(head, body);
  await fill(body, async () => {
    let list;
    try {
      list = await get("/tenants");
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) {
        return h("p", { class: "muted" }, "Tenant limits are set by platform admins (", h("code", {}, "VOXARENA_ADMIN_USERS"),
          " or a local ", h("code", {}, "--admin"), " account).");
      }
      throw err;
    }
    const create = createTenantForm(() => tenantsView(clear(box)));
    if (!list.length) return [create, empty("No tenants yet (every user also has a personal tenant of their own).")];
    return [create, table([{ title: "Tenant" }, { title: "Status" }, { title: "Limits" }, { title: "" }],
      list.map((t) => tenantRow(t)), { label: "Tenants" })];
  }, "Loading tenants");
}

function createTenantForm(reload) {
  const submit = h("button", { type: "submit" }, "Create tenant");
  const form = h("form", { class: "filters", novalidate: true, "aria-label": "New tenant" },
    field("Tenant name", h("input", { name: "name", placeholder: "Acme Inc.", maxlength: 200 })),
    field("Subdomain (optional)", h("input", { name: "subdomain", placeholder: "acme" })),
    submit, h("div", { class: "form-error", style: "flex-basis:100%" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    const body = { name: form.elements.name.value.trim() };
    if (form.elements.subdomain.value.trim()) body.subdomain = form.elements.subdomain.value.trim();
    submit.disabled = true;
    try {
      const t = await post("/tenants", body);
      toast(`Created ${t.name}`);
      reload();
    } catch (err) {
      showFieldErrors(form, err);
      submit.disabled = false;
    }
  });
  return form;
}

function tenantRow(t) {
  const num = (name, value, label) => field(label, h("input", { name, type: "number", min: 0, step: name === "rate_limit_rps" ? "any" : 1,
    value: value ?? "", placeholder: "no limit", style: "width:8rem" }));
  const submit = h("button", { type: "submit" }, "Save");
  const form = h("form", { class: "filters", novalidate: true, style: "margin:0" },
    num("max_agents", t.limits.max_agents, "Max agents"),
    num("max_concurrent_calls", t.limits.max_concurrent_calls, "Max concurrent calls"),
    num("rate_limit_rps", t.rate_limit_rps, "Requests/s"),
    field("Status", h("select", { name: "status" }, ["active", "trial", "suspended"].map((s) =>
      h("option", { value: s, selected: s === t.status }, s)))),
    submit, h("div", { class: "form-error", style: "flex-basis:100%" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    const d = new FormData(form);
    const body = { status: d.get("status") };
    for (const k of ["max_agents", "max_concurrent_calls", "rate_limit_rps"]) {
      const v = String(d.get(k) || "").trim();
      body[k] = v === "" ? null : Number(v);
    }
    submit.disabled = true;
    try {
      await patch(`/tenants/${encodeURIComponent(t.id)}`, body);
      toast(`Saved ${t.name}`);
    } catch (err) {
      showFieldErrors(form, err);
    } finally {
      submit.disabled = false;
    }
  });
  return h("tr", {},
    h("td", {}, h("strong", {}, t.name), h("div", { class: "muted small mono" }, t.id), t.personal ? h("span", { class: "badge" }, "personal") : null),
    h("td", {}, statusBadge(t.status)),
    h("td", {}, form),
    h("td", {}, h("button", { type: "button", onclick: () => { setTenant(t.id); toast(`Acting in ${t.name}`); location.hash = "#/agents"; } },
      "Act in it")));
}
