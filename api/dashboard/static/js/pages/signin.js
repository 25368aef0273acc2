// Sign-in: a local account (POST /api/v1/auth/login), a pasted API key, or a Clerk session token when this server
// verifies Clerk tokens. The credential is checked with one API call before the page keeps it.

import { ApiError, get, post, setCredential } from "../api.js";
import { describe, field, h, showFieldErrors } from "../ui.js";

async function check(cred) {
  await get("/api/agents", null, { as: cred });
}

export function renderSignIn(config) {
  const methods = [];
  if (config.localLogin) methods.push({ id: "password", title: "Email and password", form: passwordForm });
  methods.push({ id: "apikey", title: "API key", form: apiKeyForm });
  if (config.clerk) methods.push({ id: "clerk", title: "Clerk token", form: clerkForm });

  const body = h("div", {});
  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Sign-in method" });
  function select(id) {
    for (const b of tabs.children) b.setAttribute("aria-selected", String(b.dataset.id === id));
    body.replaceChildren(methods.find((m) => m.id === id).form());
    body.querySelector("input")?.focus();
  }
  for (const m of methods) {
    tabs.append(h("button", { type: "button", role: "tab", dataset: { id: m.id }, onclick: () => select(m.id),
      onkeydown: (e) => arrowTabs(e, tabs) }, m.title));
  }
  const view = h("div", { class: "signin" },
    h("div", { class: "brand" }, h("img", { src: `${config.assets}/icon.svg`, alt: "", width: 32, height: 32 }), "voxarena"),
    h("main", { class: "panel", id: "main" }, h("h1", {}, "Sign in"), tabs, body),
    h("p", { class: "muted small" }, config.localLogin
      ? ["Local accounts are made with ", h("code", {}, "voxarena user create EMAIL"), "; API keys on the Settings page."]
      : "This server verifies Clerk session tokens; local accounts are off."));
  queueMicrotask(() => select(methods[0].id));
  return view;
}

function arrowTabs(e, tabs) {
  if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
  const list = [...tabs.children];
  const i = list.indexOf(e.target) + (e.key === "ArrowRight" ? 1 : -1);
  const next = list[(i + list.length) % list.length];
  next.focus();
  next.click();
}

function formShell(fields, submitText, onSubmit) {
  const button = h("button", { type: "submit", class: "primary" }, submitText);
  const form = h("form", { class: "stack", novalidate: true }, fields, h("div", { class: "form-error" }), button);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    showFieldErrors(form, null);
    button.disabled = true;
    try {
      await onSubmit(new FormData(form));
    } catch (err) {
      showFieldErrors(form, err);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function passwordForm() {
  return formShell([
    field("Email", h("input", { name: "email", type: "email", autocomplete: "username", required: true })),
    field("Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
  ], "Sign in", async (data) => {
    const email = String(data.get("email") || "").trim();
    const body = await post("/api/v1/auth/login", { email, password: String(data.get("password") || "") }, { auth: false });
    setCredential({ kind: "password", token: body.access_token, label: email,
      expiresAt: Date.now() + body.expires_in * 1000 });
  });
}

function pasted(kind, label, name, hint, validate) {
  return () => formShell([
    field(label, h("input", { name, type: "password", autocomplete: "off", spellcheck: "false", required: true }), hint),
  ], "Sign in", async (data) => {
    const token = String(data.get(name) || "").trim();
    const problem = validate(token);
    if (problem) throw new ApiError(422, { detail: problem, errors: [{ loc: ["body", name], msg: problem }] });
    const cred = { kind, token, label: kind === "apikey" ? `${token.slice(0, 12)}…` : "" };
    try {
      await check(cred);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        throw new ApiError(401, { detail: `The server refused it: ${describe(err)}`,
          errors: [{ loc: ["body", name], msg: "not accepted by this server" }] });
      }
      throw err;
    }
    setCredential(cred);
  });
}

const apiKeyForm = pasted("apikey", "API key", "apikey", "A key made on the Settings page (vxa_…).",
  (t) => (/^vxa_\S+$/.test(t) ? null : "an API key starts with vxa_"));
const clerkForm = pasted("clerk", "Clerk session token", "clerk",
  "A session token from your Clerk front end (the JWT Clerk's getToken() returns).",
  (t) => (t.split(".").length === 3 ? null : "a Clerk session token is a JWT (three dot-separated parts)"));

