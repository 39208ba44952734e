// The console's shell: sign-in, navigation, settings (language, time zone, namespace) and the
// hash router. Pages live in views.js; every text comes from i18n.js.

import * as api from "./api.js";
import { t, lang, setLang, LANGS } from "./i18n.js";
import { renderPage, stopPolling } from "./views.js";

export const S = {
  ns: localStorage.getItem("jm.ns") || "default",
  tz: localStorage.getItem("jm.tz") || "UTC",
  me: null,
  namespaces: [],
  viaProxyHeader: false,
};

export const $ = (sel, root) => (root || document).querySelector(sel);

// Element builder: h("button", {class: "x", onclick: f}, "text", child…)
export function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (v === true) e.setAttribute(k, "");
    else e.setAttribute(k, v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

export const ZONES = ["UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo"];

// A time in the chosen zone: "2026-11-29 10:04:05 UTC+8".
export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone: S.tz, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short",
  }).formatToParts(d);
  const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// A confirmation in the page's own dialog (keyboard: Enter confirms, Escape cancels).
export function confirmDialog(message, yesLabel) {
  const d = $("#confirm");
  $("#confirm-text").textContent = message;
  $("#confirm-yes").textContent = yesLabel || t("confirm.yes");
  $("#confirm-no").textContent = t("confirm.no");
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.returnValue = "";
    d.showModal();
    $("#confirm-no").focus();
  });
}

function header() {
  const top = $("#top");
  top.replaceChildren();
  const signedIn = api.token() || S.viaProxyHeader;
  const nav = h("nav", { "aria-label": t("nav.label") });
  if (signedIn) {
    for (const [hash, key] of [["#/deployments", "nav.deployments"], ["#/create", "nav.create"], ["#/artifacts", "nav.artifacts"], ["#/templates", "nav.templates"], ["#/targets", "nav.targets"], ["#/members", "nav.members"], ["#/tokens", "nav.tokens"], ["#/system", "nav.system"]]) {
      const cur = location.hash.startsWith(hash) || (hash === "#/deployments" && (location.hash === "" || location.hash === "#/" || location.hash.startsWith("#/d/")));
      nav.append(h("a", { href: hash, "aria-current": cur ? "page" : null }, t(key)));
    }
  }
  const tools = h("div", { class: "tools" });
  const langSel = h("select", { id: "lang", "aria-label": t("settings.language"), onchange: (e) => { setLang(e.target.value); document.documentElement.lang = lang(); route(); } },
    ...LANGS.map(([code, name]) => h("option", { value: code, selected: code === lang() }, name)));
  tools.append(langSel);
  if (signedIn) {
    if (S.namespaces.length > 1) {
      tools.append(h("select", { id: "namespace", "aria-label": t("settings.namespace"), onchange: (e) => { S.ns = e.target.value; localStorage.setItem("jm.ns", S.ns); loadMe().then(() => go("#/deployments")); } },
        ...S.namespaces.map((n) => h("option", { value: n, selected: n === S.ns }, n))));
    } else {
      tools.append(h("span", { class: "ns", title: t("settings.namespace") }, S.ns));
    }
    if (S.me) tools.append(h("span", { class: "who", id: "who" }, `${S.me.principal.name} · ${t("role." + (S.me.role || "none"))}`));
    if (api.token()) tools.append(h("button", { class: "link", id: "signout", onclick: signOut }, t("nav.signout")));
  }
  top.append(h("a", { class: "brand", href: "#/deployments" }, "job-manager"), nav, tools);
}

async function signOut() {
  await api.closeFlinkSession();
  api.setToken(null);
  S.me = null;
  go("#/login");
}

async function loadNamespaces() {
  const list = await api.get("/namespaces/v1/namespaces");
  S.namespaces = list.items.map((n) => n.metadata.name);
  if (!S.namespaces.includes(S.ns)) S.ns = S.namespaces[0] || "default";
}

export async function loadMe() {
  S.me = await api.get(`/console/v1/namespaces/${api.enc(S.ns)}/me`);
}

function loginPage(main, error) {
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "current-password", required: true, "aria-describedby": "token-help" });
  const err = h("p", { class: "error", id: "login-error", role: "alert" }, error || "");
  const form = h("form", { class: "card login", onsubmit: async (e) => {
    e.preventDefault();
    api.setToken(input.value.trim());
    try {
      await loadNamespaces();
      await loadMe();
      await api.openFlinkSession();
      go("#/deployments");
    } catch (x) {
      api.setToken(null);
      err.textContent = x.status === 401 ? t("login.invalid") : x.message;
      input.focus();
    }
  } },
  h("h1", {}, t("login.title")),
  h("label", { for: "token" }, t("login.token")),
  input,
  h("p", { class: "muted", id: "token-help" }, t("login.help")),
  err,
  h("button", { type: "submit", class: "primary" }, t("login.submit")));
  main.append(form);
  input.focus();
}

export async function route() {
  stopPolling();
  document.documentElement.lang = lang();
  document.title = t("app.title");
  const main = $("#main");
  main.replaceChildren();
  const hash = location.hash || "#/deployments";
  if (!api.token() && !S.viaProxyHeader) {
    header();
    loginPage(main, hash === "#/expired" ? t("login.expired") : "");
    return;
  }
  if (!S.me) {
    try {
      await loadNamespaces();
      await loadMe();
      // A reloaded page renews the Flink UI proxy's cookie (it lasts an hour).
      if (api.token()) await api.openFlinkSession();
    } catch (x) {
      if (x.status === 401) {
        api.setToken(null);
        header();
        loginPage(main, t("login.expired"));
        return;
      }
    }
  }
  header();
  try {
    await renderPage(hash, main);
  } catch (x) {
    if (x.status === 401) {
      api.setToken(null);
      S.me = null;
      return go("#/expired");
    }
    main.append(h("p", { class: "error", role: "alert" }, x.message));
  }
}

export function setTz(z) {
  S.tz = z;
  localStorage.setItem("jm.tz", z);
}

async function boot() {
  // Behind the trusted auth proxy the user header authenticates without a token.
  if (!api.token()) {
    try {
      await loadNamespaces();
      S.viaProxyHeader = true;
      await loadMe();
    } catch (_) {
      S.viaProxyHeader = false;
    }
  }
  window.addEventListener("hashchange", route);
  route();
}

boot();
