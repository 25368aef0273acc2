// The dashboard's shell: sign-in, navigation and a hash router (#/agents, #/calls/<id>, ...). Pages are modules
// exporting render(main, params) that may return a cleanup function (the Live page closes its stream with it).

import { claimsOf, getCredential, onCredentialChange, setCredential, setTenant } from "./api.js";
import { clear, h } from "./ui.js";
import { renderSignIn } from "./pages/signin.js";

export const config = JSON.parse(document.getElementById("voxarena-config").textContent);

const PAGES = [
  { path: "agents", title: "Agents", load: () => import("./pages/agents.js") },
  { path: "calls", title: "Calls", load: () => import("./pages/calls.js") },
  { path: "campaigns", title: "Campaigns", load: () => import("./pages/campaigns.js") },
  { path: "live", title: "Live", load: () => import("./pages/live.js") },
  { path: "costs", title: "Costs", load: () => import("./pages/costs.js") },
  { path: "talk", title: "Talk", load: () => import("./pages/talk.js") },
  { path: "settings", title: "Settings", load: () => import("./pages/settings.js") },
];

const root = document.getElementById("app");
let cleanup = null;
let renderSeq = 0;

function who(cred) {
  if (!cred) return "";
  if (cred.kind === "apikey") return `API key ${cred.label || ""}`.trim();
  const claims = claimsOf(cred.token) || {};
  return cred.label || claims.email || claims.sub || "signed in";
}

function shell() {
  const cred = getCredential();
  const nav = h("nav", { class: "nav", "aria-label": "Main" },
    PAGES.map((p) => h("a", { href: `#/${p.path}`, dataset: { page: p.path } }, p.title)));
  const main = h("main", { id: "main", tabindex: "-1" });
  const side = h("header", { class: "side" }, h("div", { class: "side-top" },
    h("div", { class: "brand" }, h("img", { src: `${config.assets}/icon.svg`, alt: "" }), "voxarena"),
    nav,
    h("div", { class: "who" }, h("span", {}, "Signed in as ", h("strong", { "data-testid": "who" }, who(cred))),
      h("button", { type: "button", onclick: signOut }, "Sign out"))));
  clear(root, h("div", { class: "shell" }, side, main));
  return main;
}

function signOut() {
  setTenant("");
  setCredential(null);
}

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const page = PAGES.find((p) => p.path === parts[0]) || PAGES[0];
  return { page, params: parts.slice(1) };
}

async function route() {
  const seq = ++renderSeq;
  if (cleanup) {
    try { cleanup(); } catch (e) { console.error(e); }
    cleanup = null;
  }
  if (!getCredential()) {
    clear(root, renderSignIn(config));
    document.title = "Sign in · voxarena";
    return;
  }
  let main = root.querySelector(".shell main");
  if (!main) main = shell();
  const { page, params } = parseHash();
  for (const a of document.querySelectorAll(".nav a")) {
    if (a.dataset.page === page.path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${page.title} · voxarena`;
  clear(main);
  try {
    const mod = await page.load();
    if (seq !== renderSeq) return;
    const done = await mod.render(main, params);
    if (seq !== renderSeq) {
      if (typeof done === "function") done();
      return;
    }
    cleanup = typeof done === "function" ? done : null;
  } catch (e) {
    console.error(e);
    clear(main, h("div", { class: "state error", role: "alert" }, `This page failed to load: ${e.message}`));
  }
}

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

onCredentialChange(() => {
  clear(root); // a new shell for the new credential (or the sign-in page)
  route();
});
window.addEventListener("hashchange", route);
route();
