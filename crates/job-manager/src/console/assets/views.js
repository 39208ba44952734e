// The console's pages: deployments list, create, deployment (overview, configure, events,
// jobs, savepoints, actions), artifacts, API tokens and system settings.

import * as api from "./api.js";
import { S, h, go, fmtTime, confirmDialog, route, setTz, ZONES } from "./app.js";
import { t, lang } from "./i18n.js";
import { dump, parse } from "./yaml.js";
import { templatesPage, targetsPage, membersPage } from "./admin.js";

const POLL_MS = 2000;
const MAX_UPLOAD = 50 * 1024 * 1024;
let timer = null;

export function stopPolling() {
  if (timer) clearInterval(timer);
  timer = null;
}

function poll(fn) {
  stopPolling();
  timer = setInterval(() => {
    if (document.hidden) return;
    fn().catch((x) => {
      // A token revoked meanwhile ends the session; other failures retry at the next tick.
      if (x && x.status === 401) {
        stopPolling();
        api.setToken(null);
        location.hash = "#/expired";
      }
    });
  }, POLL_MS);
}

const nsPath = (rest) => `/api/v1/namespaces/${api.enc(S.ns)}/${rest}`;
const RANK = { viewer: 1, editor: 2, owner: 3 };
const rank = () => RANK[S.me && S.me.role] || 0;
export const canEdit = () => rank() >= 2;
export const isOwner = () => rank() >= 3;
export const roleReason = (need) => t("role.needs", { role: t("role." + ((S.me && S.me.role) || "none")), need: t("role." + need) });

function stateBadge(state, id) {
  return h("span", { class: "badge st-" + (state || "UNKNOWN"), id }, t("state." + (state || "UNKNOWN")));
}

function get(o, path) {
  return path.split(".").reduce((x, k) => (x == null ? undefined : x[k]), o);
}

function set(o, path, v) {
  const ks = path.split(".");
  let x = o;
  for (const k of ks.slice(0, -1)) {
    if (x[k] == null || typeof x[k] !== "object") x[k] = {};
    x = x[k];
  }
  if (v === undefined || v === "") delete x[ks[ks.length - 1]];
  else x[ks[ks.length - 1]] = v;
}

const labelsText = (l) => Object.entries(l || {}).map(([k, v]) => `${k}=${v}`).join(", ");
function parseLabels(s) {
  const o = {};
  for (const part of s.split(",").map((x) => x.trim()).filter(Boolean)) {
    const i = part.indexOf("=");
    if (i <= 0) throw new Error(t("create.labelsInvalid", { part }));
    o[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return o;
}

// The API's warnings (settings with no effect on the target), the setting named in code.
let flash = null;
function warnBox(ws, id = "warnings") {
  return h("div", { class: "note", id, role: "status", hidden: !(ws && ws.length) },
    h("strong", {}, t("warn.title")),
    h("ul", {}, ...(ws || []).map((w) => {
      const i = w.indexOf(" has no effect");
      return h("li", {}, i > 0 ? [h("code", {}, w.slice(0, i)), w.slice(i)] : w);
    })));
}

export function errorBox(id) {
  return h("p", { class: "error", id, role: "alert" });
}

export async function renderPage(hash, main) {
  const [, page, a, b] = hash.split("/");
  if (page === "create") return createPage(main);
  if (page === "d" && a) return deploymentPage(main, decodeURIComponent(a), b || "overview");
  if (page === "artifacts") return artifactsPage(main);
  if (page === "tokens") return tokensPage(main);
  if (page === "templates") return templatesPage(main);
  if (page === "targets") return targetsPage(main);
  if (page === "members") return membersPage(main);
  if (page === "system") return systemPage(main);
  return listPage(main);
}

// ---- Deployments list ---------------------------------------------------------------

async function listPage(main) {
  const f = { name: sessionStorage.getItem("jm.f.name") || "", label: sessionStorage.getItem("jm.f.label") || "", state: sessionStorage.getItem("jm.f.state") || "" };
  const err = errorBox("list-error");
  const tbody = h("tbody");
  const count = h("p", { class: "muted", id: "count", "aria-live": "polite" });
  let items = [];
  let drawn = "";
  const draw = (force = true) => {
    const shown = items.filter((d) => d.metadata.name.toLowerCase().includes(f.name.toLowerCase()) && (!f.state || d.status.state === f.state)).map((d) => {
      const st = d.status || {};
      return [d.metadata.id, d.metadata.name, d.spec.state, st.state, d.spec.deploymentTargetName || "—", String(get(d, "spec.template.spec.parallelism") ?? "—"),
        Object.entries(d.metadata.labels || {}), st.state === "RUNNING" && st.running ? fmtTime(st.running.transitionTime) : "—"];
    });
    // Polling redraws only when what is shown changed (not, e.g., a condition's time), so
    // focus, selection and a click in progress stay put.
    const sig = JSON.stringify([shown, items.length]);
    if (!force && sig === drawn) return;
    drawn = sig;
    tbody.replaceChildren(...shown.map(([id, name, desired, current, target, par, labels, since]) => h("tr", { "data-name": name },
      h("td", { "data-label": t("col.name") }, h("a", { href: "#/d/" + id }, name)),
      h("td", { "data-label": t("col.desired") }, stateBadge(desired)),
      h("td", { "data-label": t("col.current") }, stateBadge(current)),
      h("td", { "data-label": t("col.target") }, target),
      h("td", { "data-label": t("col.parallelism") }, par),
      h("td", { "data-label": t("col.labels") }, ...labels.map(([k, v]) => h("span", { class: "label" }, `${k}=${v}`))),
      h("td", { "data-label": t("col.since"), class: "time" }, since))));
    count.textContent = t("list.count", { n: shown.length, total: items.length });
  };
  const load = async () => {
    const q = f.label ? "?labelSelector=" + api.enc(f.label) : "";
    try {
      items = (await api.get(nsPath("deployments" + q))).items;
      err.textContent = "";
    } catch (x) {
      if (x.status === 401) throw x;
      err.textContent = x.message;
    }
    draw(false);
  };
  const input = (id, key, label, attrs, onchange) => h("div", { class: "field" }, h("label", { for: id }, label),
    h(attrs.tag || "input", Object.assign({ id, value: f[key], oninput: (e) => { f[key] = e.target.value; sessionStorage.setItem("jm.f." + key, f[key]); onchange(); } }, attrs.a || {}), ...(attrs.kids || [])));
  const states = ["", "RUNNING", "TRANSITIONING", "SUSPENDED", "CANCELLED", "FAILED", "FINISHED"];
  let labelTimer = null;
  main.append(
    h("div", { class: "title" }, h("h1", {}, t("list.title")),
      canEdit() ? h("a", { class: "button primary", href: "#/create" }, t("list.create")) : null),
    h("div", { class: "filters", role: "search" },
      input("filter-name", "name", t("filter.name"), { a: { type: "search" } }, () => draw()),
      input("filter-label", "label", t("filter.label"), { a: { type: "search", placeholder: "team=payments" } }, () => { clearTimeout(labelTimer); labelTimer = setTimeout(load, 300); }),
      input("filter-state", "state", t("filter.state"), { tag: "select", kids: states.map((s) => h("option", { value: s, selected: s === f.state }, s ? t("state." + s) : t("filter.any"))) }, () => draw())),
    err,
    h("table", { id: "deployments", class: "list" },
      h("thead", {}, h("tr", {}, ...["name", "desired", "current", "target", "parallelism", "labels", "since"].map((c) => h("th", { scope: "col" }, t("col." + c))))),
      tbody),
    count);
  await load();
  poll(load);
}

// ---- Create --------------------------------------------------------------------------

function newDoc() {
  return {
    metadata: { name: "" },
    spec: {
      state: "CANCELLED",
      deploymentTargetName: "local",
      template: { spec: { artifact: { kind: "JAR", jarUri: "" }, parallelism: 1 } },
    },
  };
}

const FIELDS = [
  { id: "f-name", path: "metadata.name", label: "create.name" },
  { id: "f-target", path: "spec.deploymentTargetName", label: "create.target", select: "targets" },
  { id: "f-jaruri", path: "spec.template.spec.artifact.jarUri", label: "create.jarUri" },
  { id: "f-entry", path: "spec.template.spec.artifact.entryClass", label: "create.entryClass" },
  { id: "f-args", path: "spec.template.spec.artifact.mainArgs", label: "create.mainArgs" },
  { id: "f-parallelism", path: "spec.template.spec.parallelism", label: "create.parallelism", type: "number" },
  { id: "f-labels", path: "metadata.labels", label: "create.labels", labels: true },
  { id: "f-state", path: "spec.state", label: "create.state", select: "states" },
  { id: "f-upgrade", path: "spec.upgradeStrategy.kind", label: "create.upgrade", adv: true, options: ["STATEFUL", "STATELESS", "NONE"] },
  { id: "f-restore", path: "spec.restoreStrategy.kind", label: "create.restore", adv: true, options: ["LATEST_SAVEPOINT", "LATEST_STATE", "NONE"] },
  { id: "f-jm-memory", path: "spec.template.spec.resources.jobmanager.memory", label: "create.jmMemory", adv: true },
  { id: "f-tm-memory", path: "spec.template.spec.resources.taskmanager.memory", label: "create.tmMemory", adv: true },
  { id: "f-schedule", path: "spec.savepointSchedule.cron", label: "create.schedule", adv: true },
  { id: "f-flink-conf", path: "spec.template.spec.flinkConfiguration", label: "create.flinkConf", adv: true, kv: true },
  { id: "f-log-profile", path: "spec.template.spec.logging.loggingProfile", label: "create.logProfile", adv: true, options: ["default", "oss", "sls"], group: "create.logging" },
  { id: "f-loggers", path: "spec.template.spec.logging.log4jLoggers", label: "create.loggers", adv: true, kv: true },
  // VVP's pod options (Kubernetes targets; envVars also on local).
  ...[["labels", "kv"], ["annotations", "kv"], ["nodeSelector", "kv"], ["envVars", "env"], ["tolerations", "yaml"], ["affinity", "yaml"],
    ["volumes", "yaml"], ["volumeMounts", "yaml"], ["imagePullSecrets", "yaml"], ["securityContext", "yaml"]]
    .map(([k, kind], i) => ({ id: "f-pod-" + k, path: "spec.template.spec.kubernetes.pods." + k, label: "pods." + k, adv: true, [kind]: true, group: i ? null : "create.pods" })),
];

// "key: value" lines ⇄ an object (Flink configuration, loggers).
const kvText = (o) => Object.entries(o || {}).map(([k, v]) => `${k}: ${v}`).join("\n");
// "NAME=value" lines ⇄ [{name, value}] (pod environment variables).
const envText = (a) => (a || []).map((e) => `${e.name}=${e.value ?? ""}`).join("\n");
function parseEnv(s) {
  return s.split("\n").map((x) => x.trim()).filter(Boolean).map((line) => {
    const i = line.indexOf("=");
    if (i <= 0) throw new Error(t("create.envInvalid", { line }));
    return { name: line.slice(0, i).trim(), value: line.slice(i + 1) };
  });
}
const yamlOf = (v) => (v == null || (typeof v === "object" && !Object.keys(v).length) ? "" : dump(v));

function parseKv(s) {
  const o = {};
  for (const line of s.split("\n").map((x) => x.trim()).filter(Boolean)) {
    const i = line.indexOf(":");
    if (i < 0) throw new Error(t("create.kvInvalid", { line }));
    o[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return o;
}

// Drops objects left empty by cleared fields (`upgradeStrategy: {}` is not a strategy).
function prune(o) {
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (v && typeof v === "object" && !Array.isArray(v)) {
      prune(v);
      if (Object.keys(v).length === 0) delete o[k];
    }
  }
  return o;
}

// The field a message of the API names (longest path first), or null.
function fieldFor(message) {
  const m = message || "";
  return [...FIELDS].sort((a, b) => b.path.length - a.path.length).find((f) => m.startsWith(f.path) || m.includes(" " + f.path) || m.includes(f.path + ":")) || null;
}

const choices = () => Promise.all([
  api.get(nsPath("deployment-targets")).then((x) => x.items.map((i) => i.metadata.name)).catch(() => ["local"]),
  api.get(`/artifacts/v1/namespaces/${api.enc(S.ns)}/artifacts:list`).then((x) => x.items).catch(() => []),
]);

// The Standard, Advanced and YAML views of one deployment document (create and configure).
function docForm(doc, [targets, artifacts], o = {}) {
  let view = o.view || "standard";
  const general = errorBox("create-error");
  const yamlText = h("textarea", { id: o.yamlId || "yaml", rows: 22, spellcheck: "false", readonly: o.readonly, "aria-label": t("create.yaml") });
  const yamlErr = errorBox("yaml-error");
  const controls = {};
  const errs = {};
  let pick;
  const std = h("div", { id: "standard", class: "form-grid" });
  const adv = h("div", { id: "advanced", class: "form-grid", hidden: true });
  for (const f of FIELDS) {
    let c;
    if (f.options) c = h("select", { id: f.id }, h("option", { value: "" }, t("create.default")), ...f.options.map((o) => h("option", { value: o }, o)));
    else if (f.kv || f.env || f.yaml) c = h("textarea", { id: f.id, rows: f.yaml ? 5 : 3, spellcheck: "false", placeholder: f.env ? "NAME=value" : f.kv ? "key: value" : "YAML", "aria-describedby": f.id + "-error" });
    else if (f.select === "targets") c = h("select", { id: f.id }, ...targets.map((n) => h("option", { value: n }, n)));
    else if (f.select === "states") c = h("select", { id: f.id }, ...(o.states || ["CANCELLED", "RUNNING"]).map((s) => h("option", { value: s }, t("state." + s))));
    else c = h("input", { id: f.id, type: f.type || "text", min: f.type === "number" ? "1" : null, "aria-describedby": f.id + "-error" });
    c.disabled = !!o.readonly;
    controls[f.id] = c;
    errs[f.id] = h("p", { class: "field-error", id: f.id + "-error", role: "alert" });
    const row = h("div", { class: "field" }, h("label", { for: f.id }, t((o.labels || {})[f.id] || f.label)), c, errs[f.id]);
    if (f.id === "f-jaruri") {
      pick = h("select", { id: "f-jar", disabled: o.readonly, onchange: (e) => { if (e.target.value) controls["f-jaruri"].value = e.target.value; } },
        h("option", { value: "" }, t("create.jarPick")),
        ...artifacts.map((a) => h("option", { value: a.uri }, a.filename)));
      std.append(h("div", { class: "field" }, h("label", { for: "f-jar" }, t("create.jar")), pick,
        h("p", { class: "muted" }, h("a", { href: "#/artifacts" }, t("create.jarUpload")))));
    }
    if (f.group) adv.append(h("h2", { class: "group" }, t(f.group)));
    (f.adv ? adv : std).append(row);
  }
  const fill = () => {
    for (const f of FIELDS) {
      const v = get(doc, f.path);
      controls[f.id].value = f.labels ? labelsText(v) : f.kv ? kvText(v) : f.env ? envText(v) : f.yaml ? yamlOf(v) : v ?? "";
    }
    if (pick) pick.value = artifacts.some((a) => a.uri === controls["f-jaruri"].value) ? controls["f-jaruri"].value : "";
  };
  const collect = () => {
    for (const f of FIELDS) {
      const raw = controls[f.id].value;
      let v = raw;
      if (f.type === "number") v = raw === "" ? undefined : Number(raw);
      if (f.labels) v = raw.trim() ? parseLabels(raw) : undefined;
      try {
        if (f.kv) v = raw.trim() ? parseKv(raw) : undefined;
        if (f.env) v = raw.trim() ? parseEnv(raw) : undefined;
        if (f.yaml) v = raw.trim() ? parse(raw) : undefined;
      } catch (x) {
        x.field = f;
        throw x;
      }
      set(doc, f.path, typeof v === "string" ? v.trim() : v);
    }
    prune(doc);
  };
  const clearErrors = () => {
    general.textContent = "";
    yamlErr.textContent = "";
    for (const id in errs) {
      errs[id].textContent = "";
      controls[id].removeAttribute("aria-invalid");
    }
  };
  const showError = (message, field) => {
    const f = view !== "yaml" ? field || fieldFor(message) : null;
    if (f) {
      if (f.adv && view !== "advanced") switchTo("advanced");
      if (!f.adv && view !== "standard") switchTo("standard");
      errs[f.id].textContent = message;
      controls[f.id].setAttribute("aria-invalid", "true");
      controls[f.id].focus();
    } else if (view === "yaml") yamlErr.textContent = message;
    else general.textContent = message;
  };
  const tabs = h("div", { class: "tabs", role: "tablist" });
  const yamlBox = h("div", { id: "yaml-view" }, h("label", { for: yamlText.id }, t(o.label || "create.yaml")), yamlText, yamlErr);
  const switchTo = (v) => {
    clearErrors();
    if (v === view) return;
    try {
      if (v === "yaml") {
        collect();
        yamlText.value = dump(doc) + "\n";
      } else if (view === "yaml") {
        doc = parse(yamlText.value) || {};
        fill();
      }
    } catch (x) {
      showError(x.message, x.field);
      return;
    }
    show(v);
  };
  const show = (v) => {
    view = v;
    std.hidden = v !== "standard";
    adv.hidden = v !== "advanced";
    yamlBox.hidden = v !== "yaml";
    for (const b of tabs.children) b.setAttribute("aria-selected", String(b.dataset.view === v));
  };
  for (const [v, key] of [["standard", "create.standard"], ["advanced", "create.advanced"], ["yaml", "create.yaml"]]) {
    tabs.append(h("button", { type: "button", role: "tab", id: "tab-" + v, "data-view": v, onclick: () => switchTo(v) }, t(key)));
  }
  // The document (a mapping; {yaml} unparsed unless asked) or a thrown error.
  const read = (obj) => {
    clearErrors();
    if (view === "yaml") return obj ? parse(yamlText.value) : { yaml: yamlText.value };
    collect();
    return doc;
  };
  const load = (d) => {
    doc = d;
    fill();
    yamlText.value = dump(d) + "\n";
  };
  show(view);
  load(doc);
  return { parts: [tabs, general, std, adv, yamlBox], read, load, showError, view: () => view };
}

async function createPage(main) {
  if (!canEdit()) {
    main.append(h("h1", {}, t("create.title")), h("p", { class: "note", id: "role-note" }, roleReason("editor")));
    return;
  }
  const f = docForm(newDoc(), await choices());
  const form = h("form", { id: "create-form", class: "card", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    try {
      const d = await api.call("POST", nsPath("deployments"), f.read());
      flash = d.warnings;
      go("#/d/" + d.metadata.id);
    } catch (x) {
      if (x.status === 401) throw x;
      f.showError(x.message, x.field);
    }
  } }, ...f.parts, h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "create-submit" }, t("create.submit"))));
  main.append(h("h1", {}, t("create.title")), form);
}

// ---- Deployment page ----------------------------------------------------------------

const TABS = ["overview", "configure", "events", "jobs", "savepoints", "metrics", "logs"];

async function deploymentPage(main, id, tab) {
  if (!TABS.includes(tab)) tab = "overview";
  let d = await api.get(nsPath("deployments/" + api.enc(id)));
  const head = h("div", { class: "title" });
  const actions = h("div", { class: "actions", id: "actions", role: "toolbar", "aria-label": t("actions.label") });
  const note = h("p", { class: "note", id: "role-note" });
  const msg = h("p", { class: "error", id: "action-error", role: "alert" });
  const body = h("section", { id: "tab-" + tab, "aria-labelledby": "tabbtn-" + tab });
  const tabs = h("nav", { class: "tabs", "aria-label": t("tabs.label") },
    ...TABS.map((x) => h("a", { href: `#/d/${d.metadata.id}/${x}`, id: "tabbtn-" + x, "aria-current": x === tab ? "page" : null }, t("tab." + x))));
  main.append(h("p", { class: "crumbs" }, h("a", { href: "#/deployments" }, t("nav.deployments")), " / "), head, actions, note, msg, warnBox(flash), tabs, body);
  flash = null;

  const patchState = async (state) => {
    await api.call("PATCH", nsPath("deployments/" + d.metadata.id), { spec: { state } });
  };
  const act = (label, fn, confirmKey) => async () => {
    msg.textContent = "";
    if (confirmKey && !(await confirmDialog(t(confirmKey, { name: d.metadata.name }), label))) return;
    try {
      await fn();
      await refresh();
    } catch (x) {
      if (x.status === 401) throw x;
      msg.textContent = x.message;
    }
  };

  let headSig = "";
  const drawHead = () => {
    const st = d.status || {};
    const sig = JSON.stringify([st.state, d.spec.state, d.metadata.name, S.me && S.me.role]);
    if (sig === headSig) return;
    headSig = sig;
    head.replaceChildren(h("h1", {}, d.metadata.name), h("span", { class: "muted" }, t("col.current")), stateBadge(st.state, "state"), h("span", { class: "muted" }, t("col.desired")), stateBadge(d.spec.state, "desired"));
    const running = st.state === "RUNNING";
    const busy = st.state === "TRANSITIONING";
    const editor = canEdit();
    const buttons = [
      ["start", t("action.start"), () => patchState("RUNNING"), d.spec.state === "RUNNING" ? t("why.alreadyRunning") : null, null],
      ["suspend", t("action.suspend"), () => patchState("SUSPENDED"), running ? null : t("why.notRunning"), null],
      ["cancel", t("action.cancel"), () => patchState("CANCELLED"), d.spec.state === "CANCELLED" && st.state === "CANCELLED" ? t("why.alreadyCancelled") : null, "confirm.cancel"],
      ["savepoint", t("action.savepoint"), () => api.call("POST", nsPath("savepoints"), { metadata: { deploymentId: d.metadata.id } }), running ? null : t("why.notRunning"), null],
      ["clone", t("action.clone"), async () => { const c = await api.call("POST", nsPath(`deployments/${d.metadata.id}/clone`)); go("#/d/" + c.metadata.id); }, null, null],
      ["delete", t("action.delete"), async () => { await api.call("DELETE", nsPath("deployments/" + d.metadata.id)); go("#/deployments"); }, running || busy ? t("why.stopFirst") : null, "confirm.delete"],
    ];
    actions.replaceChildren(...buttons.map(([key, label, fn, why, confirmKey]) => {
      const reason = !editor ? roleReason("editor") : why;
      return h("button", { type: "button", id: "action-" + key, class: key === "delete" || key === "cancel" ? "danger" : "", disabled: !!reason, title: reason, "aria-describedby": reason ? "role-note" : null, onclick: act(label, fn, confirmKey) }, label);
    }));
    if (running) actions.append(h("a", { class: "button", id: "flink-ui", href: `/flink/${api.enc(S.ns)}/${d.metadata.id}/`, target: "_blank", rel: "noopener" }, t("action.flinkUi")));
    note.textContent = editor ? "" : roleReason("editor");
    note.hidden = editor;
  };

  let drawBody = async () => {};
  if (tab === "overview") drawBody = async () => overview(body, d);
  if (tab === "events") drawBody = async () => eventsTab(body, d);
  if (tab === "jobs") drawBody = async () => jobsTab(body, d);
  if (tab === "savepoints") drawBody = async () => savepointsTab(body, d);
  if (tab === "metrics") drawBody = metricsTab(body, d);
  if (tab === "logs") drawBody = logsTab(body, d);
  if (tab === "configure") await configureTab(body, d, async () => { await refresh(); });

  const refresh = async () => {
    d = await api.get(nsPath("deployments/" + d.metadata.id));
    drawHead();
    await drawBody();
  };
  drawHead();
  await drawBody();
  poll(refresh);
}

// Replaces a section's content only when its data changed (polling keeps focus and scroll).
function swap(body, data, build) {
  const sig = JSON.stringify([data, S.tz]);
  if (body.dataset.sig === sig) return;
  body.dataset.sig = sig;
  body.replaceChildren(...[build()].flat());
}

function dl(rows) {
  return h("dl", { class: "facts" }, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function overview(body, d) {
  swap(body, d, () => overviewItems(d));
}

function overviewItems(d) {
  const st = d.status || {};
  const run = st.running || {};
  const conds = run.conditions || [];
  const items = [
    dl([
      [t("col.current"), stateBadge(st.state)],
      [t("col.desired"), stateBadge(d.spec.state)],
      [t("col.target"), d.spec.deploymentTargetName || "—"],
      [t("col.parallelism"), String(get(d, "spec.template.spec.parallelism") ?? "—")],
      [t("ov.job"), run.jobId || "—"],
      [t("col.since"), st.state === "RUNNING" ? fmtTime(run.transitionTime) : "—"],
      [t("ov.jar"), get(d, "spec.template.spec.artifact.jarUri") || "—"],
      [t("col.labels"), labelsText(d.metadata.labels) || "—"],
      [t("ov.modified"), fmtTime(d.metadata.modifiedAt || d.metadata.createdAt)],
    ]),
  ];
  if (st.failure) items.push(h("div", { class: "failure", role: "status" }, h("strong", {}, t("ov.failure") + ": " + st.failure.reason), h("p", {}, st.failure.message)));
  items.push(h("h2", {}, t("ov.conditions")));
  items.push(conds.length
    ? table(["type", "status", "reason", "message", "time"], conds.map((c) => [c.type, c.status, c.reason, c.message, fmtTime(c.lastTransitionTime)]), "conditions")
    : h("p", { class: "muted" }, t("ov.noConditions")));
  return items;
}

function table(cols, rows, id) {
  return h("table", { class: "list", id },
    h("thead", {}, h("tr", {}, ...cols.map((c) => h("th", { scope: "col" }, c ? t("col." + c) : "")))),
    h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((v, i) => h("td", { "data-label": cols[i] ? t("col." + cols[i]) : null }, v ?? "—"))))));
}

async function eventsTab(body, d) {
  const ev = (await api.get(nsPath("events?deploymentId=" + d.metadata.id))).items;
  ev.sort((a, b) => (a.metadata.createdAt < b.metadata.createdAt ? 1 : -1));
  swap(body, ev, () => ev.length
    ? table(["time", "event", "message"], ev.map((e) => [fmtTime(e.metadata.createdAt), e.spec.name, e.spec.message]), "events")
    : h("p", { class: "muted" }, t("events.none")));
}

async function jobsTab(body, d) {
  const jobs = (await api.get(nsPath("jobs?deploymentId=" + d.metadata.id))).items;
  jobs.sort((a, b) => (a.metadata.createdAt < b.metadata.createdAt ? 1 : -1));
  swap(body, jobs, () => jobs.length
    ? table(["job", "state", "started", "ended", "restarts", "failure"], jobs.map((j) => [j.metadata.id, j.status.state, fmtTime(j.status.startedAt), fmtTime(j.status.endedAt), String(j.status.numRestarts || 0), j.status.failure ? j.status.failure.message : "—"]), "jobs")
    : h("p", { class: "muted" }, t("jobs.none")));
}

async function savepointsTab(body, d) {
  const sps = (await api.get(nsPath("savepoints?deploymentId=" + d.metadata.id))).items;
  sps.sort((a, b) => (a.metadata.createdAt < b.metadata.createdAt ? 1 : -1));
  swap(body, sps, () => sps.length
    ? table(["time", "origin", "state", "location"], sps.map((s) => [fmtTime(s.metadata.createdAt), s.metadata.origin, s.status.state, s.status.location || "—"]), "savepoints")
    : h("p", { class: "muted" }, t("savepoints.none")));
}

// ---- Metrics: hand-written SVG line charts of the manager's fixed panels -------------

const PANELS = ["recordsIn", "recordsOut", "restarts", "checkpointDuration", "checkpointFailures", "backpressure", "heap"];
const RANGES = [900, 3600, 21600, 86400];
const METRICS_EVERY_MS = 15000;
const SVGNS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

// 1234567 → "1.23M"; units as the API names them (1/s, ms, B, ms/s).
function fmtValue(v, unit) {
  if (unit === "B") return fmtSize(Math.round(v));
  const a = Math.abs(v);
  const n = a >= 1e9 ? (v / 1e9).toFixed(2) + "G" : a >= 1e6 ? (v / 1e6).toFixed(2) + "M" : a >= 1e4 ? (v / 1e3).toFixed(1) + "k" : Number.isInteger(v) ? String(v) : v.toFixed(a >= 100 ? 0 : 2);
  return unit === "1/s" ? n + "/s" : unit ? n + " " + unit : n;
}

function chart(data) {
  const W = 320, H = 120, L = 4, R = 4, T = 8, B = 18;
  const all = data.series.flatMap((s) => s.points);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": t("metrics." + data.panel) });
  if (!all.length) return null;
  const end = Math.max(...all.map((p) => p[0]));
  const start = end - data.range;
  const max = Math.max(...all.map((p) => p[1]), 0) || 1;
  const x = (ts) => L + ((ts - start) / data.range) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  root.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  root.append(svg("text", { x: L, y: T + 2, class: "tick" }, fmtValue(max, data.unit)));
  root.append(svg("text", { x: L, y: H - 4, class: "tick" }, fmtTime(new Date(start * 1000).toISOString()).slice(11, 16)));
  root.append(svg("text", { x: W - R, y: H - 4, class: "tick end" }, fmtTime(new Date(end * 1000).toISOString()).slice(11, 16)));
  data.series.forEach((s, i) => {
    if (!s.points.length) return;
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    root.append(svg("path", { d, class: "line s" + i }, svg("title", {}, t("metrics.series." + s.name))));
  });
  return root;
}

function metricsTab(body, d) {
  let range = Number(sessionStorage.getItem("jm.m.range")) || 3600;
  let last = 0;
  const grid = h("div", { class: "charts", id: "charts" });
  const err = errorBox("metrics-error");
  const sel = h("select", { id: "metrics-range", onchange: (e) => { range = Number(e.target.value); sessionStorage.setItem("jm.m.range", range); last = 0; load(); } },
    ...RANGES.map((r) => h("option", { value: r, selected: r === range }, t("metrics.range", { span: r < 3600 ? r / 60 + " min" : r / 3600 + " h" }))));
  body.replaceChildren(h("div", { class: "field inline" }, h("label", { for: "metrics-range" }, t("metrics.rangeLabel")), sel), err, grid);
  const load = async () => {
    if (Date.now() - last < METRICS_EVERY_MS) return;
    last = Date.now();
    const base = `/console/v1/namespaces/${api.enc(S.ns)}/deployments/${d.metadata.id}/metrics?range=${range}&query=`;
    const got = await Promise.all(PANELS.map((p) => api.get(base + p).catch((x) => x)));
    const failed = got.find((g) => g instanceof Error);
    if (failed && failed.status === 401) throw failed;
    err.textContent = failed ? t("metrics.failed", { msg: failed.message }) : "";
    grid.replaceChildren(...got.map((g, i) => {
      const panel = PANELS[i];
      const ok = !(g instanceof Error);
      const c = ok ? chart(g) : null;
      const lastValues = ok ? g.series.filter((s) => s.points.length).map((s) => (g.series.length > 1 ? t("metrics.series." + s.name) + " " : "") + fmtValue(s.points[s.points.length - 1][1], g.unit)) : [];
      return h("figure", { class: "card panel", "data-panel": panel },
        h("figcaption", {}, h("strong", {}, t("metrics." + panel)), " ", h("span", { class: "value" }, lastValues.join(" · "))),
        c || h("p", { class: "muted" }, ok ? t("metrics.none") : "—"));
    }));
  };
  return load;
}

// The tail of the JobManager log, where the target keeps log files (local clusters).
function logsTab(body, d) {
  let last = 0;
  return async () => {
    if (Date.now() - last < 5000) return;
    last = Date.now();
    let r;
    try {
      r = await api.get(`/console/v1/namespaces/${api.enc(S.ns)}/deployments/${d.metadata.id}/logs`);
    } catch (x) {
      if (x.status === 401) throw x;
      return swap(body, x.message, () => h("p", { class: "muted", id: "logs-none" }, x.message));
    }
    swap(body, r, () => [
      h("p", { class: "muted", id: "log-file" }, t("logs.file", { file: r.file, size: fmtSize(r.size) }), r.truncated ? " · " + t("logs.truncated", { size: fmtSize(r.text.length) }) : ""),
      h("pre", { class: "log", id: "log", tabindex: "0", "aria-label": t("logs.label") }, r.text),
    ]);
  };
}

// The merge patch that turns `from` into `to`: keys `to` lacks become null (removed).
export function diffPatch(from, to) {
  const isObj = (x) => x && typeof x === "object" && !Array.isArray(x);
  if (!isObj(from) || !isObj(to)) return to;
  const p = {};
  for (const k of Object.keys(from)) if (!(k in to)) p[k] = null;
  for (const [k, v] of Object.entries(to)) {
    if (JSON.stringify(from[k]) === JSON.stringify(v)) continue;
    p[k] = isObj(from[k]) && isObj(v) ? diffPatch(from[k], v) : v;
  }
  return p;
}

async function configureTab(body, d, after) {
  const editable = (x) => {
    const { id, namespace, createdAt, modifiedAt, ...metadata } = x.metadata;
    return { metadata: Object.assign({ labels: {}, annotations: {} }, metadata), spec: x.spec };
  };
  const copy = (x) => JSON.parse(JSON.stringify(x));
  // The document the views were loaded from: saving sends what changed since (removed keys
  // as null), with its resourceVersion, so a key deleted here is deleted there.
  let base = editable(d);
  const f = docForm(copy(base), await choices(), { view: "yaml", yamlId: "config-yaml", label: "config.label", readonly: !canEdit(), states: ["CANCELLED", "RUNNING", "SUSPENDED"], labels: { "f-state": "col.desired" } });
  const err = errorBox("config-error");
  const ok = h("p", { class: "ok", id: "config-ok", role: "status" });
  let warn = warnBox(null, "config-warnings");
  const reload = async () => {
    base = editable(await api.get(nsPath("deployments/" + d.metadata.id)));
    f.load(copy(base));
    err.textContent = "";
  };
  const save = async (e) => {
    e.preventDefault();
    err.textContent = "";
    ok.textContent = "";
    warn.hidden = true;
    try {
      const edited = f.read(true);
      if (!edited || typeof edited !== "object" || Array.isArray(edited)) throw new Error(t("config.notMapping"));
      const patch = diffPatch(prune(copy(base)), prune(copy(edited)));
      patch.metadata = Object.assign(patch.metadata || {}, { resourceVersion: base.metadata.resourceVersion });
      const saved = await api.call("PATCH", nsPath("deployments/" + d.metadata.id), patch);
      base = editable(saved);
      f.load(copy(base));
      ok.textContent = t("config.saved", { rv: saved.metadata.resourceVersion });
      warn.replaceWith((warn = warnBox(saved.warnings, "config-warnings")));
      await after();
    } catch (x) {
      if (x.status === 401) throw x;
      if (x.status !== 409 && f.view() !== "yaml") f.showError(x.message, x.field);
      else err.textContent = x.status === 409 ? t("config.conflict") + " " + x.message : x.message;
    }
  };
  body.replaceChildren(h("form", { class: "card", id: "config-form", novalidate: true, onsubmit: save },
    h("p", { class: "muted" }, t("config.help")),
    ...f.parts, err, ok, warn,
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary", id: "config-save", disabled: !canEdit(), title: canEdit() ? null : roleReason("editor") }, t("config.save")),
      h("button", { type: "button", id: "config-reload", onclick: reload }, t("config.reload")))));
}

// ---- Artifacts ----------------------------------------------------------------------

async function artifactsPage(main) {
  const base = `/artifacts/v1/namespaces/${api.enc(S.ns)}/`;
  const err = errorBox("upload-error");
  const progress = h("progress", { id: "upload-progress", max: 1, value: 0, hidden: true });
  const status = h("p", { id: "upload-status", role: "status" });
  const listBox = h("div", { id: "artifacts" });
  const editor = canEdit();
  const load = async () => {
    const items = (await api.get(base + "artifacts:list")).items;
    listBox.replaceChildren(items.length
      ? h("table", { class: "list" },
          h("thead", {}, h("tr", {}, ...["file", "size", "modified", ""].map((c) => h("th", { scope: "col" }, c ? t("col." + c) : "")))),
          h("tbody", {}, ...items.map((a) => h("tr", { "data-name": a.filename },
            h("td", { "data-label": t("col.file") }, a.filename),
            h("td", { "data-label": t("col.size") }, fmtSize(a.size)),
            h("td", { "data-label": t("col.modified") }, fmtTime(a.createdAt)),
            h("td", { class: "row-actions" }, h("button", { type: "button", "aria-label": t("artifacts.download") + " " + a.filename, onclick: () => download(base + "artifacts:download?filename=" + api.enc(a.filename), a.filename).catch((x) => (err.textContent = x.message)) }, t("artifacts.download")), " ", h("button", { type: "button", class: "danger", disabled: !editor, title: editor ? null : roleReason("editor"), "aria-label": t("artifacts.delete") + " " + a.filename, onclick: async () => {
              if (!(await confirmDialog(t("confirm.deleteArtifact", { name: a.filename }), t("artifacts.delete")))) return;
              try { await api.call("DELETE", base + "artifacts:delete?filename=" + api.enc(a.filename)); } catch (x) { err.textContent = x.message; }
              await load();
            } }, t("artifacts.delete")))))))
      : h("p", { class: "muted" }, t("artifacts.none")));
  };
  const send = async (file) => {
    err.textContent = "";
    status.textContent = "";
    if (file.size > MAX_UPLOAD) {
      err.textContent = t("artifacts.tooLarge", { name: file.name, size: fmtSize(file.size) });
      return;
    }
    progress.hidden = false;
    progress.value = 0;
    try {
      await api.upload(base + "artifacts:upload", file, (p) => (progress.value = p));
      status.textContent = t("artifacts.uploaded", { name: file.name });
    } catch (x) {
      err.textContent = x.message;
    }
    progress.hidden = true;
    await load();
  };
  const fileInput = h("input", { type: "file", id: "file", accept: ".jar", disabled: !editor, onchange: (e) => { for (const f of e.target.files) send(f); e.target.value = ""; } });
  const drop = h("div", { id: "dropzone", class: "drop", tabindex: editor ? "0" : null,
    ondragover: (e) => { e.preventDefault(); drop.classList.add("over"); },
    ondragleave: () => drop.classList.remove("over"),
    ondrop: (e) => { e.preventDefault(); drop.classList.remove("over"); if (editor) for (const f of e.dataTransfer.files) send(f); },
    onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); } } },
    h("p", {}, t("artifacts.drop")), h("label", { for: "file" }, t("artifacts.choose")), fileInput, h("p", { class: "muted" }, t("artifacts.limit")));
  main.append(h("h1", {}, t("artifacts.title")), editor ? drop : h("p", { class: "note", id: "role-note" }, roleReason("editor")), progress, status, err, listBox);
  await load();
}

// Downloads with the token (a plain link could not send it) through an object URL.
async function download(path, name) {
  const r = await fetch(path, { headers: api.token() ? { Authorization: "Bearer " + api.token() } : {} });
  if (!r.ok) throw new Error(t("artifacts.downloadFailed", { name, status: r.status }));
  const url = URL.createObjectURL(await r.blob());
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function fmtSize(n) {
  if (n >= 1024 * 1024) return (n / 1024 / 1024).toFixed(1) + " MB";
  if (n >= 1024) return (n / 1024).toFixed(1) + " KB";
  return n + " B";
}

// ---- API tokens ---------------------------------------------------------------------

async function tokensPage(main) {
  main.append(h("h1", {}, t("tokens.title")));
  if (!isOwner()) {
    main.append(h("p", { class: "note", id: "role-note" }, roleReason("owner")));
    return;
  }
  const base = `/apitokens/v1/namespaces/${api.enc(S.ns)}/apitokens`;
  const err = errorBox("token-error");
  const secretBox = h("div", { id: "secret", role: "status" });
  const listBox = h("div", { id: "tokens" });
  const load = async () => {
    const items = (await api.get(base)).items;
    listBox.replaceChildren(table(["name", "role", "created", ""], [], "token-list"));
    const tb = listBox.querySelector("tbody");
    for (const k of items) {
      tb.append(h("tr", { "data-name": k.name }, h("td", {}, k.name), h("td", {}, t("role." + k.role)), h("td", {}, fmtTime(k.createdAt)),
        h("td", {}, h("button", { type: "button", class: "danger", onclick: async () => {
          if (!(await confirmDialog(t("confirm.deleteToken", { name: k.name }), t("tokens.delete")))) return;
          try { await api.call("DELETE", base + "/" + api.enc(k.name)); } catch (x) { err.textContent = x.message; }
          await load();
        } }, t("tokens.delete")))));
    }
  };
  const name = h("input", { id: "token-name", required: true, autocomplete: "off" });
  const role = h("select", { id: "token-role" }, ...["viewer", "editor", "owner"].map((r) => h("option", { value: r }, t("role." + r))));
  const form = h("form", { class: "card inline", id: "token-form", onsubmit: async (e) => {
    e.preventDefault();
    err.textContent = "";
    secretBox.replaceChildren();
    try {
      const k = await api.call("POST", base, { name: name.value.trim(), role: role.value });
      const code = h("code", { id: "token-secret" }, k.secret);
      secretBox.replaceChildren(h("div", { class: "secret" }, h("p", {}, t("tokens.once")), code, " ",
        h("button", { type: "button", onclick: () => navigator.clipboard && navigator.clipboard.writeText(k.secret) }, t("tokens.copy"))));
      name.value = "";
      await load();
    } catch (x) {
      err.textContent = x.message;
    }
  } }, h("div", { class: "field" }, h("label", { for: "token-name" }, t("tokens.name")), name), h("div", { class: "field" }, h("label", { for: "token-role" }, t("tokens.role")), role),
    h("button", { type: "submit", class: "primary" }, t("tokens.create")));
  main.append(form, err, secretBox, listBox);
  await load();
}

// ---- System -------------------------------------------------------------------------

async function systemPage(main) {
  const tz = h("select", { id: "timezone", onchange: (e) => { setTz(e.target.value); route(); } },
    ...ZONES.map((z) => h("option", { value: z, selected: z === S.tz }, z)));
  const local = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (local && !ZONES.includes(local)) tz.append(h("option", { value: local, selected: local === S.tz }, local));
  main.append(h("h1", {}, t("system.title")),
    h("div", { class: "card" },
      h("div", { class: "field" }, h("label", { for: "timezone" }, t("settings.timezone")), tz, h("p", { class: "muted" }, t("system.tzHelp"))),
      h("p", {}, t("system.now") + ": ", h("span", { id: "now", class: "time" }, fmtTime(new Date().toISOString()))),
      h("p", {}, t("system.language") + ": " + (lang() === "zh" ? "中文" : "English")),
      h("p", { id: "version" }, t("system.version") + ": " + ((S.me && S.me.version) || "—")),
      h("p", {}, t("system.licence"))));
}
