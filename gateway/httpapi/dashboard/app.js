// rollcall live dashboard: the catalog from /v1/events (server-sent events), or the
// plant view from /v1/plant; filtered by service and meta, sorted by any column, grouped
// by gateway, bus or service; one instance's details (record, checks, status history,
// round trips) from /v1/instances/{id}. Device data is only ever written with
// textContent.
"use strict";

(() => {
  const records = new Map();  // id → record
  const removed = new Map();  // id → revision of its deregistration (ignore older upserts)
  let plant = null;           // the plant view's list (/v1/plant); null: not loaded or off
  const $ = (id) => document.getElementById(id);
  const table = $("catalog");
  const serviceSel = $("filter-service");
  const metaInput = $("filter-meta");
  const groupSel = $("group-by");
  const statusText = { passing: "✓ passing", warning: "! warning", critical: "✗ critical", maintenance: "⚙ maintenance" };
  const statusRank = { passing: 0, maintenance: 1, warning: 2, critical: 3, expired: 4 };
  const collator = new Intl.Collator("en", { numeric: true, sensitivity: "base" });
  const spark = $("detail-sparkline").querySelector("svg"); // drawn by drawRoundTrips
  const svgNS = spark.namespaceURI;
  let renderTimer = 0;
  let detailID = null;     // the instance shown in the detail panel; null: closed
  let detailTimer = 0;
  let detailSeq = 0;
  let detailReturn = null; // the element that had the focus when the panel opened

  // Filters, sort, grouping and view come from and go to the query string, so a view
  // can be linked; the instance open in the detail panel is the fragment (#instance=<id>).
  const params = new URLSearchParams(location.search);
  metaInput.value = params.get("meta") || "";
  let wantedService = params.get("service") || "";
  let view = params.get("view") === "plant" ? "plant" : "local";
  groupSel.value = ["gateway", "bus", "service"].includes(params.get("group")) ? params.get("group") : "";
  let sortKey = "id";
  let sortDir = 1; // 1 ascending, -1 descending
  {
    const s = params.get("sort") || "";
    const key = s.replace(/^-/, "");
    if (table.querySelector(`th[data-key="${CSS.escape(key)}"]`)) {
      sortKey = key;
      sortDir = s.startsWith("-") ? -1 : 1;
    }
  }

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
    if (detailID === rec.id) refreshDetail();
    schedule();
  }

  function deregister(rec) {
    const old = records.get(rec.id);
    if (old && old.revision > rec.revision) return;
    records.delete(rec.id);
    removed.set(rec.id, rec.revision);
    announce(`${rec.id} deregistered`);
    if (detailID === rec.id) refreshDetail();
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

  // expired: a record past its lease (valid_until) is unknown, whatever its status says.
  function expired(rec) {
    return !!rec.valid_until && Date.parse(rec.valid_until) < Date.now();
  }

  function age(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return `${s.toFixed(1)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return new Date(iso).toLocaleString();
  }

  // clock is a time as local "YYYY-MM-DD hh:mm:ss.mmm".
  function clock(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    const p = (n, w = 2) => String(n).padStart(w, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
      `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }

  // revisionText is a revision as <epoch>.<publication> (its high and low 32 bits).
  function revisionText(rev) {
    return typeof rev === "number" ? `${Math.floor(rev / 2 ** 32)}.${rev % 2 ** 32}` : "—";
  }

  function rttOf(rec) {
    return rec.check && typeof rec.check.rtt_ms === "number" ? rec.check.rtt_ms : null;
  }

  function metaText(rec) {
    return Object.entries(rec.meta || {}).sort().map(([k, v]) => `${k}=${v}`).join(", ");
  }

  function gatewaysOf(rec) {
    return rec.seen_by && rec.seen_by.length ? rec.seen_by : [rec.gateway];
  }

  // The groups of "Group by": a key and its heading.
  const groupers = {
    gateway: (rec) => {
      const g = gatewaysOf(rec).join(", ");
      return [g, (view === "plant" ? "Seen by " : "Gateway ") + g];
    },
    bus: (rec) => {
      const ep = rec.endpoint || {};
      const bus = ep.bus || (ep.host ? `${ep.transport} ${ep.host}` : ep.transport || "—");
      return [bus, "Bus " + bus];
    },
    service: (rec) => [rec.service, "Service " + rec.service],
  };

  // The sort key of each column.
  const sortValue = {
    id: (r) => r.id,
    service: (r) => r.service,
    status: (r) => statusRank[expired(r) ? "expired" : r.status] ?? 5,
    state: (r) => stateText(r.state).text,
    endpoint: (r) => endpointText(r.endpoint),
    seen: (r) => (r.last_seen ? Date.parse(r.last_seen) : -Infinity),
    rtt: (r) => rttOf(r),
    meta: (r) => metaText(r),
    seen_by: (r) => gatewaysOf(r).join(", "),
  };

  function compare(a, b) {
    const va = sortValue[sortKey](a), vb = sortValue[sortKey](b);
    let c;
    if (va === null || vb === null) c = va === vb ? 0 : va === null ? 1 : -1; // no value: last either way
    else c = sortDir * (typeof va === "number" ? va - vb : collator.compare(va, vb));
    return c || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  }

  // linkTo is the table's link with this href (#instance=<id>), if shown.
  function linkTo(href) {
    return table.querySelector(`tbody a[href="${CSS.escape(href)}"]`);
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function badge(rec) {
    const b = document.createElement("span");
    b.className = "status status-" + rec.status;
    b.dataset.status = rec.status;
    b.textContent = statusText[rec.status] || rec.status;
    if (expired(rec)) {
      b.textContent = "? unknown (lease expired)";
      b.dataset.status = "expired";
    }
    if (rec.maintenance && rec.maintenance.reason) {
      b.title = "maintenance: " + rec.maintenance.reason + (rec.maintenance.until ? " (until " + rec.maintenance.until + ")" : "");
    }
    return b;
  }

  function source() {
    if (view === "plant") return plant || [];
    return [...records.values()];
  }

  function updateServices() {
    const services = [...new Set(source().map((r) => r.service))].sort();
    if (wantedService && !services.includes(wantedService)) services.push(wantedService);
    const have = [...serviceSel.options].slice(1).map((o) => o.value);
    if (have.join("\n") === services.join("\n")) return;
    serviceSel.length = 1;
    for (const s of services) serviceSel.add(new Option(s, s));
    serviceSel.value = wantedService;
  }

  function row(rec) {
    const tr = document.createElement("tr");
    tr.id = "instance-" + rec.id;
    tr.dataset.id = rec.id;
    tr.dataset.status = rec.status;
    tr.className = rec.status;
    const idCell = cell(tr, "", "id");
    const link = document.createElement("a");
    link.href = "#instance=" + encodeURIComponent(rec.id);
    link.textContent = rec.id;
    link.setAttribute("aria-label", `${rec.id}: details`);
    idCell.appendChild(link);
    cell(tr, rec.service);
    const st = cell(tr, "", "status-cell");
    st.appendChild(badge(rec));
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
    const rtt = rttOf(rec);
    cell(tr, rtt === null ? "—" : `${rtt.toFixed(2)} ms`, "num");
    cell(tr, metaText(rec));
    if (view === "plant") cell(tr, gatewaysOf(rec).join(", "), "seen-by");
    return tr;
  }

  function countText(list) {
    const counts = { passing: 0, warning: 0, critical: 0, maintenance: 0 };
    for (const r of list) counts[r.status] = (counts[r.status] || 0) + 1;
    return `${counts.passing} passing, ${counts.warning} warning, ${counts.critical} critical` +
      (counts.maintenance ? `, ${counts.maintenance} in maintenance` : "");
  }

  function render() {
    renderTimer = 0;
    updateServices();
    const service = serviceSel.value;
    const pairs = metaFilter();
    const all = source();
    const list = all.filter((r) => matches(r, service, pairs)).sort(compare);
    table.dataset.view = view;
    for (const th of table.querySelectorAll("thead th")) {
      if (th.dataset.key === sortKey) th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
    const columns = table.querySelectorAll(view === "plant" ? "thead th" : "thead th:not(.plant-only)").length;
    const bodies = [];
    const group = groupers[groupSel.value];
    if (!group) {
      const tb = document.createElement("tbody");
      tb.id = "rows";
      for (const rec of list) tb.appendChild(row(rec));
      bodies.push(tb);
    } else {
      const groups = new Map(); // key → {label, recs}; in the order of the sorted list
      for (const rec of list) {
        const [key, label] = group(rec);
        if (!groups.has(key)) groups.set(key, { label, recs: [] });
        groups.get(key).recs.push(rec);
      }
      for (const key of [...groups.keys()].sort(collator.compare)) {
        const g = groups.get(key);
        const tb = document.createElement("tbody");
        tb.className = "group";
        tb.dataset.group = key;
        const head = document.createElement("tr");
        head.className = "group-head";
        const th = document.createElement("th");
        th.scope = "rowgroup";
        th.colSpan = columns;
        th.textContent = g.label + " ";
        const n = document.createElement("span");
        n.className = "muted";
        n.textContent = `— ${g.recs.length} ${g.recs.length === 1 ? "instance" : "instances"}: ${countText(g.recs)}`;
        th.appendChild(n);
        head.appendChild(th);
        tb.appendChild(head);
        for (const rec of g.recs) tb.appendChild(row(rec));
        bodies.push(tb);
      }
    }
    // The rows are drawn afresh: a focused instance link keeps the focus.
    const focused = document.activeElement;
    const refocus = focused && focused.closest && focused.closest("#catalog tbody") ? focused.getAttribute("href") : null;
    for (const tb of [...table.tBodies]) tb.remove();
    table.append(...bodies);
    if (refocus) linkTo(refocus)?.focus();
    $("empty").hidden = list.length > 0;
    if (view === "plant") {
      const gateways = new Set(all.flatMap(gatewaysOf));
      $("summary").textContent = plant
        ? `Plant: ${list.length} of ${all.length} live devices, seen by ${gateways.size} gateways: ${countText(list)}`
        : "Plant: loading…";
    } else {
      $("summary").textContent = `${list.length} of ${records.size} instances: ${countText(list)}`;
    }
  }

  // Ages tick without a server message.
  setInterval(() => {
    for (const t of table.querySelectorAll("tbody time[datetime]")) t.textContent = age(t.dateTime);
  }, 1000);

  function saveQuery() {
    const q = new URLSearchParams();
    if (wantedService) q.set("service", wantedService);
    if (metaInput.value.trim()) q.set("meta", metaInput.value.trim());
    if (view === "plant") q.set("view", "plant");
    if (groupSel.value) q.set("group", groupSel.value);
    if (sortKey !== "id" || sortDir !== 1) q.set("sort", (sortDir < 0 ? "-" : "") + sortKey);
    const qs = q.toString();
    history.replaceState(null, "", (qs ? "?" + qs : location.pathname) + location.hash);
  }

  function onFilter() {
    wantedService = serviceSel.value;
    saveQuery();
    render();
  }
  serviceSel.addEventListener("change", onFilter);
  metaInput.addEventListener("input", onFilter);
  groupSel.addEventListener("change", onFilter);
  $("filters").addEventListener("submit", (e) => e.preventDefault());

  // Sorting: a header's button sorts by its column; again, the other way.
  for (const th of table.querySelectorAll("thead th[data-key]")) {
    th.querySelector("button").addEventListener("click", () => {
      if (sortKey === th.dataset.key) sortDir = -sortDir;
      else {
        sortKey = th.dataset.key;
        sortDir = 1;
      }
      saveQuery();
      render();
      const label = th.textContent.trim();
      announce(`sorted by ${label}, ${sortDir > 0 ? "ascending" : "descending"}`);
    });
  }

  function setConnection(state, text) {
    const c = $("connection");
    c.dataset.state = state;
    c.textContent = text;
    table.classList.toggle("stale", state !== "live" && view === "local");
    // "Live" is said only once the catalog is on screen (after the snapshot); the rows
    // shown at that moment are kept for the end-to-end test.
    if (state === "live" && document.body.dataset.firstLiveRows === undefined) {
      document.body.dataset.firstLiveRows = String(table.querySelectorAll("tbody tr[data-id]").length);
    }
  }

  // getJSON fetches url's JSON: null on 404, a rejection on any other error status.
  function getJSON(url) {
    return fetch(url).then((r) => {
      if (r.status === 404) return null;
      return r.ok ? r.json() : Promise.reject(new Error(`HTTP ${r.status}`));
    });
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

  // The plant view (http.plant_view): every gateway's live devices on the broker, each
  // once, with the gateways that see it. A 404 means the view is off: the switch stays
  // hidden. While the plant view is shown it is fetched again every 2 s.
  let plantTimer = 0;
  const refreshPlant = () => {
    clearTimeout(plantTimer);
    getJSON("v1/plant").then((list) => {
      if (!list) {
        plant = null;
        $("view-switch").hidden = true;
        if (view === "plant") setView("local");
        return;
      }
      plant = list;
      $("view-switch").hidden = false;
      if (view === "plant") {
        render();
        plantTimer = setTimeout(refreshPlant, 2000);
      }
    }).catch(() => {
      if (view === "plant") plantTimer = setTimeout(refreshPlant, 5000);
    });
  };

  function setView(v) {
    view = v;
    $(v === "plant" ? "view-plant" : "view-local").checked = true;
    $("catalog-caption").textContent = v === "plant"
      ? "Live devices of every gateway on the broker, each once, with the gateways that see it; column headers sort"
      : "Live instances of this gateway; column headers sort";
    table.classList.toggle("stale", v === "local" && $("connection").dataset.state !== "live");
    saveQuery();
    render();
    if (v === "plant") refreshPlant();
    else clearTimeout(plantTimer);
  }
  for (const input of document.querySelectorAll('input[name="view"]')) {
    input.addEventListener("change", () => input.checked && setView(input.value));
  }
  $(view === "plant" ? "view-plant" : "view-local").checked = true;
  refreshPlant();

  // The detail panel of one instance (#instance=<id>): its record, checks, round trips
  // and status history from /v1/instances/{id}, fetched again every 2 s and at each of
  // its changes while open. An instance only another gateway polls (plant view) shows
  // its record from /v1/plant: its history is kept by that gateway.

  function instanceFromHash() {
    const m = /^#instance=(.+)$/.exec(location.hash);
    if (!m) return null;
    try {
      return decodeURIComponent(m[1]);
    } catch {
      return null; // a malformed escape (%E0%A4%A) names no instance
    }
  }

  function openDetail(id) {
    if (!id) return closeDetail(false);
    const isNew = detailID !== id;
    detailID = id;
    const panel = $("detail");
    panel.dataset.id = id;
    if (isNew) {
      detailReturn = document.activeElement;
      $("detail-title").textContent = id;
      for (const sel of ["#detail-history tbody", "#detail-checks tbody", "#detail-identity", "#detail-endpoint", "#detail-sparkline svg"]) {
        panel.querySelector(sel).replaceChildren();
      }
      $("detail-status").textContent = "Loading…";
      $("detail-rtt-summary").textContent = "";
      panel.dataset.loaded = "false";
    }
    panel.hidden = false;
    $("detail-link").href = "v1/instances/" + encodeURIComponent(id);
    $("detail-link").textContent = "/v1/instances/" + id;
    refreshDetail();
    if (isNew) $("detail-title").focus();
  }

  function closeDetail(updateHash = true) {
    if (detailID === null) return;
    const id = detailID;
    detailID = null;
    clearTimeout(detailTimer);
    $("detail").hidden = true;
    delete $("detail").dataset.id;
    if (updateHash && location.hash) history.replaceState(null, "", location.pathname + location.search);
    // The focus goes back where it was, or to the instance's link if that was drawn afresh.
    const back = detailReturn && document.contains(detailReturn) ? detailReturn : linkTo("#instance=" + encodeURIComponent(id));
    detailReturn = null;
    if (back) back.focus();
  }

  function refreshDetail() {
    if (detailID === null) return;
    clearTimeout(detailTimer);
    const id = detailID;
    const seq = ++detailSeq;
    getJSON("v1/instances/" + encodeURIComponent(id)).then((d) => {
      if (seq !== detailSeq || detailID !== id) return;
      drawDetail(id, d);
      detailTimer = setTimeout(refreshDetail, 2000);
    }).catch(() => {
      if (seq === detailSeq && detailID === id) detailTimer = setTimeout(refreshDetail, 5000);
    });
  }

  // terms fills dl with a term for each [name, value] that has a value.
  function terms(dl, pairs) {
    dl.replaceChildren();
    for (const [name, value] of pairs) {
      if (value === undefined || value === null || value === "") continue;
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      dl.append(dt, dd);
    }
  }

  function drawDetail(id, d) {
    const panel = $("detail");
    // Not polled here: the plant view's record, if any.
    const local = d !== null;
    const rec = d || (plant || []).find((r) => r.id === id);
    const note = $("detail-note");
    if (!rec) {
      $("detail-status").textContent = "Not a live instance (any more).";
      note.hidden = true;
      panel.dataset.loaded = "gone";
      return;
    }
    const st = $("detail-status");
    st.replaceChildren(badge(rec));
    if (rec.status_since) st.append(` since ${clock(rec.status_since)} · revision ${revisionText(rec.revision)}`);
    note.hidden = local;
    note.textContent = local ? "" : `Polled by ${gatewaysOf(rec).join(", ")}, not by this gateway: its status history and round trips are kept there.`;

    const ident = rec.identity || {};
    const ds = stateText(rec.state);
    terms($("detail-identity"), [
      ["Service", rec.service],
      ["Vendor", ident.vendor],
      ["Product", ident.product_code],
      ["Model", ident.model],
      ["Revision", ident.revision],
      ["Serial", ident.serial],
      ["Profile", rec.profile],
      ["Gateway", rec.gateway + (rec.epoch ? ` (epoch ${rec.epoch})` : "")],
      ["Seen by", rec.seen_by && rec.seen_by.join(", ")],
      ["Discovered by", (rec.discovered_by || []).join(", ")],
      ["Meta", metaText(rec)],
      ["Device state", ds.text !== "—" ? ds.text : ""],
    ]);

    const ep = rec.endpoint || {};
    terms($("detail-endpoint"), [
      ["Transport", ep.transport],
      ["Bus", ep.bus],
      ["Device", ep.device],
      ["Baud", ep.baud],
      ["Host", ep.host],
      ["Port", ep.port],
      ["URL", ep.url],
      ["Unit ID", typeof ep.unit === "number" ? ep.unit : ""],
    ]);

    drawChecks(rec);
    drawRoundTrips(local ? d.round_trips || [] : null);
    drawHistory(local ? d.history || [] : null);
    panel.dataset.loaded = local ? "local" : "plant";
  }

  function drawChecks(rec) {
    const tb = $("detail-checks").tBodies[0];
    tb.replaceChildren();
    const c = rec.check || {};
    const hb = [];
    if (c.failures) hb.push(`${c.failures} failed ${c.failures === 1 ? "poll" : "polls"}`);
    if (typeof c.rtt_ms === "number") hb.push(`round trip ${c.rtt_ms.toFixed(2)} ms`);
    if (c.interval_ms) hb.push(`every ${c.interval_ms} ms`);
    if (c.timeout_ms) hb.push(`timeout ${c.timeout_ms} ms`);
    if (c.detect_budget_ms) hb.push(`detected within ${c.detect_budget_ms} ms`);
    if (typeof c.link_quality === "number") hb.push(`link quality ${c.link_quality.toFixed(3)}`);
    const checks = rec.checks && rec.checks.length ? rec.checks
      : [{ name: "poll", kind: "poll", status: rec.status === "maintenance" ? "passing" : rec.status, since: rec.status_since }];
    for (const ch of checks) {
      const tr = document.createElement("tr");
      cell(tr, ch.kind && ch.kind !== ch.name ? `${ch.name} (${ch.kind})` : ch.name);
      cell(tr, "").appendChild(badge({ status: ch.status }));
      cell(tr, [ch.note, ch.name === "poll" || ch.kind === "ttl" ? hb.join(", ") : ""].filter(Boolean).join(" — "));
      cell(tr, clock(ch.since), "when");
      tb.appendChild(tr);
    }
  }

  function drawHistory(list) {
    const tb = $("detail-history").tBodies[0];
    tb.replaceChildren();
    if (list === null) return;
    for (const h of [...list].reverse()) {
      const tr = document.createElement("tr");
      tr.dataset.status = h.status;
      const td = cell(tr, "", "when");
      const t = document.createElement("time");
      t.dateTime = h.at;
      t.textContent = clock(h.at);
      td.appendChild(t);
      cell(tr, "").appendChild(badge({ status: h.status }));
      cell(tr, revisionText(h.revision), "num").title = String(h.revision);
      cell(tr, h.reason || "", "reason");
      tb.appendChild(tr);
    }
  }

  // An inline SVG sparkline of the polls' round trips; a missed poll is a gap in the
  // line and a mark under it.
  function drawRoundTrips(polls) {
    const svg = spark;
    svg.replaceChildren();
    svg.removeAttribute("aria-label");
    svg.classList.add("empty");
    const summary = $("detail-rtt-summary");
    if (polls === null) {
      summary.textContent = "";
      return;
    }
    const values = polls.map((p) => p.ms).filter((v) => typeof v === "number");
    const missed = polls.length - values.length;
    if (!polls.length) {
      summary.textContent = "No poll seen yet.";
      return;
    }
    svg.classList.remove("empty");
    const W = 360, H = 64, pad = 4, max = 60; // max: the polls the gateway keeps
    const lo = values.length ? Math.min(...values) : 0;
    const hi = values.length ? Math.max(...values) : 1;
    const span = hi - lo || 1;
    const x = (i) => pad + (i * (W - 2 * pad)) / Math.max(max - 1, 1);
    const y = (v) => H - pad - 6 - ((v - lo) / span) * (H - 2 * pad - 6);
    const last = values.length ? values[values.length - 1] : null;
    const text = values.length
      ? `Round trip of the last ${polls.length} polls: min ${lo.toFixed(2)} ms, max ${hi.toFixed(2)} ms, last ${last === polls[polls.length - 1].ms ? last.toFixed(2) + " ms" : "no answer"}` +
        (missed ? `, ${missed} missed` : "")
      : `The last ${polls.length} polls got no answer`;
    svg.setAttribute("aria-label", text);
    const title = document.createElementNS(svgNS, "title");
    title.textContent = text;
    svg.appendChild(title);
    const offset = max - polls.length; // the newest poll at the right edge
    let points = [];
    const flush = () => {
      if (!points.length) return;
      const line = document.createElementNS(svgNS, points.length > 1 ? "polyline" : "circle");
      if (points.length > 1) line.setAttribute("points", points.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" "));
      else {
        line.setAttribute("cx", points[0][0].toFixed(1));
        line.setAttribute("cy", points[0][1].toFixed(1));
        line.setAttribute("r", "1.5");
      }
      line.classList.add("rtt");
      svg.appendChild(line);
      points = [];
    };
    polls.forEach((p, i) => {
      if (typeof p.ms === "number") {
        points.push([x(i + offset), y(p.ms)]);
        return;
      }
      flush();
      const m = document.createElementNS(svgNS, "rect");
      m.setAttribute("x", (x(i + offset) - 1.5).toFixed(1));
      m.setAttribute("y", String(H - pad - 3));
      m.setAttribute("width", "3");
      m.setAttribute("height", "3");
      m.classList.add("missed");
      svg.appendChild(m);
    });
    flush();
    summary.textContent = text + ` (${clock(polls[0].at)} – ${clock(polls[polls.length - 1].at)}).`;
  }

  $("detail-close").addEventListener("click", () => closeDetail());
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && detailID !== null) closeDetail();
  });
  window.addEventListener("hashchange", () => openDetail(instanceFromHash()));
  if (instanceFromHash()) openDetail(instanceFromHash());
})();
