// Bowline's status page: the ClusterSet drawn from /debug/overview (polled every second and
// redrawn when its version moves), with a page per service, member and proxy. Plain DOM and
// SVG, no library, nothing fetched from elsewhere.
"use strict";

const $main = document.getElementById("main");
let overview = null;
let drawn = { version: -1, route: null };

const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({
  "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
}[c]));

async function json(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

const STATE_PILL = {
  admitted: "ok", stale: "warn", withdrawn: "bad", pending: "idle", refused: "bad",
};
const CELL = {
  exported: "● exported", imported: "○ imported", conflict: "▲ conflict",
  "cluster-local": "⌂ cluster-local", "not-exported": "– not exported", absent: "·",
};

function pill(text, kind) { return `<span class="pill ${kind}">${esc(text)}</span>`; }

function proxyStates(p) {
  const order = [["CDS", "cluster.v3.Cluster"], ["LDS", "listener.v3.Listener"],
    ["EDS", "endpoint.v3.ClusterLoadAssignment"], ["RDS", "route.v3.RouteConfiguration"]];
  return order.map(([name, suffix]) => {
    const entry = Object.entries(p.types || {}).find(([url]) => url.endsWith(suffix));
    const state = entry ? entry[1].state : "NOT SENT";
    const kind = { SYNCED: "ok", STALE: "warn", NACKED: "bad" }[state] || "idle";
    return [name, state, kind, entry && entry[1].lastNack];
  });
}

// ---------------------------------------------------------------- the topology
function topology(o) {
  const W = 170, H = 64, GAP = 18, PAD = 22, TOP = 40, PER_ROW = 4;
  const byName = Object.fromEntries(o.members.map((m) => [m.name, m]));
  let x = 10;
  const boxes = [];
  for (const n of o.networks) {
    const cols = Math.max(1, Math.min(PER_ROW, n.members.length));
    const rows = Math.max(1, Math.ceil(n.members.length / PER_ROW));
    // Gateways stand on the network's right edge, their addresses beside them.
    const gatewaysWidth = n.gateways.length ? 190 : 0;
    const width = PAD * 2 + cols * W + (cols - 1) * GAP + gatewaysWidth;
    const height = Math.max(TOP + rows * (H + GAP) + PAD, TOP + n.gateways.length * 34 + PAD);
    boxes.push({ n, x, width, height, cols });
    x += width + 60;
  }
  const totalW = Math.max(x - 50, 400);
  const totalH = Math.max(160, ...boxes.map((b) => b.height)) + 20;
  let svg = `<svg class="topology" viewBox="0 0 ${totalW} ${totalH}" role="img" aria-label="networks, members and east-west gateways">`;
  // Links between the networks' gateways: the east-west paths.
  const withGateways = boxes.filter((b) => b.n.gateways.length);
  for (let i = 0; i + 1 < withGateways.length; i++) {
    const a = withGateways[i], b = withGateways[i + 1];
    const y = 30 + Math.min(a.height, b.height) / 2;
    svg += `<path class="link" d="M${a.x + a.width} ${y} L${b.x} ${y}"/>`;
  }
  for (const b of boxes) {
    const label = b.n.name || "(no network)";
    svg += `<g class="network" data-network="${esc(b.n.name)}"><rect x="${b.x}" y="10" rx="14" width="${b.width}" height="${b.height}"/>`;
    svg += `<text class="label" x="${b.x + 16}" y="34">${esc(label)}</text>`;
    b.n.members.forEach((name, i) => {
      const m = byName[name] || { name, state: "pending" };
      const mx = b.x + PAD + (i % b.cols) * (W + GAP);
      const my = 10 + TOP + Math.floor(i / b.cols) * (H + GAP);
      const sub = m.state === "admitted" ? `${m.endpoints} endpoints` : m.state;
      svg += `<a href="#/member/${encodeURIComponent(name)}"><g class="member ${esc(m.state)}" data-member="${esc(name)}" data-state="${esc(m.state)}">` +
        `<title>${esc(name)}: ${esc(m.state)}${m.reason ? " — " + esc(m.reason) : ""}</title>` +
        `<rect x="${mx}" y="${my}" rx="8" width="${W}" height="${H}"/>` +
        `<text x="${mx + 12}" y="${my + 24}">${esc(name)}${m.id && m.id !== name ? ` <tspan class="sub">(${esc(m.id)})</tspan>` : ""}</text>` +
        `<text class="sub" x="${mx + 12}" y="${my + 44}">${esc(sub)}</text></g></a>`;
    });
    b.n.gateways.forEach((g, i) => {
      const gx = b.x + b.width - 22, gy = 10 + TOP + 12 + i * 34;
      svg += `<g class="gateway" data-gateway="${esc(g.address)}"><title>east-west gateway ${esc(g.address)} (${esc(g.service)} in ${esc(g.member)})</title>` +
        `<polygon points="${gx},${gy - 9} ${gx + 9},${gy} ${gx},${gy + 9} ${gx - 9},${gy}"/>` +
        `<text x="${gx - 16}" y="${gy + 4}" text-anchor="end">${esc(g.address)}</text></g>`;
    });
    svg += `</g>`;
  }
  svg += `</svg>`;
  const legend = `<div class="legend"><span><i style="border-color:var(--ok)"></i>admitted</span>` +
    `<span><i style="border-color:var(--warn);border-style:dashed"></i>stale</span>` +
    `<span><i style="border-color:var(--bad);border-style:dashed"></i>withdrawn</span>` +
    `<span><i style="border-color:var(--bad)"></i>refused</span>` +
    `<span><i style="border-color:var(--idle);border-style:dotted"></i>pending</span>` +
    `<span><i style="border-color:#5b3fb3;background:#7c5cd6;transform:rotate(45deg)"></i>east-west gateway</span></div>`;
  return `<div class="panel">${svg}${legend}</div>`;
}

function matrix(o) {
  if (!o.services.length) return `<div class="empty">No services yet: no member has a Service, ServiceExport or ServiceEntry.</div>`;
  const ids = o.memberIds;
  const head = ids.map((id) => `<th class="cell">${esc(id)}</th>`).join("");
  const rows = o.services.map((s) => {
    const cells = ids.map((id) => {
      const c = s.members[id] || { state: "absent", why: "" };
      return `<td class="cell" data-member="${esc(id)}" data-state="${esc(c.state)}"><span class="state-${esc(c.state)}" title="${esc(c.why)}">${esc(CELL[c.state] || c.state)}</span></td>`;
    }).join("");
    const conflicts = s.conflicts.length ? " " + pill(s.conflicts.join(", "), "bad") : "";
    return `<tr data-service="${esc(s.key)}"><td><a href="#/service/${esc(s.namespace)}/${esc(s.name)}">${esc(s.key)}</a>${conflicts}</td>` +
      `<td class="mono">${esc(s.ips.join(" ")) || '<span class="muted">—</span>'}</td>${cells}</tr>`;
  }).join("");
  return `<div class="panel"><table class="matrix"><thead><tr><th>service</th><th>ClusterSetIPs</th>${head}</tr></thead><tbody>${rows}</tbody></table></div>`;
}

function proxies(o) {
  if (!o.proxies.length) return `<div class="empty">No proxy is connected to this replica. Point an Envoy or a gRPC client at the xDS port (see examples/bootstrap).</div>`;
  const rows = o.proxies.map((p) => {
    const states = proxyStates(p).map(([name, state, kind, nack]) =>
      `<td>${pill(state, kind)}${nack ? `<div class="muted">${esc(nack)}</div>` : ""}</td>`).join("");
    return `<tr data-proxy="${esc(p.proxy.id)}"><td><a href="#/proxy/${encodeURIComponent(p.proxy.id)}">${esc(p.proxy.id)}</a></td>` +
      `<td>${esc(p.proxy.member || "—")}</td><td>${esc(p.proxy.network || "—")}</td><td>${esc(p.protocol)}</td>${states}</tr>`;
  }).join("");
  return `<div class="panel"><table><thead><tr><th>proxy</th><th>member</th><th>network</th><th>protocol</th><th>CDS</th><th>LDS</th><th>EDS</th><th>RDS</th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

function home(o) {
  const stale = o.members.filter((m) => m.state !== "admitted");
  const note = stale.length
    ? `<p>${stale.map((m) => `${pill(m.state, STATE_PILL[m.state] || "idle")} <a href="#/member/${encodeURIComponent(m.name)}">${esc(m.name)}</a>${m.reason ? ` <span class="muted">${esc(m.reason)}</span>` : ""}`).join("<br>")}</p>`
    : "";
  return `<h1>ClusterSet ${esc(o.clusterSet)}</h1>` +
    `<p class="muted">${o.members.length} members in ${o.networks.length} networks, ${o.services.length} services, ${o.proxies.length} proxies connected.</p>` +
    note +
    `<h2>Networks, members and gateways</h2>${topology(o)}` +
    `<h2>Services × members</h2>${matrix(o)}` +
    `<h2>Proxies</h2>${proxies(o)}`;
}

// ---------------------------------------------------------------- one service
function conditions(list) {
  if (!list || !list.length) return '<span class="muted">—</span>';
  // A Conflict that is True is the bad news; for Valid and Ready, False is.
  const good = (c) => (c.type === "Conflict") === (c.status !== "True");
  return list.map((c) => `<div><span class="cond-${good(c) ? "True" : "False"}">${esc(c.type)}=${esc(c.status)}</span> <b>${esc(c.reason)}</b> <span class="muted">${esc(c.message)}</span></div>`).join("");
}

async function servicePage(ns, name) {
  const key = `${ns}/${name}`;
  let imp = null, view = null;
  try { imp = await json(`/debug/imports/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`); } catch (_) { /* not imported */ }
  try { view = await json(`/debug/services/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`); } catch (_) { /* no member has it */ }
  if (!imp && !view) return `<p class="back"><a href="#/">← ClusterSet</a></p><div class="empty">No member has a service ${esc(key)}.</div>`;
  const i = imp && imp.import;
  const host = `${name}.${ns}.svc.clusterset.local`;
  const conflicts = i && i.merged.conflicts.length
    ? i.merged.conflicts.map(([reason, message]) => `<div>${pill(reason, "bad")} ${esc(message)}</div>`).join("")
    : '<span class="muted">none</span>';
  let out = `<p class="back"><a href="#/">← ClusterSet</a></p><h1>Service ${esc(key)}</h1><div class="grid"><div class="panel"><dl class="kv">` +
    `<dt>imported</dt><dd>${i ? "yes, from " + esc(i.clusters.join(", ")) : "no"}</dd>` +
    `<dt>type</dt><dd>${i ? esc(i.merged.importType) : "—"}</dd>` +
    `<dt>ClusterSetIPs</dt><dd class="mono">${i && i.ips.length ? esc(i.ips.join(", ")) : "—"}</dd>` +
    `<dt>DNS</dt><dd class="mono">${esc(host)}</dd>` +
    `<dt>ports</dt><dd>${i ? i.merged.ports.map((p) => `<code>${esc(p.name)} ${esc(p.protocol)}/${esc(p.port)}</code>`).join(" ") : "—"}</dd>` +
    `<dt>conflicts</dt><dd class="conflicts">${conflicts}</dd></dl></div></div>`;
  const exports = (imp && imp.exports) || {};
  const contributions = (view && view.members) || {};
  const ids = [...new Set([...Object.keys(exports), ...Object.keys(contributions)])].sort();
  out += `<h2>Each member</h2><div class="panel"><table><thead><tr><th>member</th><th>export decision</th><th>conditions</th><th>endpoints</th></tr></thead><tbody>`;
  for (const id of ids) {
    const e = exports[id];
    const eps = (contributions[id] && contributions[id].endpoints) || [];
    const epText = eps.length ? eps.map((ep) => `<div class="mono">${esc(ep.addresses.join(", "))} ${ep.ready ? pill("ready", "ok") : pill("not ready", "warn")}${ep.hostname ? ` <span class="muted">${esc(ep.hostname)}.${esc(id)}.${esc(host)}</span>` : ""}</div>`).join("") : '<span class="muted">none</span>';
    out += `<tr data-member="${esc(id)}"><td>${esc(id)}</td><td>${e ? (e.exported ? pill("exported", "ok") : pill("not exported", "warn")) + ` <span class="muted">${esc(e.why)}</span>` : '<span class="muted">no decision</span>'}</td>` +
      `<td>${conditions(e && e.conditions)}</td><td>${epText}</td></tr>`;
  }
  out += `</tbody></table></div>`;
  if (imp && imp.members) {
    out += `<h2>Who imports it</h2><div class="panel"><table><thead><tr><th>member</th><th>imports</th><th>why</th></tr></thead><tbody>` +
      imp.members.map((m) => `<tr><td>${esc(m.member)}</td><td>${m.imports ? pill("yes", "ok") : pill("no", "idle")}</td><td class="muted">${esc(m.why)}</td></tr>`).join("") +
      `</tbody></table></div>`;
  }
  return out;
}

// ---------------------------------------------------------------- one member
async function memberPage(name, o) {
  const m = o.members.find((x) => x.name === name);
  if (!m) return `<p class="back"><a href="#/">← ClusterSet</a></p><div class="empty">No member ${esc(name)}.</div>`;
  const refusals = (await json("/debug/rejected")).filter((r) => r.member === name);
  let written = [];
  if (m.id) { try { written = await json(`/debug/members/${encodeURIComponent(m.id)}/written`); } catch (_) { /* nothing */ } }
  const rows = refusals.map((r) => `<tr><td class="mono">${esc(r.origin)}</td><td>${esc(r.object && (r.object.kind + " " + (r.object.namespace ? r.object.namespace + "/" : "") + r.object.name))}</td><td>${pill(r.reason, "bad")} ${esc(r.message)}</td></tr>`).join("");
  const writes = written.map((w) => `<tr><td>${esc(w.kind)}</td><td class="mono">${esc(w.metadata && ((w.metadata.namespace ? w.metadata.namespace + "/" : "") + w.metadata.name))}</td></tr>`).join("");
  return `<p class="back"><a href="#/">← ClusterSet</a></p><h1>Member ${esc(name)}</h1>` +
    `<div class="panel"><dl class="kv"><dt>state</dt><dd>${pill(m.state, STATE_PILL[m.state] || "idle")} <span class="muted">${esc(m.reason)}</span></dd>` +
    `<dt>cluster id</dt><dd>${esc(m.id || "—")}</dd><dt>network</dt><dd>${esc(m.network || "—")}</dd>` +
    `<dt>objects</dt><dd>${m.objects}</dd><dt>endpoints</dt><dd>${m.endpoints}</dd>` +
    `<dt>stale since</dt><dd>${m.staleSince ? esc(m.staleSince) + (m.sourceError ? ` <span class="muted">${esc(m.sourceError)}</span>` : "") : '<span class="muted">not stale</span>'}</dd></dl></div>` +
    `<h2>Refused (${refusals.length})</h2>` + (rows ? `<div class="panel"><table><thead><tr><th>where</th><th>object</th><th>why</th></tr></thead><tbody>${rows}</tbody></table></div>` : `<div class="empty">Nothing of this member was refused.</div>`) +
    `<h2>What Bowline writes into it (${written.length})</h2>` + (writes ? `<div class="panel"><table><thead><tr><th>kind</th><th>object</th></tr></thead><tbody>${writes}</tbody></table></div>` : `<div class="empty">Nothing is written into this member.</div>`);
}

// ---------------------------------------------------------------- one proxy
async function proxyPage(id, o) {
  const p = o.proxies.find((x) => x.proxy.id === id);
  if (!p) return `<p class="back"><a href="#/">← ClusterSet</a></p><div class="empty">No proxy ${esc(id)} is connected to this replica.</div>`;
  const states = proxyStates(p).map(([name, state, kind]) => `${name} ${pill(state, kind)}`).join(" ");
  let out = `<p class="back"><a href="#/">← ClusterSet</a></p><h1>Proxy ${esc(id)}</h1>` +
    `<div class="panel"><dl class="kv"><dt>member</dt><dd>${esc(p.proxy.member || "—")}</dd><dt>network</dt><dd>${esc(p.proxy.network || "—")}</dd>` +
    `<dt>addresses</dt><dd class="mono">${esc((p.proxy.instanceIps || []).join(", ") || "—")}</dd><dt>sync</dt><dd>${states}</dd></dl></div>`;
  for (const s of o.services.filter((s) => s.imported)) {
    const e = await json(`/debug/explain?node=${encodeURIComponent(id)}&service=${encodeURIComponent(s.key)}`);
    out += `<h2><a href="#/service/${esc(s.namespace)}/${esc(s.name)}">${esc(s.key)}</a> <span class="muted">${esc(e.import)}</span></h2>`;
    for (const c of e.clusters) {
      const totals = (t) => (t ? `${t.endpoints} endpoint(s), weight ${t.weight}` : "nothing");
      const rows = c.endpoints.map((ep) => {
        const verdict = ep.verdict === "direct" ? `direct <span class="mono">${esc(ep.address)}</span>, weight ${ep.weight}`
          : ep.verdict === "gateway" ? `through ${esc((ep.gateways || []).join(", "))}, weight ${ep.weight} each`
            : `excluded (${esc(ep.rule)}): ${esc(ep.reason)}`;
        return `<tr><td>${esc(ep.member)}</td><td class="mono">${esc((ep.addresses || []).join(", "))}</td><td class="verdict-${esc(ep.verdict)}">${verdict}</td></tr>`;
      }).join("");
      out += `<div class="panel"><p class="mono">${esc(c.cluster)}</p><p class="muted">now: ${totals(c.now)}; last sent: ${totals(c.sent)}</p>` +
        (rows ? `<table><thead><tr><th>member</th><th>addresses</th><th>verdict</th></tr></thead><tbody>${rows}</tbody></table>` : `<div class="empty">No endpoints.</div>`) + `</div>`;
    }
  }
  return out;
}

// ---------------------------------------------------------------- routing and live updates
async function render() {
  const route = location.hash.replace(/^#\/?/, "");
  const parts = route.split("/").map(decodeURIComponent);
  let html;
  try {
    if (parts[0] === "service" && parts.length >= 3) html = await servicePage(parts[1], parts.slice(2).join("/"));
    else if (parts[0] === "member" && parts[1]) html = await memberPage(parts[1], overview);
    else if (parts[0] === "proxy" && parts[1]) html = await proxyPage(parts.slice(1).join("/"), overview);
    else html = home(overview);
  } catch (e) {
    html = `<div class="empty">Cannot draw this page: ${esc(e.message)}</div>`;
  }
  $main.innerHTML = html;
  $main.dataset.version = overview.version;
  drawn = { version: overview.version, route: location.hash };
}

function header(o) {
  document.title = `Bowline: ${o.clusterSet}`;
  document.getElementById("clusterset").textContent = `ClusterSet ${o.clusterSet} · version ${o.version}`;
  const sync = document.getElementById("sync");
  sync.textContent = o.synced ? "synced" : "syncing";
  sync.className = "pill " + (o.synced ? "ok" : "warn");
  document.getElementById("rejected").textContent = o.rejected;
}

async function tick() {
  try {
    overview = await json("/debug/overview");
    document.getElementById("live").textContent = "live";
    header(overview);
    if (overview.version !== drawn.version || location.hash !== drawn.route) await render();
  } catch (e) {
    document.getElementById("live").textContent = "disconnected: " + e.message;
  }
  setTimeout(tick, 1000);
}

window.addEventListener("hashchange", () => { if (overview) render(); });
tick();
