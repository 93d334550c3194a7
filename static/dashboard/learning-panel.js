// The learning panel: each champion's latest drift score and the retraining jobs, read from
// /api/learning/drift/ and /api/learning/jobs/, re-read on every learning.event that
// health-grid.js re-dispatches as "qt:event"; the events themselves are listed as they arrive.
(function () {
  "use strict";
  const panel = document.getElementById("learning-panel");
  if (!panel) return;
  const driftBody = document.getElementById("drift-body");
  const jobsBody = document.getElementById("jobs-body");
  const eventsList = document.getElementById("learning-events");
  const error = document.getElementById("learning-error");
  const MAX_EVENTS = 20;

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined || text === "" ? "–" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
  }

  function num(x, digits) {
    return typeof x === "number" ? x.toFixed(digits) : "–";
  }

  async function getJSON(url) {
    const r = await fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin"});
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return r.json();
  }

  let seq = 0;
  async function load() {
    const mine = ++seq;
    try {
      const [drift, jobs] = await Promise.all([getJSON("/api/learning/drift/"), getJSON("/api/learning/jobs/?limit=8")]);
      if (mine !== seq) return;
      driftBody.replaceChildren(...drift.map((d) => {
        const tr = document.createElement("tr");
        tr.dataset.modelType = d.model_type;
        tr.dataset.detected = String(!!d.detected);
        cell(tr, `${d.model_type} v${d.model_version}${d.quarantined ? " (quarantined)" : ""}`);
        cell(tr, num(d.drift_score, 3), "col-drift");
        cell(tr, num(d.threshold, 2));
        cell(tr, Object.entries(d.parts || {}).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", "));
        cell(tr, d.action);
        return tr;
      }));
      jobsBody.replaceChildren(...(jobs.results || []).map((j) => {
        const tr = document.createElement("tr");
        tr.dataset.jobId = String(j.id);
        tr.dataset.status = j.status;
        cell(tr, j.id);
        cell(tr, j.model_type);
        cell(tr, j.trigger);
        cell(tr, j.status === "running" ? `running: ${j.stage}` : j.status, "col-status");
        cell(tr, j.decision || j.error);
        cell(tr, num(j.champion_score, 2));
        cell(tr, num(j.challenger_score, 2));
        return tr;
      }));
      error.textContent = "";
      panel.dataset.loads = String(parseInt(panel.dataset.loads || "0", 10) + 1);
    } catch (err) {
      if (mine === seq) error.textContent = `learning state unavailable: ${err.message}`;
    }
  }

  function describe(p) {
    const model = `${p.model_type}${p.model_version ? " v" + p.model_version : ""}`;
    const bits = [p.kind, model];
    if (typeof p.drift_score === "number") bits.push(`drift ${p.drift_score.toFixed(3)} > ${p.threshold}`);
    if (typeof p.challenger_score === "number") {
      bits.push(`challenger ${p.challenger_score.toFixed(2)} bps vs champion ${num(p.champion_score, 2)} bps`);
    }
    if (p.job_id) bits.push(`job ${p.job_id}`);
    if (p.reason) bits.push(p.reason);
    return bits.join(" · ");
  }

  document.addEventListener("qt:event", (e) => {
    const ev = e.detail || {};
    if (ev.type !== "learning.event") return;
    const li = document.createElement("li");
    li.dataset.kind = (ev.payload || {}).kind || "";
    li.textContent = `${(ev.timestamp || "").replace("T", " ").slice(0, 19)} ${describe(ev.payload || {})}`;
    eventsList.prepend(li);
    while (eventsList.children.length > MAX_EVENTS) eventsList.lastChild.remove();
    load();
  });
  document.addEventListener("qt:ws-open", load);
  load();
})();
