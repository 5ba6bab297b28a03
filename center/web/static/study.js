// Long-term studies (issue #13): the list with progress, and one study: facts, an hour's
// compressed overview (one row per minute), the full disclosure on ECG paper (25 mm/s,
// 10 mm/mV, a minute per page in rows of 10 s) with beats, events and episodes marked.
// Same paper and trace conventions as the strip viewer (strip.js). No interpretation.
"use strict";
(() => {
  const { api, el, fmt, localTime } = Center;
  const SVG = "http://www.w3.org/2000/svg";
  const MM_PER_S = 25, MM_PER_MV = 10, ROW_S = 10, PAGE_S = 60, LEFT_MM = 12, OVERVIEW_MM_PER_MV = 5;
  const pxmm = Number(localStorage.getItem("ecg-center-pxmm") || document.body.dataset.pxPerMm || 3.78);
  const iso = (t) => new Date(t * 1000).toISOString();
  const hours = (s) => `${(s / 3600).toFixed(1)} h`;

  function svgEl(tag, attrs = {}, text) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function paper(widthMm, heightMm, k) {  // 1 mm and 5 mm grid
    const svg = svgEl("svg", { width: Math.ceil(widthMm * k), height: Math.ceil(heightMm * k) });
    const defs = svgEl("defs");
    const small = svgEl("pattern", { id: `g1-${k}`, width: k, height: k, patternUnits: "userSpaceOnUse" });
    small.append(svgEl("path", { d: `M${k} 0L0 0 0 ${k}`, fill: "none", stroke: "#f3bcbc", "stroke-width": 0.5 }));
    const big = svgEl("pattern", { id: `g5-${k}`, width: 5 * k, height: 5 * k, patternUnits: "userSpaceOnUse" });
    big.append(svgEl("rect", { width: 5 * k, height: 5 * k, fill: `url(#g1-${k})` }),
               svgEl("path", { d: `M${5 * k} 0L0 0 0 ${5 * k}`, fill: "none", stroke: "#e07a7a", "stroke-width": 1 }));
    defs.append(small, big);
    svg.append(defs, svgEl("rect", { width: "100%", height: "100%", fill: "#fff7f7" }),
               svgEl("rect", { width: "100%", height: "100%", fill: `url(#g5-${k})` }));
    return svg;
  }
  function trace(values, fs, x0, yBase, k, mmPerS, mmPerMv = MM_PER_MV) {  // nulls break the line (a gap stays a gap)
    const seen = values.filter((v) => v !== null).sort((a, b) => a - b);
    const mid = seen.length ? seen[Math.floor(seen.length / 2)] : 0;
    let d = "", pen = false;
    values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      const x = (x0 + (i / fs) * mmPerS) * k, y = (yBase - ((v - mid) / 1000) * mmPerMv) * k;
      d += `${pen ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`;
      pen = true;
    });
    return svgEl("path", { d, fill: "none", stroke: "#111", "stroke-width": Math.max(1, 0.3 * k).toFixed(2), class: "ecg" });
  }
  function mark(svg, x, y0, y1, k, color, text) {
    svg.append(svgEl("line", { x1: x * k, x2: x * k, y1: y0 * k, y2: y1 * k, stroke: color, "stroke-width": 2, "stroke-dasharray": "5 3" }));
    if (text) svg.append(svgEl("text", { x: x * k + 3, y: y0 * k + 12, fill: color, "font-size": 11 }, text));
  }

  async function listPage() {
    const resp = await api("/api/studies");
    const rows = await resp.json();
    document.getElementById("studies").replaceChildren(...rows.map((s) => el("tr", {},
      el("td", {}, el("a", { href: `/study/${encodeURIComponent(s.study_id)}`, text: s.study_id })),
      el("td", { text: `${s.gateway} / ${s.device}` }), el("td", { text: s.patient || "–" }),
      el("td", { text: localTime(iso(s.started_at)) }), el("td", { text: hours(s.wear_s) }),
      el("td", { class: "num", text: fmt(s.hours_recorded, 2) }),
      el("td", { class: "num", text: s.analysable_share === null ? "–" : `${(100 * s.analysable_share).toFixed(1)} %` }),
      el("td", { class: "num", text: String(s.records) }), el("td", { text: s.ended_at ? "ended" : "recording" }))));
  }

  let study = null, hour = 0, page = 0;
  async function loadStudy(id) {
    study = await (await api(`/api/studies/${encodeURIComponent(id)}`)).json();
    document.getElementById("study-sub").textContent = `${study.gateway} / ${study.device}`;
    const facts = [["Patient (pseudonym)", study.patient || "not set"], ["Start", localTime(iso(study.started_at))],
      ["End", study.ended_at ? localTime(iso(study.ended_at)) : `recording (last record ends ${localTime(iso(study.last_end_at))})`],
      ["Wear time", hours(study.wear_s)], ["Hours recorded", fmt(study.hours_recorded, 2)],
      ["Analysable share", study.analysable_share === null ? "not analysed yet" : `${(100 * study.analysable_share).toFixed(1)} %`],
      ["Records", String(study.records)], ["Events during the study", String(study.events.length)],
      ["Episodes (automated, to verify)", String(study.episodes.length)]];
    document.getElementById("study-facts").replaceChildren(el("table", {}, ...facts.map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: v })))));
    document.getElementById("versions").replaceChildren(el("tr", {}, ...["Record", "Version", "State", "Start", "Missing samples", "SHA-256"].map((h) => el("th", { text: h }))),
      ...study.versions.map((v) => el("tr", {}, el("td", { text: v.name }), el("td", { class: "num", text: String(v.version) }), el("td", { text: v.state }),
        el("td", { text: v.start_at ? localTime(iso(v.start_at)) : "–" }), el("td", { class: "num", text: v.missing ?? "–" }), el("td", { text: v.sha256.slice(0, 16) + "…" }))));
    const form = document.getElementById("study-edit");
    form.hidden = !document.getElementById("study-head").dataset.supervisor;
    document.getElementById("patient").value = study.patient || "";
    drawOverview(); drawPage();
  }

  async function drawOverview() {  // an hour: 60 rows of one minute, min/max envelope
    const id = encodeURIComponent(study.study_id);
    const ov = await (await api(`/api/studies/${id}/overview?hour=${hour}`)).json();
    // true millimetres (the paper's grid), the minute stretched over the page's width; a
    // compressed view, so 5 mm/mV in rows of 10 mm (the full disclosure is the tracing)
    const k = pxmm, rowMm = 10, perRow = Math.round(60 * ov.fs);
    const widthPx = Math.max(600, document.getElementById("overview").clientWidth - 24);
    const mmPerS = Math.max(2.5, (widthPx / k - LEFT_MM - 4) / 60);
    const svg = paper(LEFT_MM + 60 * mmPerS + 4, 60 * rowMm + 4, k);
    for (let r = 0; r < 60; r++) {
      const base = r * rowMm + rowMm * 0.6, lo = ov.min.slice(r * perRow, (r + 1) * perRow), hi = ov.max.slice(r * perRow, (r + 1) * perRow);
      svg.append(svgEl("text", { x: 2, y: (base + 1) * k, "font-size": 11 }, `${String(r).padStart(2, "0")}′`));
      const both = lo.flatMap((v, i) => [v, hi[i]]);
      svg.append(trace(both, 2 * ov.fs, LEFT_MM, base, k, mmPerS, OVERVIEW_MM_PER_MV));
    }
    for (const e of study.events.concat(study.episodes.map((x) => ({ ...x, trigger: x.kind })))) {
      const s = e.at_s - hour * 3600;
      if (s < 0 || s >= 3600) continue;
      const r = Math.floor(s / 60), x = LEFT_MM + (s % 60) * mmPerS;
      mark(svg, x, r * rowMm, (r + 1) * rowMm, k, e.trigger === "button" ? "#b00020" : "#0b5cad", e.trigger);
    }
    svg.id = "overview-svg";
    svg.addEventListener("click", (ev) => {  // a click opens that minute in the full disclosure
      const row = Math.floor(ev.offsetY / (rowMm * k));
      page = hour * 60 + Math.max(0, Math.min(59, row)); drawPage();
    });
    document.getElementById("overview").replaceChildren(svg);
    document.getElementById("hour-label").textContent = String(hour);
  }

  async function drawPage() {  // a minute on paper: 6 rows of 10 s
    const id = encodeURIComponent(study.study_id);
    const w = await (await api(`/api/studies/${id}/ecg?at=${page * PAGE_S}&seconds=${PAGE_S}`)).json();
    const k = pxmm, rowMm = 30, per = Math.round(ROW_S * w.fs), rows = PAGE_S / ROW_S;
    const svg = paper(LEFT_MM + ROW_S * MM_PER_S + 4, rows * rowMm + 4, k);
    for (let r = 0; r < rows; r++) {
      const base = r * rowMm + rowMm * 0.6;
      svg.append(svgEl("text", { x: 2, y: (r * rowMm + 6) * k, "font-size": 11 }, `+${r * ROW_S} s`));
      svg.append(trace(w.data.slice(r * per, (r + 1) * per), w.fs, LEFT_MM, base, k, MM_PER_S));
      for (const b of w.beats.filter((b) => b >= r * ROW_S && b < (r + 1) * ROW_S))
        svg.append(svgEl("line", { x1: (LEFT_MM + (b - r * ROW_S) * MM_PER_S) * k, x2: (LEFT_MM + (b - r * ROW_S) * MM_PER_S) * k,
                                   y1: (r * rowMm + 2) * k, y2: (r * rowMm + 4) * k, stroke: "#0b5cad", "stroke-width": 2, class: "beat" }));
    }
    for (const e of study.events) {
      const s = e.at_s - page * PAGE_S;
      if (s >= 0 && s < PAGE_S) { const r = Math.floor(s / ROW_S); mark(svg, LEFT_MM + (s % ROW_S) * MM_PER_S, r * rowMm, (r + 1) * rowMm, k, "#b00020", `${e.trigger} · ${e.rhythm}`); }
    }
    svg.id = "disclosure-svg";
    svg.dataset.samples = String(w.data.filter((v) => v !== null).length);
    document.getElementById("disclosure").replaceChildren(svg);
    document.getElementById("page-label").textContent = `${localTime(iso(w.start))} (minute ${page})`;
  }

  async function save(ev) {
    ev.preventDefault();
    const body = { patient: document.getElementById("patient").value };
    const end = document.getElementById("ended").value.trim();
    if (end) body.ended_at = end;
    const resp = await api(`/api/studies/${encodeURIComponent(study.study_id)}`, { method: "POST", body: JSON.stringify(body) });
    document.getElementById("edit-result").textContent = resp.ok ? "saved" : `not saved (${resp.status})`;
    if (resp.ok) loadStudy(study.study_id);
  }

  const head = document.getElementById("study-head");
  if (!head) { listPage(); return; }
  document.getElementById("hour-prev").addEventListener("click", () => { hour = Math.max(0, hour - 1); drawOverview(); });
  document.getElementById("hour-next").addEventListener("click", () => { hour += 1; drawOverview(); });
  document.getElementById("page-prev").addEventListener("click", () => { page = Math.max(0, page - 1); drawPage(); });
  document.getElementById("page-next").addEventListener("click", () => { page += 1; drawPage(); });
  document.getElementById("study-edit").addEventListener("submit", save);
  loadStudy(head.dataset.studyId);
})();
