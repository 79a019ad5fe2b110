// mod_ts2021 admin UI: plain JavaScript over the REST admin API (docs/ui.md). Every value
// from the server reaches the page as text (textContent, attribute values), never as HTML.
"use strict";

const API = (document.body.dataset.api || "/admin/api").replace(/\/+$/, "");

// ---- helpers ----

// el("td", {class: "mono", title: x}, "text", childNode, ...): strings become text nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k === "value") e.value = v;
    else if (k === "checked") e.checked = !!v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.body = body;
  }
}

// One API call: JSON (or text with raw) in, parsed JSON out; ApiError on any 4xx/5xx.
async function api(method, path, body, raw) {
  const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") opts.headers["X-TS2021-CSRF"] = "1";
  if (body !== undefined) {
    opts.headers["Content-Type"] = raw ? "text/plain; charset=utf-8" : "application/json";
    opts.body = raw ? body : JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(API + path, opts);
  } catch (e) {
    throw new ApiError(0, { error: `the admin API at ${API} cannot be reached (${e.message})` });
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!r.ok) {
    throw new ApiError(r.status, data || { error: `HTTP ${r.status} from ${API + path}` });
  }
  return data;
}

function flash(msg, kind) {
  const f = document.getElementById("flash");
  f.className = kind || "info";
  f.textContent = msg || "";
  if (msg && kind !== "error") setTimeout(() => { if (f.textContent === msg) f.textContent = ""; }, 5000);
}

function fail(e) {
  flash(e.code ? `${e.message} (${e.code})` : e.message, "error");
}

function when(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
}

function ago(t) {
  if (!t) return "never";
  const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
  if (isNaN(s)) return String(t);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function tags(list) {
  return (list || []).map((t) => el("span", { class: "tag" }, t));
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    // not a secure context (plain http): select and copy the old way
    const ta = el("textarea", { value: text, readonly: true });
    document.body.append(ta);
    ta.select();
    document.execCommand("copy");
    ta.remove();
  }
  if (button) {
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  }
}

function keyBox(label, key) {
  const input = el("input", { value: key, readonly: true, class: "secret", onfocus: (ev) => ev.target.select() });
  const btn = el("button", { type: "button", class: "primary copy" }, "Copy");
  btn.addEventListener("click", () => copyText(key, btn));
  return el("div", { class: "newkey" },
    el("p", {}, label, " It is shown only now:"), input, " ", btn);
}

function table(headers, rows, empty) {
  if (!rows.length) return el("p", { class: "muted empty" }, empty);
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

// ---- pages ----

let users = [];

async function loadUsers() {
  users = (await api("GET", "/users")).users || [];
  return users;
}

function userSelect(name, withNone) {
  return el("select", { name },
    withNone ? el("option", { value: "" }, "(none: tags only)") : null,
    users.map((u) => el("option", { value: u.name }, u.name)));
}

async function pageNodes(root) {
  const data = await api("GET", "/nodes");
  const nodes = data.nodes || [];
  const rows = nodes.map((n) => {
    const online = n.online === true ? el("span", {}, el("span", { class: "dot on" }), "online")
      : n.online === false ? el("span", {}, el("span", { class: "dot" }), "offline")
      : el("span", { class: "muted" }, "unknown");
    const routes = (n.routes || []).map((r) =>
      el("label", {}, el("input", { type: "checkbox", "data-prefix": r.prefix, checked: r.approved,
                                    disabled: !r.advertised && !r.approved }),
         " ", r.prefix, r.advertised ? "" : " (not advertised)"));
    const saveRoutes = routes.length ? el("button", { type: "button", onclick: async (ev) => {
      const approved = [...ev.target.closest("td").querySelectorAll("input[data-prefix]")]
        .filter((c) => c.checked).map((c) => c.dataset.prefix);
      try {
        await api("POST", `/nodes/${n.id}/routes`, { approved });
        flash(`Routes of ${n.name} saved`);
        show();
      } catch (e) { fail(e); }
    } }, "Save routes") : null;
    const expiry = n.expired ? el("span", { class: "bad" }, "expired ", when(n.expiry))
      : n.expiry ? when(n.expiry) : el("span", { class: "muted" }, "never");
    return el("tr", { "data-node": n.id },
      el("td", {}, el("strong", { class: "node-name" }, n.name),
         n.hostname && n.hostname !== n.name ? el("div", { class: "muted hostname" }, n.hostname) : null,
         n.ephemeral ? el("div", { class: "muted" }, "ephemeral") : null),
      el("td", {}, n.user || el("span", { class: "muted" }, "tagged"), el("div", {}, tags(n.tags))),
      el("td", { class: "mono" }, n.ipv4, n.ipv4 && n.ipv6 ? el("br") : null, n.ipv6),
      el("td", {}, online, el("div", { class: "muted", title: when(n.last_seen) },
                              n.online ? "" : `last seen ${ago(n.last_seen)}`)),
      el("td", {}, n.os || "", el("div", { class: "muted" }, n.client_version || "")),
      el("td", {}, expiry),
      el("td", { class: "routes" }, routes.length ? routes : el("span", { class: "muted" }, "none"), saveRoutes),
      el("td", {},
        el("button", { type: "button", onclick: async () => {
          const name = prompt(`New name for ${n.name} (a DNS label)`, n.name);
          if (!name || name === n.name) return;
          try { await api("PATCH", `/nodes/${n.id}`, { name }); flash(`Renamed to ${name}`); show(); }
          catch (e) { fail(e); }
        } }, "Rename"),
        el("button", { type: "button", onclick: async () => {
          const t = prompt(`Tags of ${n.name}, comma separated (tag:name)`, (n.tags || []).join(","));
          if (t === null) return;
          const list = t.split(",").map((s) => s.trim()).filter(Boolean);
          try { await api("PATCH", `/nodes/${n.id}`, { tags: list }); flash(`Tags of ${n.name} set`); show(); }
          catch (e) { fail(e); }
        } }, "Tags"),
        el("button", { type: "button", disabled: n.expired, onclick: async () => {
          if (!confirm(`Expire the key of ${n.name}? Its user must log in again.`)) return;
          try { await api("POST", `/nodes/${n.id}/expire`); flash(`${n.name} expired`); show(); }
          catch (e) { fail(e); }
        } }, "Expire"),
        el("button", { type: "button", class: "danger", onclick: async () => {
          if (!confirm(`Delete ${n.name}?`)) return;
          try { await api("DELETE", `/nodes/${n.id}`); flash(`${n.name} deleted`); show(); }
          catch (e) { fail(e); }
        } }, "Delete")));
  });
  root.replaceChildren(
    el("h2", {}, `Nodes (${nodes.length})`),
    table(["Node", "Owner", "Addresses", "State", "OS / version", "Key expiry", "Routes", ""],
          rows, "No nodes yet. Add one with a pre-auth key or an interactive login."));
}

async function pageUsers(root) {
  await loadUsers();
  const form = el("form", { class: "inline", onsubmit: async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const body = { name: f.name.value.trim() };
    if (f.display_name.value.trim()) body.display_name = f.display_name.value.trim();
    if (f.email.value.trim()) body.email = f.email.value.trim();
    try { await api("POST", "/users", body); flash(`User ${body.name} created`); show(); }
    catch (e) { fail(e); }
  } },
    el("label", {}, "Name", el("input", { name: "name", required: true })),
    el("label", {}, "Display name", el("input", { name: "display_name" })),
    el("label", {}, "Email", el("input", { name: "email", type: "email" })),
    el("button", { class: "primary", type: "submit" }, "Create user"));
  const rows = users.map((u) => el("tr", { "data-user": u.id },
    el("td", {}, el("strong", {}, u.name)),
    el("td", {}, u.display_name || ""),
    el("td", {}, u.email || ""),
    el("td", {}, u.provider || el("span", { class: "muted" }, "local")),
    el("td", {}, when(u.created)),
    el("td", {},
      el("button", { type: "button", onclick: async () => {
        const name = prompt(`New name for ${u.name}`, u.name);
        if (!name || name === u.name) return;
        try { await api("PATCH", `/users/${u.id}`, { name }); flash(`Renamed to ${name}`); show(); }
        catch (e) { fail(e); }
      } }, "Rename"),
      el("button", { type: "button", class: "danger", onclick: async () => {
        if (!confirm(`Delete user ${u.name}?`)) return;
        try {
          await api("DELETE", `/users/${u.id}`);
        } catch (e) {
          if (e.code !== "has_nodes" || !confirm(`${e.message}\n\nDelete the user and those nodes?`)) {
            return fail(e);
          }
          try { await api("DELETE", `/users/${u.id}?force=true`); } catch (e2) { return fail(e2); }
        }
        flash(`User ${u.name} deleted`);
        show();
      } }, "Delete"))));
  root.replaceChildren(el("h2", {}, `Users (${users.length})`), form,
    table(["Name", "Display name", "Email", "Provider", "Created", ""], rows, "No users yet."));
}

async function pageKeys(root) {
  await loadUsers();
  const [pak, apik] = await Promise.all([api("GET", "/preauthkeys"), api("GET", "/apikeys")]);
  const created = el("div", { id: "created-key" });
  const form = el("form", { class: "inline", id: "preauth-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const f = ev.target;
    const body = { reusable: f.reusable.checked, ephemeral: f.ephemeral.checked };
    if (f.user.value) body.user = f.user.value;
    if (f.expiration.value.trim()) body.expiration = f.expiration.value.trim();
    const t = f.tags.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (t.length) body.tags = t;
    if (f.description.value.trim()) body.description = f.description.value.trim();
    try {
      const k = await api("POST", "/preauthkeys", body);
      await show();
      document.getElementById("created-key").replaceChildren(
        keyBox(`Pre-auth key ${k.prefix} created (tailscale up --auth-key=…).`, k.key));
    } catch (e) { fail(e); }
  } },
    el("label", {}, "User", userSelect("user", true)),
    el("label", {}, "Expires in", el("input", { name: "expiration", value: "1h", size: 6, title: "e.g. 1h, 7d, 0 for never" })),
    el("label", {}, "Tags", el("input", { name: "tags", placeholder: "tag:server,…" })),
    el("label", {}, "Description", el("input", { name: "description" })),
    el("label", { class: "check" }, el("input", { type: "checkbox", name: "reusable" }), "reusable"),
    el("label", { class: "check" }, el("input", { type: "checkbox", name: "ephemeral" }), "ephemeral"),
    el("button", { class: "primary", type: "submit" }, "Create pre-auth key"));
  const rows = (pak.preauthkeys || []).map((k) => el("tr", { "data-key": k.id },
    el("td", { class: "mono" }, k.prefix),
    el("td", {}, k.user || el("span", { class: "muted" }, "—"), el("div", {}, tags(k.tags))),
    el("td", {}, [k.reusable ? "reusable" : "single use", k.ephemeral ? "ephemeral" : null,
                  k.used ? "used" : null].filter(Boolean).join(", ")),
    el("td", { class: k.status === "valid" ? "" : "warn" }, k.status || ""),
    el("td", {}, k.expiration ? when(k.expiration) : "never"),
    el("td", {}, k.description || ""),
    el("td", {}, el("button", { type: "button", disabled: k.status !== "valid", onclick: async () => {
      try { await api("POST", `/preauthkeys/${k.id}/expire`); flash(`Key ${k.prefix} expired`); show(); }
      catch (e) { fail(e); }
    } }, "Expire"))));
  const apiCreated = el("div", { id: "created-apikey" });
  const apiForm = el("form", { class: "inline", onsubmit: async (ev) => {
    ev.preventDefault();
    const body = {};
    if (ev.target.expiration.value.trim()) body.expiration = ev.target.expiration.value.trim();
    try {
      const k = await api("POST", "/apikeys", body);
      await show();
      document.getElementById("created-apikey").replaceChildren(
        keyBox(`API key ${k.prefix} created (Authorization: Bearer …).`, k.key));
    } catch (e) { fail(e); }
  } },
    el("label", {}, "Expires in", el("input", { name: "expiration", value: "90d", size: 6 })),
    el("button", { type: "submit" }, "Create API key"));
  const apiRows = (apik.apikeys || []).map((k) => el("tr", {},
    el("td", { class: "mono" }, k.prefix), el("td", {}, k.status || ""),
    el("td", {}, k.expiration ? when(k.expiration) : "never"),
    el("td", {}, k.last_seen ? ago(k.last_seen) : "never"), el("td", {}, when(k.created))));
  root.replaceChildren(el("h2", {}, "Pre-auth keys"), created, form,
    table(["Prefix", "User / tags", "Kind", "Status", "Expires", "Description", ""], rows,
          "No pre-auth keys."),
    el("h3", {}, "API keys (for scripts)"), apiCreated, apiForm,
    table(["Prefix", "Status", "Expires", "Last used", "Created"], apiRows, "No API keys."));
}

async function pageApprovals(root) {
  await loadUsers();
  const regs = (await api("GET", "/registrations")).registrations || [];
  const rows = regs.map((g) => {
    const pick = el("input", { list: "user-names", name: "user", placeholder: "user name",
                               value: users.length === 1 ? users[0].name : "" });
    return el("tr", { "data-registration": g.id },
      el("td", {}, el("strong", {}, g.hostname || "(no host name)"), el("div", { class: "muted" }, g.os || "")),
      el("td", { class: "mono", title: g.node_key }, (g.node_key || "").slice(8, 24)),
      el("td", {}, when(g.created)),
      el("td", {}, when(g.expires)),
      el("td", {}, pick,
        el("button", { type: "button", class: "primary", onclick: async () => {
          const user = pick.value.trim();
          if (!user) return flash("Choose the user who will own the device", "error");
          try {
            if (!users.some((u) => u.name === user)) await api("POST", "/users", { name: user });
            await api("POST", `/registrations/${encodeURIComponent(g.id)}/approve`, { user });
            flash(`${g.hostname || g.id} approved for ${user}`);
            show();
          } catch (e) { fail(e); }
        } }, "Approve"),
        el("button", { type: "button", class: "danger", onclick: async () => {
          try {
            await api("POST", `/registrations/${encodeURIComponent(g.id)}/reject`, {});
            flash(`${g.hostname || g.id} rejected`);
            show();
          } catch (e) { fail(e); }
        } }, "Reject")));
  });
  root.replaceChildren(el("h2", {}, `Pending approvals (${regs.length})`),
    el("datalist", { id: "user-names" }, users.map((u) => el("option", { value: u.name }))),
    table(["Device", "Key fingerprint", "Asked", "Link expires", "Owner"], rows,
          "No device is waiting for approval."));
  setPending(regs.length);
}

function selectLine(ta, line) {
  const lines = ta.value.split("\n");
  let start = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
  const end = start + (lines[line - 1] || "").length;
  ta.focus();
  ta.setSelectionRange(start, end);
  const lh = parseFloat(getComputedStyle(ta).lineHeight) || 18;
  ta.scrollTop = Math.max(0, (line - 3) * lh);
}

async function pagePolicy(root) {
  const pol = await api("GET", "/policy");
  const ta = el("textarea", { id: "policy-text", spellcheck: "false",
                              value: pol.policy == null ? "{\n  // HuJSON policy\n}\n" : pol.policy });
  const errors = el("div", { id: "policy-errors" });
  const save = el("button", { class: "primary", type: "button", onclick: async () => {
    errors.replaceChildren();
    try {
      const r = await api("PUT", "/policy", ta.value, true);
      flash(`Policy saved (version ${r.id})`);
      show();
    } catch (e) {
      const list = (e.body && e.body.errors) || [];
      if (!list.length) return fail(e);
      flash("The policy was not saved: fix the errors below", "error");
      errors.replaceChildren(el("ul", { class: "errors" }, list.map((x) =>
        el("li", { "data-line": x.line, onclick: () => selectLine(ta, x.line) },
           x.line ? `line ${x.line}${x.column ? `, column ${x.column}` : ""}: ` : "", x.message))));
      if (list[0].line) selectLine(ta, list[0].line);
    }
  } }, "Save policy");
  root.replaceChildren(el("h2", {}, "Policy"),
    el("p", { class: "muted" }, pol.updated ? `In force since ${when(pol.updated)} (version ${pol.id}).`
                                            : "No policy stored yet: every node may reach every other."),
    errors, ta, el("p", {}, save));
}

// ---- frame ----

const PAGES = { nodes: pageNodes, users: pageUsers, keys: pageKeys, approvals: pageApprovals,
                policy: pagePolicy };

function setPending(n) {
  document.getElementById("pending-count").textContent = n ? String(n) : "";
}

async function loadInfo() {
  try {
    const info = await api("GET", "/info");
    const c = info.counts || {};
    document.getElementById("server-info").textContent =
      `${info.server_url || ""} · ${c.nodes ?? "?"} nodes` +
      (c.nodes_online != null ? ` (${c.nodes_online} online)` : "") + ` · mod_ts2021 ${info.version || ""}`;
    setPending(c.registrations_pending || 0);
  } catch (e) { fail(e); }
}

let busy = false;

async function show() {
  const name = (location.hash || "#nodes").slice(1);
  const fn = PAGES[name] || pageNodes;
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("active", a.dataset.page === (PAGES[name] ? name : "nodes"));
  }
  const root = document.getElementById("page");
  busy = true;
  try {
    await fn(root);
    root.dataset.loaded = name;
  } catch (e) {
    fail(e);
    root.replaceChildren(el("p", { class: "bad" }, e.message));
    root.dataset.loaded = "error";
  } finally {
    busy = false;
  }
  loadInfo();
}

window.addEventListener("hashchange", () => { flash(""); show(); });
// Lists refresh by themselves unless someone is typing.
setInterval(() => {
  const name = (location.hash || "#nodes").slice(1);
  const active = document.activeElement;
  if (busy || name === "policy" || name === "keys" || (active && /INPUT|TEXTAREA|SELECT/.test(active.tagName))) return;
  show();
}, 15000);
show();
