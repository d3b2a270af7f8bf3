// rollcall live dashboard: the catalog from /v1/events (server-sent events), filtered
// by service and meta. Device data is only ever written with textContent.
"use strict";

(() => {
  const records = new Map();  // id → record
  const removed = new Map();  // id → revision of its deregistration (ignore older upserts)
  const $ = (id) => document.getElementById(id);
  const rows = $("rows");
  const serviceSel = $("filter-service");
  const metaInput = $("filter-meta");
  const statusText = { passing: "✓ passing", warning: "! warning", critical: "✗ critical", maintenance: "⚙ maintenance" };
  let renderTimer = 0;

  // Filters come from and go to the query string, so a filtered view can be linked.
  const params = new URLSearchParams(location.search);
  metaInput.value = params.get("meta") || "";
  let wantedService = params.get("service") || "";

  function schedule() {
    if (!renderTimer) renderTimer = setTimeout(render, 50);
  }

  function announce(text) {
    $("announcer").textContent = text;
  }

  function upsert(rec, live) {
    const old = records.get(rec.id);
    if (old && old.revision > rec.revision) return;
    const gone = removed.get(rec.id);
    if (gone !== undefined && gone >= rec.revision) return;
    removed.delete(rec.id);
    records.set(rec.id, rec);
    if (live && old && old.status !== rec.status) announce(`${rec.id} is now ${rec.status}`);
    if (live && !old) announce(`${rec.id} registered, ${rec.status}`);
    schedule();
  }

  function deregister(rec) {
    const old = records.get(rec.id);
    if (old && old.revision > rec.revision) return;
    records.delete(rec.id);
    removed.set(rec.id, rec.revision);
    announce(`${rec.id} deregistered`);
    schedule();
  }

  function snapshot(list) {
    records.clear();
    removed.clear();
    for (const rec of list) records.set(rec.id, rec);
    // Drawn at once, not batched: the page says "Live" right after, and must not say it
    // over an empty table.
    clearTimeout(renderTimer);
    render();
  }

  function metaFilter() {
    return metaInput.value.split(/[,\s]+/).filter(Boolean).map((pair) => {
      const i = pair.indexOf("=");
      return i < 0 ? [pair, null] : [pair.slice(0, i), pair.slice(i + 1)];
    });
  }

  function matches(rec, service, pairs) {
    if (service && rec.service !== service) return false;
    const meta = rec.meta || {};
    return pairs.every(([k, v]) => (v === null ? k in meta : meta[k] === v));
  }

  function endpointText(ep) {
    if (!ep) return "";
    switch (ep.transport) {
      case "modbus-rtu": return `RTU ${ep.bus} unit ${ep.unit}`;
      case "modbus-tcp": return `TCP ${ep.host}:${ep.port} unit ${ep.unit}`;
      case "http": return ep.url || `http://${ep.host}:${ep.port}`;
      default: return `${ep.transport} ${ep.host || ""}${ep.port ? ":" + ep.port : ""}`;
    }
  }

  function stateText(st) {
    if (!st || st.cia402 === undefined) return { text: "—", fault: false };
    let text = String(st.cia402).replace(/_/g, " ");
    if (st.fault) text += ` — fault 0x${Number(st.error_code || 0).toString(16).toUpperCase().padStart(4, "0")}`;
    else if (st.warning) text += " — warning";
    return { text, fault: !!st.fault };
  }

  function age(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return `${s.toFixed(1)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return new Date(iso).toLocaleString();
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function updateServices() {
    const services = [...new Set([...records.values()].map((r) => r.service))].sort();
    if (wantedService && !services.includes(wantedService)) services.push(wantedService);
    const have = [...serviceSel.options].slice(1).map((o) => o.value);
    if (have.join("\n") === services.join("\n")) return;
    serviceSel.length = 1;
    for (const s of services) serviceSel.add(new Option(s, s));
    serviceSel.value = wantedService;
  }

  function render() {
    renderTimer = 0;
    updateServices();
    const service = serviceSel.value;
    const pairs = metaFilter();
    const list = [...records.values()].filter((r) => matches(r, service, pairs))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const frag = document.createDocumentFragment();
    for (const rec of list) {
      const tr = document.createElement("tr");
      tr.id = "instance-" + rec.id;
      tr.dataset.id = rec.id;
      tr.dataset.status = rec.status;
      tr.className = rec.status;
      cell(tr, rec.id, "id");
      cell(tr, rec.service);
      const st = cell(tr, "", "status-cell");
      const badge = document.createElement("span");
      badge.className = "status status-" + rec.status;
      badge.dataset.status = rec.status;
      badge.textContent = statusText[rec.status] || rec.status;
      // A record past its lease (valid_until) is unknown, whatever its status says.
      if (rec.valid_until && Date.parse(rec.valid_until) < Date.now()) {
        badge.textContent = "? unknown (lease expired)";
        badge.dataset.status = "expired";
      }
      st.appendChild(badge);
      if (rec.maintenance && rec.maintenance.reason) {
        badge.title = "maintenance: " + rec.maintenance.reason + (rec.maintenance.until ? " (until " + rec.maintenance.until + ")" : "");
      }
      const failing = (rec.checks || []).filter((c) => c.status !== "passing").map((c) => c.name + ": " + c.status + (c.note ? " (" + c.note + ")" : ""));
      if (failing.length) {
        const why = document.createElement("div");
        why.className = "checks";
        why.textContent = failing.join("; ");
        st.appendChild(why);
      }
      const ds = stateText(rec.state);
      // A critical device does not answer: its state is the last one it reported.
      cell(tr, rec.status === "critical" && ds.text !== "—" ? ds.text + " (last known)" : ds.text, ds.fault ? "fault" : "");
      cell(tr, endpointText(rec.endpoint));
      const seen = cell(tr, "", "last-seen");
      const t = document.createElement("time");
      if (rec.last_seen) t.dateTime = rec.last_seen;
      t.title = rec.last_seen || "";
      t.textContent = age(rec.last_seen);
      seen.appendChild(t);
      const rtt = rec.check && typeof rec.check.rtt_ms === "number" ? `${rec.check.rtt_ms.toFixed(2)} ms` : "—";
      cell(tr, rtt, "num");
      cell(tr, Object.entries(rec.meta || {}).sort().map(([k, v]) => `${k}=${v}`).join(", "));
      frag.appendChild(tr);
    }
    rows.replaceChildren(frag);
    $("empty").hidden = list.length > 0;
    const counts = { passing: 0, warning: 0, critical: 0, maintenance: 0 };
    for (const r of list) counts[r.status] = (counts[r.status] || 0) + 1;
    $("summary").textContent = `${list.length} of ${records.size} instances: ` +
      `${counts.passing} passing, ${counts.warning} warning, ${counts.critical} critical` +
      (counts.maintenance ? `, ${counts.maintenance} in maintenance` : "");
  }

  // Ages tick without a server message.
  setInterval(() => {
    for (const t of rows.querySelectorAll("time[datetime]")) t.textContent = age(t.dateTime);
  }, 1000);

  function onFilter() {
    wantedService = serviceSel.value;
    const q = new URLSearchParams();
    if (wantedService) q.set("service", wantedService);
    if (metaInput.value.trim()) q.set("meta", metaInput.value.trim());
    const qs = q.toString();
    history.replaceState(null, "", qs ? "?" + qs : location.pathname);
    render();
  }
  serviceSel.addEventListener("change", onFilter);
  metaInput.addEventListener("input", onFilter);
  $("filters").addEventListener("submit", (e) => e.preventDefault());

  function setConnection(state, text) {
    const c = $("connection");
    c.dataset.state = state;
    c.textContent = text;
    $("catalog").classList.toggle("stale", state !== "live");
    // "Live" is said only once the catalog is on screen (after the snapshot); the rows
    // shown at that moment are kept for the end-to-end test.
    if (state === "live" && document.body.dataset.firstLiveRows === undefined) {
      document.body.dataset.firstLiveRows = String(rows.children.length);
    }
  }

  fetch("v1/gateway").then((r) => (r.ok ? r.json() : null)).then((g) => {
    if (!g) return;
    $("gateway").textContent = `gateway ${g.gateway}, epoch ${g.epoch}`;
    document.title = `rollcall — ${g.gateway}`;
  }).catch(() => {});

  // The browser reconnects an EventSource by itself after a network error, but not after
  // an answer other than 200 (a 503 when the gateway's stream cap is reached): then the
  // stream is closed for good, and a new one is opened 10 s later (the Retry-After).
  let first = true;
  const connect = () => {
    const es = new EventSource("v1/events");
    es.addEventListener("open", () => setConnection("loading", "Connected, loading the catalog…"));
    es.addEventListener("error", () => {
      setConnection("lost", "Connection lost — reconnecting…");
      if (es.readyState === EventSource.CLOSED) setTimeout(connect, 10000);
    });
    es.addEventListener("snapshot", (e) => {
      snapshot(JSON.parse(e.data));
      setConnection("live", "Live");
      if (!first) announce("catalog resynchronised");
      first = false;
    });
    es.addEventListener("upsert", (e) => upsert(JSON.parse(e.data), true));
    es.addEventListener("deregister", (e) => deregister(JSON.parse(e.data)));
  };
  connect();

  // The plant view (http.plant_view): every gateway's live devices, each once, with the
  // gateways that see it; refreshed every 2 s. A 404 means the view is off: the section
  // stays hidden.
  const plantRows = $("plant-rows");
  const refreshPlant = () => {
    fetch("v1/plant").then((r) => {
      if (r.status === 404) return null;
      return r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`));
    }).then((list) => {
      if (!list) return;
      $("plant").hidden = false;
      plantRows.replaceChildren();
      const gateways = new Set();
      for (const rec of list) {
        const tr = document.createElement("tr");
        cell(tr, rec.id);
        cell(tr, rec.service);
        cell(tr, rec.status, `status ${rec.status}`);
        cell(tr, endpointText(rec.endpoint));
        cell(tr, (rec.seen_by || []).join(", "));
        (rec.seen_by || []).forEach((g) => gateways.add(g));
        plantRows.appendChild(tr);
      }
      $("plant-summary").textContent = `${list.length} live devices seen by ${gateways.size} gateways`;
      setTimeout(refreshPlant, 2000);
    }).catch(() => setTimeout(refreshPlant, 5000));
  };
  refreshPlant();
})();
