// Shared by the fleet and agent pages: the token, fetch and SSE helpers, formatting, SVG charts.
"use strict";

const fleetUI = (() => {
  const params = new URLSearchParams(location.search);
  if (params.get("token")) sessionStorage.setItem("fleetToken", params.get("token"));
  const token = () => sessionStorage.getItem("fleetToken") || "";

  function withToken(url) {
    const t = token();
    if (!t) return url;
    return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(t);
  }

  async function getJSON(url) {
    const headers = token() ? { Authorization: "Bearer " + token() } : {};
    const r = await fetch(url, { headers });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || r.statusText);
    return r.json();
  }

  async function post(url, body) {
    const headers = { "Content-Type": "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    const r = await fetch(url, { method: "POST", headers, body: JSON.stringify(body || {}) });
    const data = await r.json().catch(() => ({}));
    return { status: r.status, data };
  }

  // EventSource reconnects by itself; the dot says whether updates are flowing
  function live(url, handlers) {
    const conn = document.getElementById("conn");
    const es = new EventSource(withToken(url));
    es.onopen = () => { conn.classList.add("on"); conn.title = "live"; };
    es.onerror = () => { conn.classList.remove("on"); conn.title = "reconnecting"; };
    for (const [name, fn] of Object.entries(handlers)) {
      es.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
    }
    return es;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
    return node;
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "-";
    const s = Math.floor(seconds);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  const usd = (x) => "$" + (Number(x) || 0).toFixed(2);

  function freshness(data) {
    const node = document.getElementById("freshness");
    const by = data.source === "loop" ? "by the loop" : "by this dashboard";
    node.textContent = data.observedAt ? `observed ${age(data.ageSeconds)} ago ${by}` : "not observed yet";
    const err = document.getElementById("error");
    err.hidden = !data.error;
    err.textContent = data.error || "";
  }

  const PALETTE = ["#2f6fde", "#e8833a", "#3aa675", "#c94f7c", "#8a63d2", "#b59a27", "#4bb3c9", "#777"];
  const PHASE_COLOURS = { Running: "#2f6fde", Succeeded: "#3aa675", Failed: "#d64545", Blocked: "#a01f1f",
                          Pending: "#d9a32a" };

  // series: [{name, colour, points: [[t, y], ...]}]; a small line chart in inline SVG, no library
  function lineChart(container, series, { yFormat = (y) => String(y), empty = "no history yet" } = {}) {
    container.textContent = "";
    const all = series.flatMap((s) => s.points);
    if (all.length < 1) { container.append(el("div", { class: "muted" }, empty)); return; }
    const W = 560, H = 180, L = 48, R = 8, T = 8, B = 22;
    const ts = all.map((p) => p[0]), ys = all.map((p) => p[1]);
    let t0 = Math.min(...ts), t1 = Math.max(...ts);
    if (t1 === t0) { t0 -= 30000; t1 += 30000; }
    const y1 = Math.max(1e-9, ...ys) * 1.1;
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - v / y1) * (H - T - B);
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("class", "svgchart");
    const add = (tag, attrs, text) => {
      const n = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
      if (text !== undefined) n.textContent = text;
      svg.append(n);
      return n;
    };
    for (const frac of [0, 0.5, 1]) {
      const v = (y1 / 1.1) * frac;
      add("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" });
      add("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", class: "axis" }, yFormat(v));
    }
    const fmt = (t) => new Date(t).toISOString().slice(11, t1 - t0 < 600000 ? 19 : 16);
    add("text", { x: L, y: H - 6, class: "axis" }, fmt(t0));
    add("text", { x: W - R, y: H - 6, "text-anchor": "end", class: "axis" }, fmt(t1));
    series.forEach((s, i) => {
      if (!s.points.length) return;
      const d = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
      add("path", { d, fill: "none", stroke: s.colour || PALETTE[i % PALETTE.length], "stroke-width": 2 });
      const last = s.points[s.points.length - 1];
      add("circle", { cx: x(last[0]), cy: y(last[1]), r: 3, fill: s.colour || PALETTE[i % PALETTE.length] });
    });
    container.append(svg);
    const legend = el("div", { class: "legend" });
    series.forEach((s, i) => {
      const sw = el("span", { class: "swatch" });
      sw.style.background = s.colour || PALETTE[i % PALETTE.length];
      legend.append(el("span", { class: "legend-item" }, sw, s.name));
    });
    container.append(legend);
  }

  return { token, withToken, getJSON, post, live, el, age, usd, freshness, lineChart, PALETTE, PHASE_COLOURS };
})();
