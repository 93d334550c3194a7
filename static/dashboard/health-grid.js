// Live service health grid: a snapshot on connect, then heartbeats, health.status and
// system.alert events pushed over the dashboard websocket. Ages tick locally between events.
// Statuses are those of the server (HEALTHY, DEGRADED, CRITICAL, DISABLED); each card also lists
// its queues' backlog (messages waiting, age of the oldest) from the health graph, re-read every
// GRAPH_REFRESH_MS from /api/health/graph/.
// The page's one websocket lives here; every event it receives is also dispatched on
// `document` as a "qt:event" CustomEvent (detail: the event) for the other panels.
(function () {
  "use strict";
  const grid = document.getElementById("health-grid");
  const wsState = document.getElementById("ws-state");
  const alerts = document.getElementById("alerts");
  // service -> {queue -> ms epoch of that queue's freshest heartbeat (browser clock)}. A service's
  // heartbeat age is that of its stalest queue, as on the server (qtweb/health/status.py): a
  // beat on one queue must not hide a silent other one.
  const lastBeat = {};
  // The server's HEARTBEAT_STALE_SECONDS, rendered into the page.
  const STALE_SECONDS = parseFloat(grid.dataset.staleSeconds) || 15;
  // The monitor rebuilds the graph every 5 s; a backlog a few seconds old is current enough.
  const GRAPH_REFRESH_MS = 10000;

  // Events stored before CRITICAL replaced UNHEALTHY (the server maps it the same way).
  function normalize(status) {
    return status === "UNHEALTHY" ? "CRITICAL" : status;
  }

  function card(service) {
    let el = grid.querySelector(`[data-service="${CSS.escape(service)}"]`);
    if (!el) {
      el = document.createElement("article");
      el.className = "card";
      el.dataset.service = service;
      el.innerHTML = `<h2></h2><p class="status"></p><p class="age">heartbeat: <span class="age-value"></span></p><p class="reason"></p>`;
      el.querySelector("h2").textContent = service;
      grid.appendChild(el);
    }
    return el;
  }

  function setStatus(service, status, reason) {
    const el = card(service);
    status = normalize(status);
    // The server's word replaces the page's own stale-heartbeat guess (see the timer below).
    delete el.dataset.staleLocal;
    el.dataset.status = status;
    el.querySelector(".status").textContent = status;
    if (reason !== undefined) el.querySelector(".reason").textContent = reason || "";
  }

  function serviceAge(service) {
    const beats = Object.values(lastBeat[service] || {});
    if (!beats.length) return null;
    return Math.max(0, (Date.now() - Math.min(...beats)) / 1000);
  }

  function renderAge(service) {
    const el = card(service);
    const span = el.querySelector(".age-value");
    const age = serviceAge(service);
    if (age === null) { span.dataset.age = ""; span.textContent = "never"; return; }
    span.dataset.age = age.toFixed(1);
    span.textContent = `${age.toFixed(0)} s ago`;
  }

  function applySnapshot(services) {
    for (const [name, svc] of Object.entries(services)) {
      setStatus(name, svc.status, svc.reason);
      const beats = {};
      const queues = Object.entries(svc.queues || {});
      for (const [queue, q] of queues) {
        if (q.last_heartbeat_age_seconds != null) beats[queue] = Date.now() - q.last_heartbeat_age_seconds * 1000;
      }
      if (!queues.length && svc.last_heartbeat_age_seconds != null) {
        beats["*"] = Date.now() - svc.last_heartbeat_age_seconds * 1000;
      }
      lastBeat[name] = beats;
      renderAge(name);
    }
  }

  function onEvent(ev) {
    const p = ev.payload || {};
    if (ev.type === "service.heartbeat") {
      (lastBeat[p.service] ||= {})[p.queue] = Date.now();
      renderAge(p.service);
      const el = card(p.service);
      el.dataset.lastWorker = p.worker;
      // The page itself turned the card CRITICAL for a missed heartbeat: every queue beats
      // again, so it goes back to what the server said before. A CRITICAL from the server stays
      // until the next health.status.
      if (el.dataset.staleLocal && serviceAge(p.service) <= STALE_SECONDS) {
        setStatus(p.service, "HEALTHY", "");
      }
    } else if (ev.type === "health.status") {
      for (const [name, svc] of Object.entries(p.services || {})) setStatus(name, svc.status, svc.reason);
    } else if (ev.type === "system.alert") {
      const li = document.createElement("li");
      li.textContent = `${ev.timestamp} [${p.severity}] ${p.message}`;
      alerts.prepend(li);
      while (alerts.children.length > 20) alerts.lastChild.remove();
    }
  }

  let retryMs = 1000;
  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws/dashboard/`);
    ws.onopen = () => {
      wsState.dataset.state = "live"; wsState.textContent = "live"; retryMs = 1000;
      // Other panels (risk-panel.js) share this socket: they re-read their state on (re)connect.
      document.dispatchEvent(new CustomEvent("qt:ws-open"));
    };
    ws.onclose = () => {
      wsState.dataset.state = "closed"; wsState.textContent = "reconnecting…";
      setTimeout(connect, retryMs); retryMs = Math.min(retryMs * 2, 15000);
    };
    ws.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      if (data.kind === "snapshot") applySnapshot(data.services);
      else if (data.kind === "event") {
        onEvent(data.event);
        document.dispatchEvent(new CustomEvent("qt:event", {detail: data.event}));
      }
    };
  }

  setInterval(() => {
    for (const name of Object.keys(lastBeat)) {
      renderAge(name);
      const el = card(name);
      const age = serviceAge(name);
      // As the server rules (qtweb/health/status.py): a queue without a heartbeat within the
      // stale window has no live worker, and its service is CRITICAL. DISABLED stays DISABLED.
      if (age !== null && age > STALE_SECONDS && el.dataset.status === "HEALTHY") {
        setStatus(name, "CRITICAL", `no heartbeat for ${age.toFixed(0)} s`);
        el.dataset.staleLocal = "1";
      }
    }
  }, 1000);

  function fmtSeconds(s) {
    if (typeof s !== "number") return "";
    if (s < 120) return `${s.toFixed(0)} s`;
    if (s < 7200) return `${(s / 60).toFixed(0)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  // A graph older than this means the monitor has stopped storing new ones: the lines say so.
  const GRAPH_STALE_SECONDS = 60;

  // One line per queue of the service: "inference: 3 waiting, oldest 12 s".
  function renderQueues(graph) {
    const age = typeof graph.age_seconds === "number" ? graph.age_seconds : 0;
    const asOf = age > GRAPH_STALE_SECONDS ? ` (as of ${fmtSeconds(age)} ago)` : "";
    const byService = {};
    for (const [name, q] of Object.entries(graph.queues || {})) (byService[q.service] ||= []).push([name, q]);
    for (const [service, queues] of Object.entries(byService)) {
      const el = card(service);
      let list = el.querySelector(".queues");
      if (!list) {
        list = document.createElement("ul");
        list.className = "queues";
        el.appendChild(list);
      }
      list.replaceChildren(...queues.map(([name, q]) => {
        const li = document.createElement("li");
        li.dataset.queue = name;
        li.dataset.status = q.status || "";
        li.dataset.depth = q.depth === null || q.depth === undefined ? "" : String(q.depth);
        let text = `${name}: `;
        if (typeof q.depth !== "number") text += "backlog unknown";
        else text += `${q.depth} waiting${q.depth && typeof q.oldest_age_seconds === "number" ? `, oldest ${fmtSeconds(q.oldest_age_seconds)}` : ""}`;
        li.textContent = text + asOf;
        if (q.reasons && q.reasons.length) li.title = q.reasons.join("; ");
        return li;
      }));
    }
    grid.dataset.graphAge = typeof graph.age_seconds === "number" ? String(graph.age_seconds) : "";
  }

  async function loadGraph() {
    try {
      const r = await fetch("/api/health/graph/", {headers: {Accept: "application/json"}, credentials: "same-origin"});
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      renderQueues(await r.json());
    } catch (err) {
      grid.dataset.graphError = err.message;  // the statuses still come over the websocket
      return;
    }
    delete grid.dataset.graphError;
  }
  loadGraph();
  setInterval(loadGraph, GRAPH_REFRESH_MS);
  for (const el of grid.querySelectorAll(".card")) {
    const age = el.querySelector(".age-value").dataset.age;
    // The page's first render only has the service's age; the snapshot brings each queue's.
    if (age !== "" && age !== undefined) lastBeat[el.dataset.service] = {"*": Date.now() - parseFloat(age) * 1000};
  }
  connect();
})();
