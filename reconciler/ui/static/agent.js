// One agent's page: status, the review packet (with delivery), conditions, timeline, commits, the log's live tail, and actions.
"use strict";
(() => {
  const { el, age, usd, freshness } = fleetUI;
  const name = decodeURIComponent(location.pathname.split("/").pop());
  document.getElementById("agent-name").textContent = name;
  const MAX_LOG = 200000;

  function renderSummary(data) {
    const r = data.row;
    const box = document.getElementById("summary");
    box.textContent = "";
    box.append(el("div", {}, el("span", { id: "agent-phase", class: "phase phase-" + r.phase, "data-phase": r.phase }, r.phase), "  ", el("span", { class: "muted" }, data.group)));
    if (r.reason) box.append(el("div", { class: "reason" }, r.reason));
    const facts = [["tier/model", (r.tier || "-") + (r.model ? "/" + r.model : "")], ["branch", r.branch || "-"],
      ["pid", r.pid ?? "-"], ["attempts", r.attempts], ["age", age(r.age_seconds)], ["idle", age(r.idle_seconds)],
      ["cost", usd(r.cost_usd)], ["dirty", r.dirty ?? "-"], ["ahead", r.ahead ?? "-"], ["sync", r.sync]];
    const dl = el("dl", { class: "facts" });
    for (const [k, v] of facts) dl.append(el("dt", {}, k), el("dd", {}, String(v)));
    box.append(dl);
  }

  function renderConditions(conds) {
    const box = document.getElementById("conditions");
    box.textContent = "";
    if (!conds.length) { box.append(el("div", { class: "muted" }, "none yet")); return; }
    const t = el("table", { class: "agents" });
    t.append(el("thead", {}, el("tr", {}, ...["type", "status", "reason", "message", "since"].map((h) => el("th", {}, h)))));
    const body = el("tbody");
    for (const c of conds) {
      body.append(el("tr", {}, el("td", {}, c.type), el("td", { class: "cond-" + c.status }, c.status), el("td", {}, c.reason),
        el("td", { class: "reason" }, c.message || ""), el("td", {}, c.lastTransitionTime ? new Date(c.lastTransitionTime).toLocaleString() : "")));
    }
    t.append(body);
    box.append(t);
  }

  function renderTimeline(events) {
    const box = document.getElementById("timeline");
    box.textContent = "";
    if (!events.length) { box.append(el("div", { class: "muted" }, "no runs yet")); return; }
    const list = el("ol", { class: "timeline" });
    for (const e of events) {
      list.append(el("li", { class: "ev ev-" + e.kind }, el("span", { class: "when" }, String(e.at).slice(0, 19).replace("T", " ")), " ", el("b", {}, e.kind), " ", e.text));
    }
    box.append(list);
  }

  function renderCommits(c) {
    const box = document.getElementById("commits");
    box.textContent = "";
    if (!c.available) { box.append(el("div", { class: "muted" }, c.why)); document.getElementById("diffstat").textContent = ""; return; }
    if (!c.commits.length) box.append(el("div", { class: "muted" }, "no commits ahead of base"));
    const list = el("ul", { class: "commits" });
    for (const k of c.commits) list.append(el("li", {}, el("code", {}, k.sha), " ", k.subject || "", " ", el("span", { class: "muted" }, k.at || "")));
    box.append(list);
    document.getElementById("diffstat").textContent = c.diffstat || "";
  }

  // the review packet (spec.delivery): what `fleet review` prints, and Approve / Reject
  function renderReview(data) {
    const r = data.review;
    document.getElementById("review-section").hidden = !r;
    if (!r) return;
    document.getElementById("review-against").textContent = `(${r.branch} against ${r.against})`;
    const state = document.getElementById("review-state");
    state.textContent = "";
    const d = r.delivery || {};
    state.append(el("div", { id: "review-delivery" }, "delivery: " + (d.state || "not yet") + (r.approval === "required" ? " · approval required" : "")));
    for (const key of ["approved", "rejected"]) {
      const v = d[key];
      if (v && typeof v === "object") state.append(el("div", { id: "review-" + key }, `${key} by ${v.by} at ${v.at}` + (v.message ? `: ${v.message}` : "")));
    }
    document.getElementById("review-message").textContent = r.final_message || "(none)";
    const commits = document.getElementById("review-commits");
    commits.textContent = "";
    if (!r.commits.length) commits.append(el("li", { class: "muted" }, "(none)"));
    for (const c of r.commits) { const i = c.indexOf(" "); commits.append(el("li", {}, el("code", {}, c.slice(0, i)), " ", c.slice(i + 1))); }
    document.getElementById("review-diffstat").textContent = r.diffstat || "(no changes)";
    const g = r.gates || {};
    const cond = g.condition || {};
    document.getElementById("review-gates").textContent = `agent gates ${(g.declared || []).join(", ") || "(none)"}: ${cond.reason || "not run"}` +
      (g.delivery && g.delivery.length ? `; delivery gates on the merged result: ${g.delivery.join(", ")}` : "");
    document.getElementById("review-cost").textContent = usd(r.cost_usd);
    document.getElementById("review-actions").hidden = !data.actions;
  }

  async function review(what, body) {
    const out = document.getElementById("review-result");
    out.textContent = `${what}…`;
    const by = document.getElementById("review-by").value.trim();
    const { status, data } = await fleetUI.post(`/api/agents/${encodeURIComponent(name)}/${what}`, { ...body, ...(by ? { by } : {}) });
    out.textContent = status === 200 ? data.message : `refused (${status}): ${data.error || data.message}`;
  }
  document.getElementById("act-approve").addEventListener("click", () => review("approve", {}));
  document.getElementById("act-reject").addEventListener("click", () => review("reject", { message: document.getElementById("reject-message").value }));

  function render(data) {
    document.getElementById("fleet-name").textContent = data.fleet;
    document.title = `${name} · fleet ${data.fleet}`;
    freshness({ ...data, ageSeconds: data.observedAt ? (Date.now() - Date.parse(data.observedAt)) / 1000 : null });
    renderSummary(data);
    renderConditions(data.row.conditions || []);
    renderTimeline(data.timeline || []);
    renderCommits(data.commits);
    renderReview(data);
    document.getElementById("actions-card").hidden = !data.actions;
  }

  const log = document.getElementById("log");
  function appendLog(text) {
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    log.textContent = (log.textContent + text).slice(-MAX_LOG);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", async () => {
      const what = button.dataset.action;
      const body = what === "resume" ? { message: document.getElementById("resume-message").value } : {};
      const out = document.getElementById("action-result");
      out.textContent = `${what}…`;
      const { status, data } = await fleetUI.post(`/api/agents/${encodeURIComponent(name)}/${what}`, body);
      out.textContent = status === 200 ? data.message : `refused (${status}): ${data.error || data.message}`;
    });
  }

  fleetUI.getJSON(`/api/agents/${encodeURIComponent(name)}`).then((data) => {
    render(data);
    appendLog(data.log.text);
    fleetUI.live(`/api/agents/${encodeURIComponent(name)}/events?offset=${data.log.offset}`, {
      agent: render,
      log: (chunk) => appendLog(chunk.text),
    });
  }).catch((err) => {
    const e = document.getElementById("error");
    e.hidden = false;
    e.textContent = String(err.message || err);
  });
})();
