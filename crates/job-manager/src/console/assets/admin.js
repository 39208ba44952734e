// Namespace administration pages: job templates (the namespace's deployment defaults),
// deployment targets and members (role bindings).

import * as api from "./api.js";
import { S, h, confirmDialog } from "./app.js";
import { t } from "./i18n.js";
import { dump, parse } from "./yaml.js";
import { canEdit, isOwner, roleReason, errorBox } from "./views.js";

const nsPath = (rest) => `/api/v1/namespaces/${api.enc(S.ns)}/${rest}`;
const note = (need) => h("p", { class: "note", id: "role-note" }, roleReason(need));

// ---- Job templates: the defaults every new deployment starts from --------------------

export async function templatesPage(main) {
  const url = nsPath("deployment-defaults");
  const editor = canEdit();
  const text = h("textarea", { id: "defaults-yaml", rows: 22, spellcheck: "false", readonly: !editor });
  const err = errorBox("defaults-error");
  const ok = h("p", { class: "ok", id: "defaults-ok", role: "status" });
  // The resourceVersion the text was loaded at: a save based on an older one is refused.
  let rv = 0;
  const load = async () => {
    const v = await api.get(url);
    rv = v.metadata.resourceVersion;
    text.value = dump({ spec: v.spec || {} }) + "\n";
    err.textContent = "";
  };
  const save = async (e) => {
    e.preventDefault();
    err.textContent = "";
    ok.textContent = "";
    try {
      const doc = parse(text.value) || {};
      const v = await api.call("PUT", url, { metadata: { resourceVersion: rv }, spec: doc.spec || {} });
      ok.textContent = t("templates.saved", { rv: v.metadata.resourceVersion });
      await load();
    } catch (x) {
      if (x.status === 401) throw x;
      err.textContent = x.status === 409 ? t("templates.conflict") + " " + x.message : x.message;
    }
  };
  main.append(h("h1", {}, t("templates.title")), editor ? null : note("editor"),
    h("form", { class: "card", id: "defaults-form", onsubmit: save },
      h("label", { for: "defaults-yaml" }, t("templates.label")),
      h("p", { class: "muted" }, t("templates.help")),
      text, err, ok,
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary", id: "defaults-save", disabled: !editor, title: editor ? null : roleReason("editor") }, t("config.save")),
        h("button", { type: "button", id: "defaults-reload", onclick: () => load().catch((x) => (err.textContent = x.message)) }, t("config.reload")))));
  await load();
}

// ---- Deployment targets ----------------------------------------------------------------

const TARGET_TEMPLATE = "metadata:\n  name: \"\"\nspec:\n  type: session\n  restUrl: \"http://\"\n";

function targetWhere(s) {
  if (!s) return "—";
  if (s.restUrl) return s.restUrl;
  if (s.kubernetes && s.kubernetes.namespace) return "kubernetes: " + s.kubernetes.namespace;
  if (s.namespace) return "kubernetes: " + s.namespace;
  return "—";
}

export async function targetsPage(main) {
  const owner = isOwner();
  const err = errorBox("target-error");
  const listBox = h("div", { id: "targets" });
  const load = async () => {
    const items = (await api.get(nsPath("deployment-targets"))).items;
    listBox.replaceChildren(h("table", { class: "list" },
      h("thead", {}, h("tr", {}, ...["name", "type", "where", ""].map((c) => h("th", { scope: "col" }, c ? t("col." + c) : "")))),
      h("tbody", {}, ...items.map((x) => h("tr", { "data-name": x.metadata.name },
        h("td", { "data-label": t("col.name") }, x.metadata.name),
        h("td", { "data-label": t("col.type") }, (x.spec && x.spec.type) || (x.spec && x.spec.kubernetes ? "kubernetes" : "—")),
        h("td", { "data-label": t("col.where") }, targetWhere(x.spec)),
        h("td", { class: "row-actions" }, h("button", { type: "button", class: "danger", disabled: !owner, title: owner ? null : roleReason("owner"), "aria-label": t("targets.delete") + " " + x.metadata.name, onclick: async () => {
          if (!(await confirmDialog(t("confirm.deleteTarget", { name: x.metadata.name }), t("targets.delete")))) return;
          err.textContent = "";
          try { await api.call("DELETE", nsPath("deployment-targets/" + api.enc(x.metadata.name))); } catch (e) { if (e.status === 401) throw e; err.textContent = e.message; }
          await load();
        } }, t("targets.delete"))))))));
  };
  main.append(h("h1", {}, t("targets.title")));
  if (owner) {
    const text = h("textarea", { id: "target-yaml", rows: 8, spellcheck: "false" });
    text.value = TARGET_TEMPLATE;
    main.append(h("form", { class: "card", id: "target-form", onsubmit: async (e) => {
      e.preventDefault();
      err.textContent = "";
      try {
        parse(text.value);
        await api.call("POST", nsPath("deployment-targets"), { yaml: text.value });
        text.value = TARGET_TEMPLATE;
        await load();
      } catch (x) {
        if (x.status === 401) throw x;
        err.textContent = x.message;
      }
    } }, h("label", { for: "target-yaml" }, t("targets.new")), h("p", { class: "muted" }, t("targets.help")), text,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "target-create" }, t("targets.create")))));
  } else {
    main.append(note("owner"));
  }
  main.append(err, listBox);
  await load();
}

// ---- Members: the namespace's role bindings ---------------------------------------------

export async function membersPage(main) {
  const owner = isOwner();
  const url = `/namespaces/v1/namespaces/${api.enc(S.ns)}`;
  const err = errorBox("member-error");
  const listBox = h("div", { id: "members" });
  let n = null;
  const save = async (bindings) => {
    err.textContent = "";
    try {
      n = await api.call("PATCH", url, { metadata: { resourceVersion: n.metadata.resourceVersion }, spec: { roleBindings: bindings.filter((b) => b.members.length) } });
    } catch (x) {
      if (x.status === 401) throw x;
      err.textContent = x.status === 409 ? t("config.conflict") + " " + x.message : x.message;
      n = await api.get(url);
    }
    draw();
  };
  const bindings = () => ((n.spec && n.spec.roleBindings) || []).map((b) => ({ role: b.role, members: [...(b.members || [])] }));
  const draw = () => {
    const rows = bindings().flatMap((b) => b.members.map((m) => [m, b.role]));
    listBox.replaceChildren(h("table", { class: "list" },
      h("thead", {}, h("tr", {}, ...["member", "role", ""].map((c) => h("th", { scope: "col" }, c ? t("col." + c) : "")))),
      h("tbody", {}, ...rows.map(([m, role]) => h("tr", { "data-name": m },
        h("td", { "data-label": t("col.member") }, m),
        h("td", { "data-label": t("col.role") }, t("role." + role)),
        h("td", { class: "row-actions" }, h("button", { type: "button", class: "danger", disabled: !owner, title: owner ? null : roleReason("owner"), "aria-label": t("members.remove") + " " + m, onclick: async () => {
          if (!(await confirmDialog(t("confirm.removeMember", { name: m }), t("members.remove")))) return;
          await save(bindings().map((b) => (b.role === role ? { role, members: b.members.filter((x) => x !== m) } : b)));
        } }, t("members.remove"))))))));
  };
  main.append(h("h1", {}, t("members.title")));
  if (owner) {
    const member = h("input", { id: "member-name", required: true, autocomplete: "off", placeholder: "user:alice" });
    const role = h("select", { id: "member-role" }, ...["viewer", "editor", "owner"].map((r) => h("option", { value: r }, t("role." + r))));
    main.append(h("form", { class: "card inline", id: "member-form", onsubmit: async (e) => {
      e.preventDefault();
      const m = member.value.trim();
      const bs = bindings().map((b) => ({ role: b.role, members: b.members.filter((x) => x !== m) }));
      const b = bs.find((x) => x.role === role.value);
      if (b) b.members.push(m);
      else bs.push({ role: role.value, members: [m] });
      await save(bs);
      if (!err.textContent) member.value = "";
    } }, h("div", { class: "field" }, h("label", { for: "member-name" }, t("members.member")), member),
      h("div", { class: "field" }, h("label", { for: "member-role" }, t("tokens.role")), role),
      h("button", { type: "submit", class: "primary" }, t("members.add"))));
  } else {
    main.append(note("owner"));
  }
  main.append(err, listBox);
  n = await api.get(url);
  draw();
}
