// Live service health grid: a snapshot on connect, then heartbeats, health.status and
// system.alert events pushed over the dashboard websocket. Ages tick locally between events.
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
      if (age !== null && age > STALE_SECONDS && el.dataset.status === "HEALTHY") setStatus(name, "DEGRADED", `no heartbeat for ${age.toFixed(0)} s`);
    }
  }, 1000);
  for (const el of grid.querySelectorAll(".card")) {
    const age = el.querySelector(".age-value").dataset.age;
    // The page's first render only has the service's age; the snapshot brings each queue's.
    if (age !== "" && age !== undefined) lastBeat[el.dataset.service] = {"*": Date.now() - parseFloat(age) * 1000};
  }
  connect();
})();
