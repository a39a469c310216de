// The fleet page: groups of agents, spend, caps, the loop, the plan, charts; live over SSE.
"use strict";
(() => {
  const { el, age, usd, freshness, lineChart, PHASE_COLOURS } = fleetUI;
  const GROUPS = ["Needs attention", "Working", "Pending", "Done"];

  function bar(spent, budget) {
    if (!budget) return el("span", { class: "muted" }, "no budget");
    const pct = Math.min(100, (100 * spent) / budget);
    const outer = el("span", { class: "bar" + (pct >= 100 ? " over" : "") });
    const inner = el("span", { class: "fill" });
    inner.style.width = pct.toFixed(1) + "%";
    outer.append(inner);
    return el("span", {}, outer, ` ${usd(spent)} of ${usd(budget)}`);
  }

  function renderSpend(spend) {
    const box = document.getElementById("spend");
    box.textContent = "";
    box.append(el("div", { class: "big" }, usd(spend.today)));
    box.append(el("div", {}, "fleet: ", bar(spend.today, spend.budget)));
    for (const [tier, t] of Object.entries(spend.tiers)) {
      box.append(el("div", {}, `${tier}: `, bar(t.spent, t.budget)));
    }
  }

  function renderCaps(caps) {
    const box = document.getElementById("caps");
    box.textContent = "";
    const line = (label, c) => el("div", {}, `${label}: ${c.running} running` +
      (c.maxRunning ? ` of ${c.maxRunning}` : " (no cap)"));
    if (caps.fleet) box.append(line("fleet", caps.fleet));
    for (const [tier, c] of Object.entries(caps.tiers || {})) box.append(line("tier " + tier, c));
  }

  function renderReconcile(data) {
    const box = document.getElementById("reconcile");
    box.textContent = "";
    const loop = data.loop;
    if (!loop) {
      box.append(el("div", {}, "no loop running"));
      box.append(el("div", { class: "muted" }, "start one: fleet reconcile FILE --watch"));
      return;
    }
    const since = (iso) => iso ? age((Date.now() - Date.parse(iso)) / 1000) + " ago" : "-";
    const until = (iso) => iso ? "in " + age(Math.max(0, (Date.parse(iso) - Date.now()) / 1000)) : "-";
    box.append(el("div", {}, `loop pid ${loop.pid}, ${loop.schedule}`));
    box.append(el("div", {}, "last reconcile: ", el("span", { id: "last-tick" }, since(loop.lastTick))));
    box.append(el("div", {}, "next reconcile: ", el("span", { id: "next-tick" }, until(loop.nextTick))));
  }

  function renderPlan(plan) {
    const box = document.getElementById("plan");
    box.textContent = "";
    if (!plan.actions.length) {
      box.append(el("div", { class: "ok" }, "nothing: the fleet is in sync"));
    } else {
      const list = el("ul", { class: "plan" });
      for (const a of plan.actions.slice(0, 50)) {
        list.append(el("li", {}, el("code", {}, a.kind), " ", el("a", { href: "/agents/" + encodeURIComponent(a.agent) }, a.agent), " ", el("span", { class: "muted" }, a.reason)));
      }
      if (plan.actions.length > 50) list.append(el("li", { class: "muted" }, `… and ${plan.actions.length - 50} more`));
      box.append(list);
    }
    for (const n of plan.notes) box.append(el("div", { class: "muted" }, n));
  }

  function row(a) {
    const tr = el("tr", { id: "agent-" + a.agent, "data-phase": a.phase, "data-group": a.group });
    const link = el("a", { href: "/agents/" + encodeURIComponent(a.agent) }, a.agent);
    tr.append(el("td", {}, link, a.declared ? "" : el("span", { class: "muted" }, " (undeclared)")));
    const phase = el("span", { class: "phase phase-" + a.phase }, a.phase);
    tr.append(el("td", { class: "phase-cell" }, phase));
    tr.append(el("td", {}, (a.tier || "-") + (a.model ? "/" + a.model : "")));
    tr.append(el("td", { class: "num" }, a.dirty ?? "-"));
    tr.append(el("td", { class: "num" }, a.ahead ?? "-"));
    tr.append(el("td", { class: "num" }, usd(a.cost_usd)));
    tr.append(el("td", {}, age(a.idle_seconds)));
    tr.append(el("td", { class: "reason" }, a.reason || ""));
    return tr;
  }

  function renderGroups(groups) {
    const box = document.getElementById("groups");
    box.textContent = "";
    for (const g of GROUPS) {
      const rows = groups[g] || [];
      const section = el("div", { class: "group", id: "group-" + g.toLowerCase().replace(/ /g, "-") });
      section.append(el("h2", {}, `${g} `, el("span", { class: "count" }, String(rows.length))));
      if (!rows.length) { section.append(el("div", { class: "muted" }, "none")); box.append(section); continue; }
      const table = el("table", { class: "agents" });
      const head = el("tr");
      for (const h of ["agent", "phase", "tier/model", "dirty", "ahead", "cost", "idle", "reason"]) head.append(el("th", {}, h));
      table.append(el("thead", {}, head));
      const body = el("tbody");
      for (const a of rows) body.append(row(a));
      table.append(body);
      section.append(table);
      box.append(section);
    }
  }

  function renderCharts(history) {
    const t = (p) => Date.parse(p.at);
    const tiers = [...new Set(history.flatMap((p) => Object.keys(p.spendTodayByTier || {})))];
    lineChart(document.getElementById("chart-spend"),
      [{ name: "all tiers", colour: "#444", points: history.map((p) => [t(p), p.spendTodayUsd || 0]) },
       ...tiers.map((tier) => ({ name: tier, points: history.map((p) => [t(p), (p.spendTodayByTier || {})[tier] || 0]) }))],
      { yFormat: (v) => "$" + v.toFixed(2) });
    const phases = [...new Set(history.flatMap((p) => Object.keys(p.phases || {})))];
    lineChart(document.getElementById("chart-phases"),
      phases.map((ph) => ({ name: ph, colour: PHASE_COLOURS[ph], points: history.map((p) => [t(p), (p.phases || {})[ph] || 0]) })),
      { yFormat: (v) => String(Math.round(v)) });
  }

  let latest = null;
  function render(data) {
    latest = data;
    document.getElementById("fleet-name").textContent = data.fleet;
    document.title = "fleet " + data.fleet;
    freshness(data);
    renderSpend(data.spend);
    renderCaps(data.caps);
    renderReconcile(data);
    renderPlan(data.plan);
    renderGroups(data.groups);
    renderCharts(data.history);
  }

  // ages move between observations: redraw the header and loop times every second
  setInterval(() => {
    if (!latest) return;
    if (latest.ageSeconds !== null) latest.ageSeconds += 1;
    freshness(latest);
    renderReconcile(latest);
  }, 1000);

  fleetUI.live("/api/events", { fleet: render });
})();
