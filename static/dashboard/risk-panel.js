// The risk panel: the system mode (read from /api/risk/mode/, then kept current by the
// system.mode_changed events health-grid.js receives on the page's websocket and re-dispatches
// as "qt:event"), the emergency stop for staff (a reason, then POST /api/risk/emergency-stop/)
// and the open positions (/api/trading/positions/?status=open, re-read on position.opened and
// position.closed), each with its position intelligence (/api/orchestration/positions/?open=true:
// class and score, the reasons on hover; re-read every INTELLIGENCE_MS, as the orchestrator
// classifies on its own clock). Load this before health-grid.js so it hears the socket's first
// "qt:ws-open".
(function () {
  "use strict";
  const panel = document.getElementById("risk-panel");
  if (!panel) return;
  const modeEl = document.getElementById("risk-mode");
  const modeDetail = document.getElementById("risk-mode-detail");
  const form = document.getElementById("estop-form");
  const result = document.getElementById("estop-result");
  const tbody = document.getElementById("positions-body");
  const empty = document.getElementById("positions-empty");
  const positionsError = document.getElementById("positions-error");
  const JSON_HEADERS = {Accept: "application/json"};
  const COLUMNS = ["symbol", "side", "amount", "entry_price", "mark_price", "leverage", "unrealized_pnl_usd",
                   "stop_loss_price", "take_profit_price", "opened_at"];
  const INTELLIGENCE_MS = 30000;

  // When the mode shown was set (server time). An answer about an older change never
  // overwrites a newer one: the page's first GET may return after the websocket's event.
  let modeAt = null;

  function showMode(mode, at, source, detail) {
    const t = at ? Date.parse(at) : null;
    if (modeAt !== null && (t === null || t < modeAt)) return;
    if (t !== null) modeAt = t;
    modeEl.dataset.mode = mode;
    modeEl.dataset.source = source;
    modeEl.textContent = mode;
    if (detail !== undefined) modeDetail.textContent = detail;
  }

  async function getJSON(url) {
    const r = await fetch(url, {headers: JSON_HEADERS, credentials: "same-origin"});
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return r.json();
  }

  async function loadMode() {
    try {
      const d = await getJSON("/api/risk/mode/");
      const last = (d.changes || [])[0];
      showMode(d.mode, d.changed_at, "api", last ? `${last.reason} (${last.changed_by})` : "");
    } catch (err) {
      modeDetail.textContent = `mode unavailable: ${err.message}`;
    }
  }

  function fmt(column, value) {
    if (value === null || value === undefined || value === "") return "–";
    if (column === "opened_at") return new Date(value).toISOString().replace("T", " ").slice(0, 19);
    if (typeof value === "string" && /^-?\d+\.\d+$/.test(value)) {
      const trimmed = value.replace(/\.?0+$/, "");
      return column.endsWith("_usd") ? parseFloat(value).toFixed(2) : trimmed;
    }
    return String(value);
  }

  let positionsSeq = 0;
  async function loadPositions() {
    const seq = ++positionsSeq;
    try {
      const [d, intel] = await Promise.all([
        getJSON("/api/trading/positions/?status=open&limit=200"),
        // Without it the table still shows; the column then says why it is empty.
        getJSON("/api/orchestration/positions/?open=true&limit=200").catch((err) => ({error: err.message})),
      ]);
      if (seq !== positionsSeq) return; // a newer load is under way
      const byPosition = new Map((intel.results || []).map((a) => [String(a.position_id), a]));
      const rows = (d.results || []).map((p) => {
        const tr = document.createElement("tr");
        tr.dataset.symbol = p.symbol;
        tr.dataset.positionId = p.position_id;
        tr.dataset.side = p.side;
        for (const c of COLUMNS) {
          const td = document.createElement("td");
          td.className = `col-${c}`;
          td.textContent = fmt(c, p[c]);
          tr.appendChild(td);
        }
        const td = document.createElement("td");
        td.className = "col-intelligence";
        const a = byPosition.get(String(p.position_id));
        if (a) {
          td.textContent = `${a.label.replace("_", " ")} ${a.score >= 0 ? "+" : ""}${a.score.toFixed(2)}`;
          td.title = (a.reasons || []).join("; ");
          td.dataset.label = a.label;
        } else {
          td.textContent = "–";
          td.title = intel.error ? `intelligence unavailable: ${intel.error}` : "not classified yet";
        }
        tr.appendChild(td);
        return tr;
      });
      tbody.replaceChildren(...rows);
      empty.hidden = rows.length > 0;
      positionsError.textContent = "";
      panel.dataset.positionsLoads = String((parseInt(panel.dataset.positionsLoads || "0", 10)) + 1);
    } catch (err) {
      if (seq === positionsSeq) positionsError.textContent = `positions unavailable: ${err.message}`;
    }
  }

  document.addEventListener("qt:event", (e) => {
    const ev = e.detail || {};
    const p = ev.payload || {};
    if (ev.type === "system.mode_changed") {
      showMode(p.mode, ev.timestamp, "event", `${p.previous_mode} → ${p.mode}: ${p.reason} (${p.changed_by})`);
    } else if (ev.type === "position.opened" || ev.type === "position.closed") {
      loadPositions();
    }
  });
  // (Re)connected: anything missed while the socket was down is read again.
  document.addEventListener("qt:ws-open", () => { loadMode(); loadPositions(); });
  setInterval(loadPositions, INTELLIGENCE_MS);

  function showResult(state, text) {
    result.dataset.state = state;
    result.textContent = text;
  }

  function errorText(body, status) {
    if (body && body.errors) return Object.entries(body.errors).map(([k, v]) => `${k}: ${v}`).join("; ");
    if (body && body.detail) return body.detail;
    return `HTTP ${status}`;
  }

  if (form) {
    const reasonInput = document.getElementById("estop-reason");
    const flattenInput = document.getElementById("estop-flatten");
    const button = document.getElementById("estop-button");
    const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const reason = reasonInput.value.trim();
      if (reason.replace(/\s/g, "").length < 3) {
        showResult("error", "give a reason (at least 3 characters)");
        reasonInput.focus();
        return;
      }
      const flatten = flattenInput.value === "" ? null : flattenInput.value === "true";
      button.disabled = true;
      showResult("pending", "stopping…");
      try {
        const r = await fetch("/api/risk/emergency-stop/", {
          method: "POST",
          credentials: "same-origin",
          headers: {...JSON_HEADERS, "Content-Type": "application/json", "X-CSRFToken": csrf},
          body: JSON.stringify({reason, flatten}),
        });
        const body = await r.json().catch(() => ({}));
        if (r.ok) {
          showResult("ok", body.already_halted ? "the system was already HALTED: open orders are cancelled and positions flattened again"
            : "HALTED: new orders refused, open orders being cancelled");
          reasonInput.value = "";
          // The mode normally arrives over the websocket; read it if it has not within 5 s.
          setTimeout(() => { if (modeEl.dataset.mode !== "HALTED") loadMode(); }, 5000);
        } else {
          showResult("error", errorText(body, r.status));
        }
      } catch (err) {
        showResult("error", `request failed: ${err.message}`);
      } finally {
        button.disabled = false;
      }
    });
  }

  loadMode();
  loadPositions();
})();
