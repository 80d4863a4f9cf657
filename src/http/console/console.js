// keywatch triage console: plain JavaScript, no build step, no network
// beyond this keywatch's own API.
"use strict";

const DETECTORS = {
  new_source: "Used from a new network",
  new_user_agent: "New client software",
  new_action: "New kind of call",
  rate_spike: "Far more requests than usual",
  error_spike: "Far more failures than usual",
  source_fanout: "Used from many places at once",
  dormant_revival: "Unused key used again",
  unknown_key: "Key not in the inventory",
  expired_key: "Expired key used",
  outside_allowlist: "Used outside its allowed networks",
  usage_cap: "Over its usage cap",
  one_time_reuse: "One-time key used again",
  scope_violation: "Call outside its allowed scope",
  new_identity_sensitive_action: "New identity doing something sensitive",
};
const STATUSES = {
  open: "Open", acknowledged: "Looking at it", resolved: "Resolved",
  expected: "Expected (normal)", false_positive: "False positive", confirmed: "Confirmed compromise",
};
const SEVERITIES = ["critical", "high", "medium", "low", "info"];
const TACTICS = {
  initial_access: "Initial access", discovery: "Discovery", execution: "Execution",
  persistence: "Persistence", privilege_escalation: "Privilege escalation",
  credential_access: "Credential access", defense_evasion: "Defense evasion",
  lateral_movement: "Lateral movement", exfiltration: "Exfiltration", impact: "Impact",
};
const INCIDENT_STATUSES = { open: "Open", resolved: "Resolved" };

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const words = (k) => String(k).replace(/_s$/, " (seconds)").replace(/_/g, " ");
const detectorText = (d) => DETECTORS[d] || words(d);
const sev = (s) => `<span class="sev ${esc(s)}">${esc(s)}</span>`;
const statusBadge = (s) => `<span class="status ${esc(s)}">${esc(STATUSES[s] || s || "open")}</span>`;
const when = (t) => {
  const d = new Date(t);
  return isNaN(d) ? esc(t) : esc(d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC"));
};

// ---- session: the token (or password) and name, for this tab only; who
// the server says we are (`/api/v1/whoami`: a proxy's single sign-on needs
// nothing stored here).
const session = {
  get token() { return sessionStorage.getItem("keywatch.token") || ""; },
  get who() { return sessionStorage.getItem("keywatch.who") || ""; },
  get scheme() { return sessionStorage.getItem("keywatch.scheme") || "Bearer"; },
  me: null,
  set(token, who, scheme) {
    if (token) sessionStorage.setItem("keywatch.token", token); else sessionStorage.removeItem("keywatch.token");
    if (who) sessionStorage.setItem("keywatch.who", who);
    sessionStorage.setItem("keywatch.scheme", scheme || "Bearer");
  },
  // The Authorization header: a bearer token, or basic auth with the name.
  authorization() {
    if (!this.token) return null;
    if (this.scheme !== "Basic") return "Bearer " + this.token;
    const bytes = new TextEncoder().encode(`${this.who}:${this.token}`);
    return "Basic " + btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
  },
  // What the signed-in role may do; unknown (not asked yet): let the server say.
  may(what) { return !this.me || !this.me.signed_in || !!(this.me.may || {})[what]; },
};

// The name to assign a finding to: the signed-in user's, or the one typed
// beside the shared token.
function signedInName() {
  const me = session.me;
  return me && me.signed_in && me.method !== "api_token" ? me.user : session.who;
}

async function refreshMe() {
  try { session.me = await api("/api/v1/whoami"); } catch (e) {
    session.me = null;
    // A stored token that no longer works (revoked, expired password): forget it.
    if (e.status === 401 && session.token) {
      sessionStorage.removeItem("keywatch.token");
      return refreshMe();
    }
  }
  showLogin();
  return session.me;
}

function showLogin() {
  const me = session.me;
  const signed = !!(me && me.signed_in);
  const viaStored = signed && ["token", "basic", "api_token"].includes(me.method);
  let label = me && me.reads_need_identity ? "Signed out: sign in to see findings" : "Signed out: read only";
  if (signed && me.method === "api_token") label = `Signed in with the API token${session.who ? " as " + session.who : ""}`;
  else if (signed) label = `Signed in as ${me.user} (${me.role}, ${words(me.method)})`;
  $("#who-label").textContent = label;
  $("#who").hidden = signed && me.method !== "api_token";
  $("#token").hidden = signed;
  $("#login-button").hidden = signed;
  $("#who").value = session.who;
  $("#logout").hidden = !viaStored;
  // Hides what the role may not do (console.css).
  document.body.dataset.may = !signed ? "" : me.may.respond ? "respond" : "read";
}

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 4000);
}

async function api(path, opts = {}) {
  const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
  if (opts.body) headers["Content-Type"] = "application/json";
  const auth = session.authorization();
  if (auth) headers["Authorization"] = auth;
  const res = await fetch(path, { method: opts.method || "GET", headers, body: opts.body });
  const type = res.headers.get("content-type") || "";
  const body = type.includes("json") ? await res.json() : await res.text();
  if (!res.ok) {
    const msg = (body && body.error) || res.statusText;
    const err = new Error(msg);
    err.status = res.status;
    throw err;
  }
  return body;
}

// ---- verdicts
async function giveVerdict(id, status, extra = {}) {
  if (!session.may("respond")) {
    toast(`Your role (${session.me.role}) may look, not give verdicts.`);
    return false;
  }
  if (!session.token && !(session.me && session.me.signed_in)) {
    toast("Sign in (top right) to give a verdict.");
    $("#token").focus();
    return false;
  }
  const body = Object.assign({ status, by: session.who || "console" }, extra);
  try {
    const r = await api(`/api/v1/findings/${encodeURIComponent(id)}/verdict`, { method: "POST", write: true, body: JSON.stringify(body) });
    const e = r.effect || {};
    let text = `Marked ${STATUSES[status] || status}.`;
    if (e.taught) text += ` The key now treats ${lessonText(e.taught)} as normal.`;
    if (e.suppression_id !== undefined) text += ` Suppression #${e.suppression_id} created (see Suppressions).`;
    if (e.renotified) text += " Sent again to the alert sinks as critical.";
    if (r.response === "queued") text += " Response rules act on the key: see the audit trail.";
    toast(text);
    return true;
  } catch (err) {
    toast(err.status === 401 ? "Your sign-in was refused: sign in again." : `Not done: ${err.message}`);
    return false;
  }
}

function lessonText(l) {
  switch (l.kind) {
    case "network": return `the network of ${l.source}`;
    case "user_agent": return `the client ${l.family}`;
    case "action": return `the call ${l.action}`;
    case "rate_level": return `up to ${l.floor} requests per bucket`;
    default: return JSON.stringify(l);
  }
}

// Buttons for a finding: one click for most verdicts, two for a false
// positive (what to mute).
function verdictButtons(f) {
  const id = esc(f.id);
  return `<span class="actions" data-id="${id}">
    <button data-verdict="expected" title="This is normal for the key: teach its baseline (x)">Expected</button>
    <button data-verdict="false_positive" title="The detector was wrong: mute it for a week (f)">False positive…</button>
    <button data-verdict="confirmed" class="danger" title="A real compromise: page at critical (c)">Confirmed</button>
    <button data-verdict="resolved" title="Dealt with (r)">Resolve</button>
  </span>`;
}

function scopeMenu(span, f) {
  const id = span.dataset.id;
  span.innerHTML = `<span class="menu">Mute for 7 days:
    <button data-scope="key">this key</button>
    ${f.principal ? '<button data-scope="principal">this principal</button>' : ""}
    ${/^[0-9a-fA-F:.]+$/.test((f.sample || {}).source || "") ? '<button data-scope="network">this network</button>' : ""}
    <button data-scope="">cancel</button></span>`;
  span.dataset.id = id;
}

async function onVerdictClick(ev, lookup, after) {
  const menu = ev.target.closest(".menu");
  const b = ev.target.closest("button");
  if (!b) return false;
  const span = b.closest("[data-id]");
  if (!span) return false;
  ev.stopPropagation();
  const f = lookup(span.dataset.id);
  if (b.dataset.verdict === "false_positive") { scopeMenu(span, f || {}); return true; }
  if (b.dataset.scope !== undefined) {
    if (b.dataset.scope) await giveVerdict(span.dataset.id, "false_positive", { scope: b.dataset.scope, expires_in: "7d" });
    if (menu) menu.remove();
    after();
    return true;
  }
  if (b.dataset.verdict && await giveVerdict(span.dataset.id, b.dataset.verdict)) after();
  return true;
}

// ---- findings list
const list = { items: [], selected: 0, timer: null, filters: {} };

function filterForm() {
  const f = list.filters;
  const opts = (all, cur, label) => `<option value="">${label}</option>` +
    Object.entries(all).map(([k, v]) => `<option value="${esc(k)}" ${cur === k ? "selected" : ""}>${esc(v)}</option>`).join("");
  return `<form class="filters" id="filters">
    <label>Severity at least<select name="severity">${opts(Object.fromEntries(SEVERITIES.map((s) => [s, s])), f.severity, "any")}</select></label>
    <label>What happened<select name="detector">${opts(DETECTORS, f.detector, "anything")}</select></label>
    <label>Status<select name="status">${opts(STATUSES, f.status, "any")}</select></label>
    <label>Key<input name="key_id" value="${esc(f.key_id || "")}" placeholder="key id"></label>
    <label>Principal<input name="principal" value="${esc(f.principal || "")}" placeholder="user or role"></label>
    <label>Team<input name="team" value="${esc(f.team || "")}" placeholder="owning team"></label>
    <button type="submit" class="primary">Filter</button>
    <button type="button" id="clear">Clear</button>
    <span class="muted" id="count"></span>
  </form>`;
}

async function loadFindings() {
  const p = new URLSearchParams({ limit: "200" });
  for (const [k, v] of Object.entries(list.filters)) if (v) p.set(k, v);
  const body = await api("/api/v1/findings?" + p);
  showBehind(body.store_behind);
  const items = (body.findings || []).slice().reverse();
  // Re-drawn only when something changed, and never under an open menu.
  const sig = items.map((f) => `${f.id}:${f.status}:${f.repeats}`).join(",");
  if (sig === list.sig && $("#rows tr")) return;
  if ($("#rows .menu")) return;
  list.sig = sig;
  list.items = items;
  if (list.selected >= list.items.length) list.selected = Math.max(0, list.items.length - 1);
  renderRows();
}

// The store cannot write: the list may be missing the newest findings.
function showBehind(b) {
  const el = $("#behind");
  if (!el) return;
  el.hidden = !b;
  if (b) {
    el.textContent = `The findings store is behind: it has not been able to write for ${b.seconds} s ` +
      `(${b.error}). ${b.unwritten} finding${b.unwritten === 1 ? " is" : "s are"} held and retried, ` +
      `so this list may be missing the newest; the alert channels have them.`;
  }
}

function renderRows() {
  const tbody = $("#rows");
  if (!tbody) return;
  $("#count").textContent = `${list.items.length} finding${list.items.length === 1 ? "" : "s"}, newest first; updates every 3 s`;
  if (!list.items.length) {
    tbody.innerHTML = `<tr><td colspan="7" class="empty">No findings match yet. The demo's first ones appear after its warm-up (about half a minute).</td></tr>`;
    return;
  }
  tbody.innerHTML = list.items.map((f, i) => `<tr class="finding ${i === list.selected ? "selected" : ""}" data-i="${i}" data-key="${esc(f.key_id)}" data-detector="${esc(f.detector)}" data-status="${esc(f.status || "open")}">
      <td>${sev(f.severity)}</td>
      <td class="muted">${when(f.observed_at)}</td>
      <td>${esc(detectorText(f.detector))}</td>
      <td><a href="#/key/${encodeURIComponent(f.key_id)}">${esc(f.key_id)}</a></td>
      <td class="summary">${esc(f.summary)}</td>
      <td>${statusBadge(f.status)}${f.repeats > 1 ? ` <span class="muted">×${f.repeats}</span>` : ""}</td>
      <td>${verdictButtons(f)}</td>
    </tr>`).join("");
}

async function viewFindings() {
  $("#view").innerHTML = `<h1>Findings</h1><p id="behind" class="behind" role="alert" hidden></p>${filterForm()}
    <table><thead><tr><th>Severity</th><th>When (event time)</th><th>What happened</th><th>Key</th><th>Summary</th><th>Status</th><th>Verdict</th></tr></thead>
    <tbody id="rows"><tr><td colspan="7" class="empty">Loading…</td></tr></tbody></table>`;
  $("#filters").addEventListener("submit", (e) => {
    e.preventDefault();
    list.filters = Object.fromEntries(new FormData(e.target).entries());
    list.selected = 0;
    list.sig = null;
    loadFindings().catch(showError);
  });
  // A fresh table: drawn whether or not the list changed since last shown.
  list.sig = null;
  $("#clear").addEventListener("click", () => { list.filters = {}; list.sig = null; viewFindings(); });
  $("#rows").addEventListener("click", async (e) => {
    if (e.target.closest("a")) return;
    const handled = await onVerdictClick(e, (id) => list.items.find((f) => f.id === id), () => { list.sig = null; loadFindings().catch(showError); });
    if (handled) return;
    const tr = e.target.closest("tr.finding");
    if (tr) location.hash = "#/finding/" + encodeURIComponent(list.items[+tr.dataset.i].id);
  });
  await loadFindings();
  list.timer = setInterval(() => loadFindings().catch(() => {}), 3000);
}

// ---- incidents: one identity's findings while they keep arriving
const incidents = { items: [], selected: 0, filters: {} };
const chain = (ts) => (ts || []).map((t) => `<span class="tactic">${esc(TACTICS[t] || words(t))}</span>`).join(" → ");

// A verdict on an incident is given on each of its findings: `expected`
// teaches each what it showed; `confirmed` marks the key compromised once
// (on the first finding; the others are acknowledged with a note), so the
// incident pages at critical once, not once per finding.
async function incidentVerdict(inc, status) {
  const ids = (inc.timeline || []).map((s) => s.finding_id);
  if (!ids.length) return false;
  if (status !== "confirmed") {
    let ok = true;
    for (const id of ids) ok = (await giveVerdict(id, status)) && ok;
    return ok;
  }
  if (!(await giveVerdict(ids[0], "confirmed"))) return false;
  for (const id of ids.slice(1)) await giveVerdict(id, "acknowledged", { note: `confirmed with incident ${inc.id}` });
  return true;
}

function incidentButtons(inc) {
  return `<span class="incident-actions" data-incident="${esc(inc.id)}">
    <button data-verdict="expected" title="Normal for these keys: teach each finding's baseline (x)">Expected</button>
    <button data-verdict="confirmed" class="danger" title="A real compromise: mark the key compromised once (c)">Confirmed</button>
    <button data-verdict="resolved" title="Dealt with: resolve every finding (r)">Resolve</button>
  </span>`;
}

function incidentFilterForm() {
  const f = incidents.filters;
  const opts = (all, cur, label) => `<option value="">${label}</option>` +
    Object.entries(all).map(([k, v]) => `<option value="${esc(k)}" ${cur === k ? "selected" : ""}>${esc(v)}</option>`).join("");
  return `<form class="filters" id="incident-filters">
    <label>Severity at least<select name="severity">${opts(Object.fromEntries(SEVERITIES.map((s) => [s, s])), f.severity, "any")}</select></label>
    <label>Tactic<select name="tactic">${opts(TACTICS, f.tactic, "any")}</select></label>
    <label>Status<select name="status">${opts(INCIDENT_STATUSES, f.status, "any")}</select></label>
    <label>Key<input name="key_id" value="${esc(f.key_id || "")}" placeholder="key id"></label>
    <label>Identity<input name="identity" value="${esc(f.identity || "")}" placeholder="key or principal"></label>
    <button type="submit" class="primary">Filter</button>
    <button type="button" id="incident-clear">Clear</button>
    <span class="muted" id="incident-count"></span>
  </form>`;
}

async function loadIncidents() {
  const p = new URLSearchParams({ limit: "200" });
  for (const [k, v] of Object.entries(incidents.filters)) if (v) p.set(k, v);
  const body = await api("/api/v1/incidents?" + p);
  const items = body.incidents || [];
  const sig = items.map((i) => `${i.id}:${i.revision}:${i.status}`).join(",");
  if (sig === incidents.sig && $("#incident-rows tr")) return;
  incidents.sig = sig;
  incidents.items = items;
  if (incidents.selected >= items.length) incidents.selected = Math.max(0, items.length - 1);
  renderIncidentRows();
}

function renderIncidentRows() {
  const tbody = $("#incident-rows");
  if (!tbody) return;
  $("#incident-count").textContent = `${incidents.items.length} incident${incidents.items.length === 1 ? "" : "s"}, latest first; updates every 3 s`;
  if (!incidents.items.length) {
    tbody.innerHTML = `<tr><td colspan="8" class="empty">No incidents match yet. The demo's first ones appear after its warm-up (about half a minute).</td></tr>`;
    return;
  }
  tbody.innerHTML = incidents.items.map((inc, i) => `<tr class="incident ${i === incidents.selected ? "selected" : ""}" data-i="${i}" data-id="${esc(inc.id)}" data-identity="${esc(inc.identity)}" data-keys="${esc((inc.key_ids || []).join(" "))}" data-status="${esc(inc.status)}">
      <td>${sev(inc.severity)}${inc.attack_sequence ? ' <span class="sequence">attack sequence</span>' : ""}</td>
      <td><a href="#/incidents/${encodeURIComponent(inc.id)}">${esc(inc.identity)}</a></td>
      <td>${chain(inc.tactics) || '<span class="muted">none mapped</span>'}</td>
      <td class="muted">${when(inc.first_seen)}</td>
      <td class="muted">${when(inc.last_seen)}</td>
      <td>${esc(inc.findings)}</td>
      <td><span class="status ${esc(inc.status)}">${esc(INCIDENT_STATUSES[inc.status] || inc.status)}</span></td>
      <td>${incidentButtons(inc)}</td>
    </tr>`).join("");
}

async function onIncidentVerdictClick(ev, after) {
  const b = ev.target.closest("button[data-verdict]");
  const span = b && b.closest("[data-incident]");
  if (!span) return false;
  ev.stopPropagation();
  const inc = incidents.items.find((i) => i.id === span.dataset.incident) || incidents.current;
  if (inc && await incidentVerdict(inc, b.dataset.verdict)) after();
  return true;
}

async function viewIncidents() {
  $("#view").innerHTML = `<h1>Incidents</h1><p class="muted">One identity's findings while they keep arriving (an hour apart at most), with a combined severity and the ATT&amp;CK tactics they show. A verdict here is given on every finding of the incident.</p>${incidentFilterForm()}
    <table><thead><tr><th>Severity</th><th>Identity</th><th>Tactics</th><th>First seen</th><th>Last seen</th><th>Findings</th><th>Status</th><th>Verdict</th></tr></thead>
    <tbody id="incident-rows"><tr><td colspan="8" class="empty">Loading…</td></tr></tbody></table>`;
  $("#incident-filters").addEventListener("submit", (e) => {
    e.preventDefault();
    incidents.filters = Object.fromEntries(new FormData(e.target).entries());
    incidents.selected = 0;
    incidents.sig = null;
    loadIncidents().catch(showError);
  });
  incidents.sig = null;
  $("#incident-clear").addEventListener("click", () => { incidents.filters = {}; incidents.sig = null; viewIncidents(); });
  $("#incident-rows").addEventListener("click", async (e) => {
    if (e.target.closest("a")) return;
    if (await onIncidentVerdictClick(e, () => { incidents.sig = null; loadIncidents().catch(showError); })) return;
    const tr = e.target.closest("tr.incident");
    if (tr) location.hash = "#/incidents/" + encodeURIComponent(incidents.items[+tr.dataset.i].id);
  });
  await loadIncidents();
  list.timer = setInterval(() => loadIncidents().catch(() => {}), 3000);
}

async function viewIncident(id) {
  const body = await api("/api/v1/incidents/" + encodeURIComponent(id));
  const inc = body.incident;
  incidents.current = inc;
  const statusOf = Object.fromEntries((body.findings || []).map((f) => [f.id, f.status]));
  const key = (inc.key_ids || [])[0] || inc.identity;
  $("#view").innerHTML = `<p><a href="#/incidents">← All incidents</a></p>
    <h1>${sev(inc.severity)} Incident on ${esc(inc.entity === "principal" ? "principal" : "key")} ${esc(inc.identity)}${inc.attack_sequence ? ' <span class="sequence">attack sequence</span>' : ""}</h1>
    <div class="card"><p class="lead">${esc(inc.summary)}</p>
      <p><span class="status ${esc(inc.status)}">${esc(INCIDENT_STATUSES[inc.status] || inc.status)}</span>
      <span class="muted">${when(inc.first_seen)} → ${when(inc.last_seen)}, ${esc(inc.findings)} finding${inc.findings === 1 ? "" : "s"}, score ${esc(Number(inc.score).toFixed(2))}</span></p>
      <p>Tactics: ${chain(inc.tactics) || '<span class="muted">none mapped</span>'}</p>
      <p id="incident-verdict">${incidentButtons(inc)}</p></div>
    <div class="grid"><div>
      <h2>Timeline</h2>
      <table id="timeline-steps"><thead><tr><th>When (event time)</th><th>Severity</th><th>What happened</th><th>Tactics</th><th>Call</th><th>From</th><th>Status</th></tr></thead><tbody>
      ${(inc.timeline || []).map((st) => `<tr class="finding step" data-id="${esc(st.finding_id)}" data-href="#/findings/${encodeURIComponent(st.finding_id)}">
        <td class="muted">${when(st.observed_at)}</td><td>${sev(st.severity)}</td><td>${esc(detectorText(st.detector))}</td>
        <td>${chain(st.tactics)}</td><td>${esc(st.action || "")}</td><td>${esc(st.source || "")}</td><td>${statusBadge(statusOf[st.finding_id])}</td></tr>`).join("")}
      </tbody></table>
      <h2>Involved</h2><div class="card">${table({ keys: inc.key_ids, principal: inc.principal, networks: inc.networks, clients: inc.clients, actions: inc.actions })}</div>
    </div><div>
      <h2>Key <a href="#/key/${encodeURIComponent(key)}">${esc(key)}</a>: its baseline</h2><div class="card" id="baseline"><span class="muted">Loading…</span></div>
      <h2>Requests against the baseline</h2><div class="card" id="chart"><span class="muted">Loading…</span></div>
    </div></div>`;
  $("#incident-verdict").addEventListener("click", (e) => onIncidentVerdictClick(e, () => route()));
  api("/api/v1/keys/" + encodeURIComponent(key)).then((k) => {
    $("#baseline").innerHTML = `<dl class="kv"><dt>First used</dt><dd>${when(k.first_seen)}</dd><dt>Events</dt><dd>${esc(k.events)} on ${esc(k.active_days)} days</dd></dl>${table(k.baseline)}`;
  }).catch((e) => { $("#baseline").innerHTML = `<span class="muted">No baseline here: ${esc(e.message)}</span>`; });
  api(`/api/v1/keys/${encodeURIComponent(key)}/rate`).then((r) => { $("#chart").innerHTML = rateChart(r, null); })
    .catch((e) => { $("#chart").innerHTML = `<span class="muted">No rate baseline: ${esc(e.message)}</span>`; });
}

// ---- one finding
function table(obj) {
  if (obj === null || obj === undefined || obj === "") return '<span class="muted">—</span>';
  if (Array.isArray(obj)) return obj.length ? obj.map((x) => (typeof x === "object" ? table(x) : esc(x))).join(", ") : '<span class="muted">none</span>';
  if (typeof obj !== "object") return esc(typeof obj === "boolean" ? (obj ? "yes" : "no") : obj);
  return `<dl class="kv">${Object.entries(obj).map(([k, v]) => `<dt>${esc(words(k))}</dt><dd>${table(v)}</dd>`).join("")}</dl>`;
}

function evidenceTable(f) {
  const e = f.evidence || {};
  const rows = [
    ["What was seen", e.observed],
    ["What is normal for this key", e.baseline],
    ["The line it crossed", e.threshold],
    ["Why the key could alert", e.eligibility],
  ];
  for (const [k, v] of Object.entries(e)) {
    if (!["observed", "baseline", "threshold", "eligibility"].includes(k)) rows.push([words(k), v]);
  }
  return `<table>${rows.map(([k, v]) => `<tr><th class="w14">${esc(k)}</th><td>${table(v)}</td></tr>`).join("")}</table>`;
}

function rateChart(rate, f) {
  const exp = rate.expected_per_bucket_by_hour_utc || [];
  const cur = rate.current || {};
  const seen = f && f.detector === "rate_spike" ? (f.evidence.observed.requests ?? null) : null;
  const seenHour = f ? new Date(f.observed_at).getUTCHours() : null;
  const max = Math.max(1, ...exp, cur.requests_in_bucket || 0, cur.threshold || 0, seen || 0) * 1.1;
  const W = 480, H = 160, L = 34, B = 20;
  const x = (h) => L + (h + 0.5) * (W - L) / 24;
  const y = (v) => H - B - v / max * (H - B - 8);
  const line = exp.map((v, h) => `${h ? "L" : "M"}${x(h).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  let s = `<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="Requests per bucket by hour: expected against observed">`;
  for (const t of [0, 0.5, 1]) s += `<line x1="${L}" x2="${W}" y1="${y(max / 1.1 * t)}" y2="${y(max / 1.1 * t)}" stroke="#eee"/><text x="2" y="${y(max / 1.1 * t) + 3}">${Math.round(max / 1.1 * t)}</text>`;
  for (let h = 0; h < 24; h += 6) s += `<text x="${x(h) - 6}" y="${H - 5}">${String(h).padStart(2, "0")}:00</text>`;
  s += `<path d="${line}" fill="none" stroke="#2e6fb7" stroke-width="2"/>`;
  if (cur.threshold) s += `<line x1="${x(cur.hour_utc) - 8}" x2="${x(cur.hour_utc) + 8}" y1="${y(cur.threshold)}" y2="${y(cur.threshold)}" stroke="#c62828" stroke-dasharray="3 2"/>`;
  s += `<circle cx="${x(cur.hour_utc)}" cy="${y(cur.requests_in_bucket || 0)}" r="4" fill="#1d1d1b"><title>now: ${cur.requests_in_bucket} requests</title></circle>`;
  if (seen !== null) s += `<circle cx="${x(seenHour)}" cy="${y(seen)}" r="5" fill="#c62828"><title>this finding: ${seen} requests</title></circle>`;
  s += `</svg><div class="muted">Blue: requests per ${rate.bucket_s / 60}-minute bucket the key's baseline expects at each hour (UTC). Black dot: the current bucket; dashed red: where it would alert${seen !== null ? "; red dot: what this finding saw" : ""}.</div>`;
  return s;
}

async function viewFinding(id) {
  const f = await api("/api/v1/findings/" + encodeURIComponent(id));
  const who = f.principal ? ` held by ${esc(f.principal)}` : "";
  $("#view").innerHTML = `<p><a href="#/findings">← All findings</a></p>
    <h1>${sev(f.severity)} ${esc(detectorText(f.detector))} — key <a href="#/key/${encodeURIComponent(f.key_id)}">${esc(f.key_id)}</a>${who}</h1>
    <div class="card"><p class="lead">${esc(f.summary)}</p>
      <p>${statusBadge(f.status)} ${f.assignee ? `<span class="muted">assigned to ${esc(f.assignee)}</span>` : ""}
      <span class="muted">seen ${when(f.observed_at)}${f.repeats > 1 ? `, raised ${f.repeats} times` : ""}${f.team ? `, team ${esc(f.team)}` : ""}</span></p>
      <p id="verdict">${verdictButtons(f)}</p>
      <p class="write"><label>Note for the audit trail: <input id="note" size="50" placeholder="optional"></label>
      <button id="ack">Acknowledge (a)</button></p></div>
    <div class="grid"><div>
      <h2>Evidence</h2>${evidenceTable(f)}
      <h2>The event that raised it</h2><div class="card">${table(f.sample)}</div>
      <h2>Audit trail</h2>${(f.audit || []).length ? `<table>${f.audit.map((a) => `<tr><td class="muted">${when(a.at)}</td><td>${esc(a.who)}</td><td>${esc(words(a.action))}</td><td>${table(a.detail)}</td><td class="muted">${esc(a.remote)}<br>${esc(a.user_agent)}</td></tr>`).join("")}</table>` : '<p class="muted">No verdict yet.</p>'}
    </div><div>
      <h2>Requests against the baseline</h2><div class="card" id="chart"><span class="muted">Loading…</span></div>
      <h2>This key's recent findings</h2><div id="timeline" class="muted">Loading…</div>
    </div></div>`;
  const refresh = () => route();
  $("#verdict").addEventListener("click", (e) => onVerdictClick(e, () => f, refresh));
  $("#ack").addEventListener("click", async () => { if (await giveVerdict(f.id, "acknowledged", { assignee: signedInName() || undefined, note: $("#note").value || undefined })) refresh(); });
  api(`/api/v1/keys/${encodeURIComponent(f.key_id)}/rate`).then((r) => { $("#chart").innerHTML = rateChart(r, f); })
    .catch((e) => { $("#chart").innerHTML = `<span class="muted">No rate baseline: ${esc(e.message)}</span>`; });
  api(`/api/v1/findings?key_id=${encodeURIComponent(f.key_id)}&limit=20`).then((b) => {
    const items = (b.findings || []).slice().reverse();
    $("#timeline").innerHTML = `<table>${items.map((x) => `<tr class="finding" data-href="#/finding/${encodeURIComponent(x.id)}"><td class="muted">${when(x.observed_at)}</td><td>${sev(x.severity)}</td><td>${esc(detectorText(x.detector))}${x.id === f.id ? " <b>(this one)</b>" : ""}</td><td>${statusBadge(x.status)}</td></tr>`).join("")}</table>`;
  }).catch(() => {});
}

// ---- a key
async function viewKey(key) {
  let k;
  try { k = await api("/api/v1/keys/" + encodeURIComponent(key)); } catch (e) {
    $("#view").innerHTML = `<p><a href="#/findings">← All findings</a></p><h1>Key ${esc(key)}</h1><p class="empty">${esc(e.message)}</p>`;
    return;
  }
  const taught = k.taught || [];
  $("#view").innerHTML = `<p><a href="#/findings">← All findings</a></p>
    <h1>Key ${esc(key)} <span id="compromised"></span></h1>
    <div class="grid"><div>
      <div class="card"><dl class="kv"><dt>First used</dt><dd>${when(k.first_seen)}</dd><dt>Last used</dt><dd>${when(k.last_seen)}</dd>
        <dt>Events</dt><dd>${esc(k.events)} on ${esc(k.active_days)} days</dd><dt>Learning</dt><dd>${esc(k.learning)}</dd></dl></div>
      <h2>What each detector would do now</h2>
      <table>${Object.entries(k.detectors || {}).map(([d, s]) => `<tr><th class="w16">${esc(detectorText(d))}</th><td>${esc(s)}</td></tr>`).join("")}</table>
      <h2>Taught by responders</h2>
      ${taught.length ? `<table>${taught.map((t) => `<tr><td><span class="taught">${esc(lessonText(t))}</span> is normal</td><td>taught by <b>${esc(t.by)}</b></td><td class="muted">${when(t.at)}</td><td><a href="#/finding/${encodeURIComponent(t.finding_id)}">from this finding</a></td></tr>`).join("")}</table>` : '<p class="muted">Nothing yet: marking one of its findings “Expected” teaches it.</p>'}
      <h2>Baseline</h2>${table(k.baseline)}
    </div><div>
      <h2>Requests against the baseline</h2><div class="card" id="chart"></div>
      <h2>Recent findings</h2><div id="timeline" class="muted">Loading…</div>
    </div></div>`;
  api(`/api/v1/keys/${encodeURIComponent(key)}/rate`).then((r) => { $("#chart").innerHTML = rateChart(r, null); }).catch(() => {});
  api(`/api/v1/findings?key_id=${encodeURIComponent(key)}&limit=30`).then((b) => {
    const items = (b.findings || []).slice().reverse();
    $("#timeline").innerHTML = items.length ? `<table>${items.map((x) => `<tr class="finding" data-href="#/finding/${encodeURIComponent(x.id)}"><td class="muted">${when(x.observed_at)}</td><td>${sev(x.severity)}</td><td>${esc(detectorText(x.detector))}</td><td>${statusBadge(x.status)}</td></tr>`).join("")}</table>` : "None.";
  }).catch(() => {});
  api("/api/v1/compromised").then((b) => {
    if ((b.keys || []).includes(key)) $("#compromised").innerHTML = '<span class="compromised">— confirmed compromised</span>';
  }).catch(() => {});
}

// ---- suppressions
async function viewSuppressions() {
  const b = await api("/api/v1/suppressions");
  const rows = b.suppressions || [];
  $("#view").innerHTML = `<h1>Suppressions</h1><p class="muted">Rules that keep findings from reaching the alert sinks (they are still listed here and in the findings). “False positive” verdicts add one with an expiry.</p>
    ${rows.length ? `<table id="suppressions"><thead><tr><th>#</th><th>From</th><th>Key</th><th>Principal</th><th>What</th><th>Network</th><th>Until</th><th>Why</th><th></th></tr></thead><tbody>
    ${rows.map((r) => `<tr data-id="${esc(r.id)}"><td>${esc(r.id)}</td><td>${esc(r.origin === "api" ? "verdict / API" : "config file")}</td><td>${esc(r.key || "any")}</td><td>${esc(r.principal || "any")}</td><td>${esc(r.detector ? detectorText(r.detector) : "anything")}</td><td>${esc(r.source_network || "any")}</td><td>${r.expires ? when(r.expires) : "no end"}</td><td>${esc(r.reason || "")}</td><td>${r.origin === "api" ? '<button class="remove">Remove</button>' : ""}</td></tr>`).join("")}</tbody></table>` : '<p class="empty">No suppressions.</p>'}`;
  const t = $("#suppressions");
  if (t) t.addEventListener("click", async (e) => {
    const b = e.target.closest("button.remove");
    if (!b) return;
    if (!session.token && !(session.me && session.me.signed_in)) { toast("Sign in to remove a suppression."); return; }
    try {
      await api("/api/v1/suppressions/" + b.closest("tr").dataset.id, { method: "DELETE", write: true });
      toast("Suppression removed.");
      viewSuppressions();
    } catch (err) { toast(`Not done: ${err.message}`); }
  });
}

// ---- review
async function viewReview() {
  $("#view").innerHTML = `<h1>Key security review</h1><div id="comp"></div><h2>Past reviews</h2><div id="past" class="muted">Loading…</div><h2>Now</h2><div id="review" class="muted">Loading…</div>`;
  api("/api/v1/reviews").then((b) => {
    const list = b.reviews || [];
    const keys = (ks) => ks.length ? ks.map((k) => `<a href="#/key/${encodeURIComponent(k)}">${esc(k)}</a>`).join(", ") : '<span class="muted">none</span>';
    $("#past").innerHTML = list.length ? `<table id="reviews"><tr><th>Review</th><th>Listed</th><th>Unknown</th><th>Stale</th><th>Rotation overdue</th><th>Changes since the previous one</th></tr>${list.map((r) => {
      const c = r.changes;
      const changes = c.since ? `<b>new unknown</b>: ${keys(c.new_unknown)}<br><b>went stale</b>: ${keys(c.went_stale)}<br><b>rotated</b>: ${keys(c.rotated)}${c.added.length ? `<br><b>added</b>: ${keys(c.added)}` : ""}${c.removed.length ? `<br><b>removed</b>: ${keys(c.removed)}` : ""}` : '<span class="muted">the first review</span>';
      return `<tr class="review-row" data-seq="${r.seq}"><td>${when(r.generated_at)}</td><td>${r.summary.listed}</td><td>${r.summary.unknown}</td><td>${r.summary.stale}</td><td>${r.summary.rotation_overdue}</td><td>${changes}</td></tr>`;
    }).join("")}</table>` : '<p class="empty">No scheduled review yet ([review] every).</p>';
  }).catch((e) => { $("#past").innerHTML = `<p class="empty">${esc(e.message)}</p>`; });
  api("/api/v1/compromised").then((b) => {
    const keys = b.keys || [];
    $("#comp").innerHTML = `<div class="card"><b>Keys confirmed compromised</b> (until their findings are resolved): ${keys.length ? keys.map((k) => `<a class="compromised" href="#/key/${encodeURIComponent(k)}">${esc(k)}</a>`).join(", ") : "none"}</div>`;
  }).catch(() => {});
  try {
    const md = await api("/api/v1/review?format=markdown", { headers: { Accept: "text/markdown" } });
    $("#review").innerHTML = `<pre class="review">${esc(md)}</pre>`;
  } catch (e) {
    $("#review").innerHTML = `<p class="empty">${esc(e.message)}</p>`;
  }
}

// ---- routing, keys, login
function showError(e) {
  $("#view").innerHTML = `<p><a href="#/findings">← All findings</a></p><p class="empty">${esc(e.message)}</p>`;
}

async function route() {
  clearInterval(list.timer);
  const h = location.hash;
  const m = h.match(/#token=([^&]+)/);
  // The demo's link carries its token in the fragment, which a browser
  // never sends to a server; it is taken out of the address at once.
  if (m) { session.set(decodeURIComponent(m[1]), session.who, "Bearer"); history.replaceState(null, "", "#/incidents"); await refreshMe(); }
  const [, view, arg] = (location.hash.match(/^#\/([a-z]+)\/?(.*)$/) || [null, "incidents", ""]);
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === view));
  try {
    if (view === "finding" || (view === "findings" && arg)) await viewFinding(decodeURIComponent(arg));
    else if (view === "incidents" && arg) await viewIncident(decodeURIComponent(arg));
    else if (view === "incidents") {
      // With incidents off, the findings are the default view.
      try { await viewIncidents(); } catch (e) { if (e.status === 404) await viewFindings(); else throw e; }
    } else if (view === "key") await viewKey(decodeURIComponent(arg));
    else if (view === "suppressions") await viewSuppressions();
    else if (view === "review") await viewReview();
    else await viewFindings();
  } catch (e) { showError(e); }
}

document.addEventListener("keydown", async (e) => {
  if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
  const inIncidents = !!$("#incident-rows");
  const incident = inIncidents ? incidents.items[incidents.selected] : ($("#incident-verdict") ? incidents.current : null);
  const incidentVerdicts = { x: "expected", c: "confirmed", r: "resolved" };
  if (inIncidents && (e.key === "j" || e.key === "k")) {
    incidents.selected = Math.max(0, Math.min(incidents.items.length - 1, incidents.selected + (e.key === "j" ? 1 : -1)));
    renderIncidentRows();
    const row = $("tr.incident.selected");
    if (row) row.scrollIntoView({ block: "nearest" });
    return;
  }
  if (inIncidents && e.key === "Enter" && incident) { location.hash = "#/incidents/" + encodeURIComponent(incident.id); return; }
  if (incident && incidentVerdicts[e.key]) { if (await incidentVerdict(incident, incidentVerdicts[e.key])) route(); return; }
  if ($("#incident-verdict") && e.key === "Escape") { location.hash = "#/incidents"; return; }
  const inList = !!$("#rows");
  const current = () => {
    if (inList) return list.items[list.selected];
    const span = $("#verdict [data-id]");
    return span ? { id: span.dataset.id } : null;
  };
  const verdicts = { x: "expected", c: "confirmed", r: "resolved", a: "acknowledged" };
  if (inList && (e.key === "j" || e.key === "k")) {
    list.selected = Math.max(0, Math.min(list.items.length - 1, list.selected + (e.key === "j" ? 1 : -1)));
    renderRows();
    const row = $("tr.selected");
    if (row) row.scrollIntoView({ block: "nearest" });
  } else if (inList && e.key === "Enter" && list.items[list.selected]) {
    location.hash = "#/finding/" + encodeURIComponent(list.items[list.selected].id);
  } else if (e.key === "Escape") {
    location.hash = "#/findings";
  } else if (verdicts[e.key] && current()) {
    if (await giveVerdict(current().id, verdicts[e.key])) route();
  } else if (e.key === "f" && current()) {
    const span = inList ? $("tr.selected [data-id]") : $("#verdict [data-id]");
    if (span) scopeMenu(span, inList ? current() : {});
  }
});

// A token, or a name and password (basic auth): the token is tried first.
$("#login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const secret = $("#token").value.trim() || session.token, who = $("#who").value.trim();
  $("#token").value = "";
  if (!secret) { toast("Give a token, or your name and password, to sign in."); return; }
  session.set(secret, who, "Bearer");
  let me = await refreshMe();
  if (!(me && me.signed_in) && who) {
    session.set(secret, who, "Basic");
    me = await refreshMe();
  }
  if (me && me.signed_in) { toast("Signed in for this browser tab."); route(); return; }
  session.set("", who);
  await refreshMe();
  toast("Sign-in refused: wrong token, name or password.");
});
$("#who").addEventListener("change", () => session.set(session.token, $("#who").value.trim(), session.scheme));
$("#logout").addEventListener("click", async () => { sessionStorage.removeItem("keywatch.token"); await refreshMe(); route(); });
// Rows that open a page (no inline handlers: the page's policy forbids them).
document.addEventListener("click", (e) => {
  const row = e.target.closest("tr[data-href]");
  if (row && !e.target.closest("a, button")) location.hash = row.dataset.href;
});
window.addEventListener("hashchange", route);
refreshMe().then(route);
