// The self-healing panel: the latest healing actions from /api/health/healing/, newest first.
// Every action also publishes a system.alert (component "self_healing"); health-grid.js
// re-dispatches the page's websocket events as "qt:event", and on each such alert the list is
// re-read and the actions not shown yet are prepended (the alert carries only a sentence; the
// row carries kind, target, outcome, trigger and result apart). Re-read on (re)connect too, so
// actions taken while the socket was down show up.
(function () {
  "use strict";
  const panel = document.getElementById("healing-panel");
  if (!panel) return;
  const body = document.getElementById("healing-body");
  const empty = document.getElementById("healing-empty");
  const error = document.getElementById("healing-error");
  const MAX_ROWS = 20;
  const URL = `/api/health/healing/?limit=${MAX_ROWS}`;

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined || text === "" ? "–" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
  }

  function row(a) {
    const tr = document.createElement("tr");
    tr.dataset.id = String(a.id);
    tr.dataset.kind = a.kind;
    tr.dataset.outcome = a.outcome;
    tr.dataset.shadow = String(!!a.shadow);
    cell(tr, (a.created_at || "").replace("T", " ").slice(0, 19), "col-time");
    cell(tr, a.kind, "col-kind");
    cell(tr, a.target, "col-target");
    cell(tr, a.shadow ? `${a.outcome} (shadow)` : a.outcome, "col-outcome");
    cell(tr, a.trigger, "col-trigger");
    cell(tr, a.rule_name ? `${a.result} [rule ${a.rule_name}]` : a.result, "col-result");
    return tr;
  }

  let loading = false;
  let again = false;
  async function load() {
    // One read at a time; alerts arriving meanwhile ask for one more read after it.
    if (loading) { again = true; return; }
    loading = true;
    try {
      const r = await fetch(URL, {headers: {Accept: "application/json"}, credentials: "same-origin"});
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const actions = (await r.json()).results || [];
      const shown = new Set(Array.from(body.children, (tr) => tr.dataset.id));
      const first = !panel.dataset.loads;
      // Oldest first, so that the newest ends up on top.
      for (const a of actions.slice().reverse()) {
        if (shown.has(String(a.id))) continue;
        const tr = row(a);
        if (!first) tr.classList.add("fresh");
        body.prepend(tr);
      }
      while (body.children.length > MAX_ROWS) body.lastChild.remove();
      empty.hidden = body.children.length > 0;
      error.textContent = "";
      panel.dataset.loads = String(parseInt(panel.dataset.loads || "0", 10) + 1);
    } catch (err) {
      error.textContent = `self-healing actions unavailable: ${err.message}`;
    } finally {
      loading = false;
      if (again) { again = false; load(); }
    }
  }

  document.addEventListener("qt:event", (e) => {
    const ev = e.detail || {};
    if (ev.type === "system.alert" && (ev.payload || {}).component === "self_healing") load();
  });
  document.addEventListener("qt:ws-open", load);
  load();
})();
