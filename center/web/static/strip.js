// The strip viewer: ECG paper in SVG at 25 mm/s and 10 mm/mV at a stated screen calibration.
// 1 mm / 5 mm grid, 1 mV × 200 ms calibration pulse per row, lead names as written, the press
// and the pre/post window, gaps as gaps, beat marks and RR intervals on demand, zoom, and the
// standard 12-lead layout (4 columns × 3 rows + rhythm strip II). No interpretation.
"use strict";
(() => {
  const { api, el, fmt, localTime } = Center;
  const SVG = "http://www.w3.org/2000/svg";
  const MM_PER_S = 25, MM_PER_MV = 10, ROW_S = 10, LEFT_MM = 15, RIGHT_MM = 5;
  const STANDARD = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]];
  const msgId = document.getElementById("strip-head").dataset.msgId;
  const body = document.body;
  let pxmm = Number(localStorage.getItem("ecg-center-pxmm") || body.dataset.pxPerMm || 3.78);
  let zoom = 1;
  let view = null;

  function svgEl(tag, attrs = {}, text) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }
  const median = (xs) => {
    const v = xs.filter((x) => x !== null).sort((a, b) => a - b);
    return v.length ? v[Math.floor(v.length / 2)] : 0;
  };

  // One trace: samples [i0, i1) of a lead from x0 (mm) on a baseline y (mm). Nulls break the
  // line (a gap is drawn as a gap). Returns the number of samples drawn.
  function trace(g, ctx, samples, i0, i1, x0, yBase) {
    const k = ctx.k, fs = view.fs, seg = samples.slice(i0, i1), mid = median(seg);
    let d = "", pen = false, drawn = 0;
    for (let i = 0; i < seg.length; i++) {
      const v = seg[i];
      if (v === null) { pen = false; continue; }
      const x = (x0 + (i / fs) * MM_PER_S) * k, y = (yBase - ((v - mid) / 1000) * MM_PER_MV) * k;
      d += `${pen ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)}`;
      pen = true; drawn++;
    }
    g.append(svgEl("path", { d, class: "ecg", fill: "none", stroke: "#111", "stroke-width": Math.max(1, 0.35 * k).toFixed(2),
                             "stroke-linejoin": "round", "data-samples": drawn }));
    return drawn;
  }

  function calPulse(g, ctx, x0, yBase) {  // 1 mV high (10 mm), 200 ms wide (5 mm)
    const k = ctx.k, top = yBase - MM_PER_MV;
    const pts = [[x0, yBase], [x0 + 1, yBase], [x0 + 1, top], [x0 + 6, top], [x0 + 6, yBase], [x0 + 8, yBase]];
    g.append(svgEl("path", { d: "M" + pts.map(([x, y]) => `${x * k} ${y * k}`).join("L"), class: "cal",
                             fill: "none", stroke: "#111", "stroke-width": Math.max(1, 0.35 * k) }));
  }
  function label(g, ctx, x, y, text, cls = "lead") {
    g.append(svgEl("text", { x: x * ctx.k, y: y * ctx.k, class: cls, "font-size": Math.max(10, 3.2 * ctx.k),
                             "font-family": "system-ui, sans-serif", fill: cls === "press" || cls.endsWith(" cV") ? "#b00020" : "#111" }, text));
  }

  function paper(widthMm, heightMm) {
    const k = pxmm * zoom;
    const svg = svgEl("svg", { width: Math.ceil(widthMm * k), height: Math.ceil(heightMm * k), "data-px-per-mm": k.toFixed(3) });
    const defs = svgEl("defs");
    const small = svgEl("pattern", { id: "mm1", width: k, height: k, patternUnits: "userSpaceOnUse" });
    small.append(svgEl("path", { d: `M${k} 0L0 0 0 ${k}`, fill: "none", stroke: "#f3bcbc", "stroke-width": 0.5 }));
    const big = svgEl("pattern", { id: "mm5", width: 5 * k, height: 5 * k, patternUnits: "userSpaceOnUse" });
    big.append(svgEl("rect", { width: 5 * k, height: 5 * k, fill: "url(#mm1)" }),
               svgEl("path", { d: `M${5 * k} 0L0 0 0 ${5 * k}`, fill: "none", stroke: "#e07a7a", "stroke-width": 1 }));
    defs.append(small, big);
    svg.append(defs, svgEl("rect", { width: "100%", height: "100%", fill: "#fff7f7" }),
               svgEl("rect", { width: "100%", height: "100%", fill: "url(#mm5)" }));
    return { svg, k };
  }

  // Marks on one row covering sample indexes [i0, i1) drawn from x0 mm: gaps, press, beats.
  function marks(g, ctx, i0, i1, x0, yTop, hMm) {
    const k = ctx.k, fs = view.fs, first = view.first_seq;
    const xOf = (seq) => (x0 + ((seq - first - i0) / fs) * MM_PER_S);
    for (const gap of view.gaps) {
      const a = Math.max(gap.first_seq, first + i0), b = Math.min(gap.end_seq, first + i1);
      if (b <= a) continue;
      g.append(svgEl("rect", { x: xOf(a) * k, y: yTop * k, width: Math.max(1, (xOf(b) - xOf(a)) * k), height: hMm * k,
                               class: "gap", fill: "#8a8f98", "fill-opacity": 0.18 }));
      const n = gap.n_samples ?? b - a;
      label(g, ctx, xOf(a) + 0.5, yTop + hMm - 1, `gap ${n} samples (${(n / fs).toFixed(2)} s)${gap.reason ? " · " + gap.reason : ""}`, "gaplabel");
    }
    const tr = view.trigger;
    if ((tr.type === "button" || tr.type === "auto") && tr.seq !== null && tr.seq !== undefined) {
      // the pre/post window as a band along the top of the row, the press as a dashed line
      const pre = Math.round((tr.pre_available_s ?? tr.pre_s ?? 0) * fs), post = Math.round((tr.post_s ?? 0) * fs);
      const at = tr.type === "button" ? "press" : "trigger";  // an auto event has no press
      for (const [a0, b0, color, text] of [[tr.seq - pre, tr.seq, "#0b5cad", `pre-${at} window ${tr.pre_available_s ?? tr.pre_s} s`],
                                           [tr.seq, tr.seq + post, "#d98200", `post-${at} window ${tr.post_s} s`]]) {
        const a = Math.max(a0, first + i0), b = Math.min(b0, first + i1);
        if (b <= a) continue;
        g.append(svgEl("rect", { x: xOf(a) * k, y: yTop * k, width: (xOf(b) - xOf(a)) * k, height: 1.2 * k, class: "window",
                                 fill: color, "fill-opacity": 0.45 }));
        if (xOf(b) - xOf(a) > 45) label(g, ctx, xOf(b) - 42, yTop + hMm - 2, text, "window");
      }
      if (tr.seq >= first + i0 && tr.seq < first + i1) {
        const x = xOf(tr.seq);
        g.append(svgEl("line", { x1: x * k, x2: x * k, y1: yTop * k, y2: (yTop + hMm) * k, class: "press",
                                 stroke: "#b00020", "stroke-width": 2, "stroke-dasharray": "6 3" }));
        label(g, ctx, x + 1, yTop + hMm - 2, `◆ ${tr.type === "button" ? "patient press" : `auto: ${tr.note || "trigger"}`} ${localTime(tr.time_utc, false)}`, "press");
      }
    }
    if (!document.getElementById("beats").checked) return;
    const beats = view.facts.beats_seq.filter((s) => s >= first + i0 && s < first + i1);
    const classOf = new Map(view.facts.beat_labels ? view.facts.beats_seq.map((s, j) => [s, view.facts.beat_labels[j]]) : []);
    beats.forEach((s, j) => {
      const x = xOf(s);
      g.append(svgEl("line", { x1: x * k, x2: x * k, y1: (yTop + 1) * k, y2: (yTop + 3) * k, class: "beat", stroke: "#0b5cad", "stroke-width": 2 }));
      const c = classOf.get(s);  // the gateway's beat class; N is left unmarked, as on Holter scans
      if (c && c !== "N") label(g, ctx, x + 0.6, yTop + 3, c, `beatclass c${c}`);
      if (j > 0) {
        const rr = ((s - beats[j - 1]) / fs) * 1000;
        label(g, ctx, (xOf(beats[j - 1]) + x) / 2 - 3, yTop + 5.5, `${Math.round(rr)}`, "rr");
      }
    });
  }

  function drawRows(leads) {  // every lead at full length, ROW_S seconds per row
    const fs = view.fs, n = view.data[0].length, perRow = Math.round(ROW_S * fs);
    const chunks = Math.max(1, Math.ceil(n / perRow)), rowMm = leads.length > 1 ? 25 : 35;
    const widthMm = LEFT_MM + ROW_S * MM_PER_S + RIGHT_MM;
    const ctx = paper(widthMm, chunks * leads.length * rowMm + 5);
    const g = svgEl("g"); let drawn = 0, row = 0;
    for (let c = 0; c < chunks; c++) {
      for (const li of leads) {
        const top = row * rowMm + 2, base = top + rowMm * 0.62, i0 = c * perRow, i1 = Math.min(n, i0 + perRow);
        calPulse(g, ctx, 3, base);
        label(g, ctx, 1, top + 8, view.leads[li]);
        if (chunks > 1) label(g, ctx, 1, top + 12, `+${c * ROW_S} s`, "offset");
        drawn += trace(g, ctx, view.data[li], i0, i1, LEFT_MM, base);
        marks(g, ctx, i0, i1, LEFT_MM, top, rowMm);
        row++;
      }
    }
    ctx.svg.append(g);
    return { svg: ctx.svg, drawn };
  }

  function drawStandard() {  // 4 columns × 3 rows of 2.5 s, then lead II over 10 s
    const fs = view.fs, perCol = Math.round(2.5 * fs), idx = Object.fromEntries(view.leads.map((n, i) => [n, i]));
    const rowMm = 30, widthMm = LEFT_MM + ROW_S * MM_PER_S + RIGHT_MM;
    const ctx = paper(widthMm, 4 * rowMm + 8);
    const g = svgEl("g"); let drawn = 0;
    STANDARD.forEach((names, r) => {
      const top = r * rowMm + 2, base = top + rowMm * 0.6;
      calPulse(g, ctx, 3, base);
      names.forEach((name, c) => {
        const x0 = LEFT_MM + c * 2.5 * MM_PER_S, i0 = c * perCol;
        label(g, ctx, x0 + 0.5, top + 4, name);
        if (c > 0) g.append(svgEl("line", { x1: x0 * ctx.k, x2: x0 * ctx.k, y1: (base - 3) * ctx.k, y2: (base + 3) * ctx.k, stroke: "#111" }));
        drawn += trace(g, ctx, view.data[idx[name]], i0, i0 + perCol, x0, base);
      });
      marks(g, ctx, 0, 4 * perCol, LEFT_MM, top, rowMm);
    });
    const top = 3 * rowMm + 4, base = top + rowMm * 0.6, n = Math.min(view.data[0].length, Math.round(ROW_S * fs));
    calPulse(g, ctx, 3, base);
    label(g, ctx, LEFT_MM + 0.5, top + 4, "II (rhythm)");
    drawn += trace(g, ctx, view.data[idx.II], 0, n, LEFT_MM, base);
    marks(g, ctx, 0, n, LEFT_MM, top, rowMm);
    ctx.svg.append(g);
    return { svg: ctx.svg, drawn };
  }

  function draw() {
    const holder = document.getElementById("paper");
    if (!view.leads.length) { holder.replaceChildren(el("p", { class: "error", text: view.error || "no samples" })); return; }
    const standard = STANDARD.flat().every((n) => view.leads.includes(n));
    document.getElementById("layout-box").hidden = !standard;
    const useStandard = standard && document.getElementById("layout").value === "standard";
    const { svg, drawn } = useStandard ? drawStandard() : drawRows(view.leads.map((_, i) => i));
    svg.id = "ecg";
    svg.dataset.samplesDrawn = String(drawn);
    svg.dataset.samplesTotal = String(view.data.reduce((a, l) => a + l.length, 0));
    svg.dataset.leads = view.leads.join(" ");
    svg.dataset.layout = useStandard ? "standard" : "rows";
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `ECG ${view.leads.join(", ")} at 25 mm/s, 10 mm/mV`);
    holder.replaceChildren(svg);
    document.getElementById("zoom-label").textContent = `${Math.round(zoom * 100)} %`;
    document.getElementById("ruler").style.width = `${50 * pxmm}px`;
  }

  function factsTable() {
    const f = view.facts, q = f.quality || {}, rows = [];
    const add = (k, v) => rows.push(el("tr", {}, el("td", { text: k }), el("td", { text: v })));
    add("Window", `${localTime(view.start)} – ${localTime(view.end, false)} (${(view.data[0]?.length / view.fs || 0).toFixed(1)} s at ${fmt(view.fs)} Hz)`);
    if (view.trigger.type === "button" || view.trigger.type === "auto")
      add(view.trigger.type === "auto" ? "Triggered by the gateway" : "Press", `${localTime(view.trigger.time_utc)} · pre ${view.trigger.pre_available_s ?? view.trigger.pre_s} s / post ${view.trigger.post_s} s`);
    if (view.trigger.type === "auto")
      add("What the gateway measured", `${view.trigger.note || "–"} (automated; read it on the tracing)`);
    add("Heart rate (mean of detected beats)", f.heart_rate_bpm === null ? "–" : `${fmt(f.heart_rate_bpm, 1)} bpm · ${f.beats_seq.length} beats`);
    add("Signal quality index", q.index_min === undefined ? "–" : `min ${fmt(q.index_min, 2)} · mean ${fmt(q.index_mean, 2)} · unusable ${fmt(q.unusable_s, 1)} s`);
    if ((q.flat_leads || []).length) add("Flat leads (electrode off?)", q.flat_leads.join(", "));
    if ((q.saturated_leads || []).length) add("Saturated leads", q.saturated_leads.join(", "));
    if (f.beat_labels) {
      const n = (c) => f.beat_labels.split(c).length - 1;
      add("Beat classes (automated: N normal or other supraventricular, S premature supraventricular, V ventricular ectopic, Q unclassifiable)",
          ["N", "S", "V", "Q"].filter((c) => n(c)).map((c) => `${n(c)} ${c}`).join(" · "));
    }
    if (f.beats_in_unusable_signal.length) add("Beats in unusable signal", String(f.beats_in_unusable_signal.length));
    if (f.lead_off && (f.lead_off.leads || []).length)
      add("Electrodes off (the device says)", `${f.lead_off.leads.join(", ")} since ${localTime(f.lead_off.time * 1000)}`);
    add("Gaps", view.gaps.length ? view.gaps.map((g) => `${g.n_samples} samples (${g.reason || "?"})`).join("; ") : "none");
    if (f.stage) add("Stage", [f.stage.name, f.stage.phase, f.stage.speed_kmh && `${f.stage.speed_kmh} km/h`, f.stage.grade_pct && `${f.stage.grade_pct} %`].filter(Boolean).join(" · "));
    if (f.blood_pressure) add("Blood pressure", `${f.blood_pressure.systolic_mmhg}/${f.blood_pressure.diastolic_mmhg} mmHg`);
    for (const ep of f.rhythm_episodes) add(`Rhythm measurement: ${ep.kind}`, `from sample ${ep.start_seq}${ep.end_seq ? " to " + ep.end_seq : " (ongoing)"}${ep.confidence !== undefined ? " · confidence " + ep.confidence : ""}`);
    if (view.analysed_late) add("Analysed late", "facts measured on the strip's own samples");
    const table = el("table", {}, ...rows);
    const parts = [table];
    if (f.st && f.st.st60_mv) {
      const leads = Object.keys(f.st.st60_mv);
      parts.push(el("h2", { text: "ST level (median beat, mV; 0.1 mV = 1 mm)" }),
        el("table", { class: "st" },
          el("tr", {}, el("th", { text: "lead" }), ...leads.map((l) => el("th", { text: l }))),
          el("tr", {}, el("td", { text: "J+60 ms" }), ...leads.map((l) => el("td", { class: "num", text: fmt(f.st.st60_mv[l], 2) }))),
          el("tr", {}, el("td", { text: "J+80 ms" }), ...leads.map((l) => el("td", { class: "num", text: fmt((f.st.st80_mv || {})[l], 2) })))));
    }
    document.getElementById("facts").replaceChildren(...parts);
  }

  async function loadAudit() {
    const resp = await api(`/api/events/${encodeURIComponent(msgId)}/audit`);
    if (!resp.ok) return;
    const items = await resp.json();
    document.getElementById("audit").replaceChildren(...items.map((a) =>
      el("li", { text: `${localTime(a.at)} · ${a.action}${a.actor ? " by " + a.actor : " (center)"}` })));
    const state = document.getElementById("state");
    const ack = items.find((a) => a.action === "acknowledge");
    const esc = items.find((a) => a.action === "escalate");
    state.textContent = ack ? `Acknowledged by ${ack.actor} at ${localTime(ack.at)}` : (esc ? `OPEN · ESCALATED at ${localTime(esc.at)}` : "Open · waiting for acknowledgement");
    state.className = `state ${ack ? "acknowledged" : "open"}${!ack && esc ? " escalated" : ""}`;
    document.getElementById("ack").disabled = !!ack;
  }

  async function acknowledge(ev) {
    ev.preventDefault();
    const note = document.getElementById("note").value;
    const resp = await api(`/api/events/${encodeURIComponent(msgId)}/ack`, { method: "POST", body: JSON.stringify({ note }) });
    const out = await resp.json();
    const result = document.getElementById("result") || document.getElementById("ack-result");
    if (resp.status === 409) result.textContent = `Already acknowledged by ${out.acknowledged_by} at ${localTime(out.acknowledged_at)}.`;
    else if (!resp.ok) result.textContent = `Not acknowledged: ${out.error || resp.status}`;
    else result.textContent = `Acknowledged at ${localTime(out.acknowledged_at)}; the gateway is told.`;
    loadAudit();
  }

  async function load() {
    const resp = await api(`/api/events/${encodeURIComponent(msgId)}/ecg`);
    view = await resp.json();
    draw(); factsTable(); loadAudit();
  }

  const pxInput = document.getElementById("pxmm");
  pxInput.value = pxmm.toFixed(2);
  pxInput.addEventListener("change", () => {
    const v = Number(pxInput.value);
    if (v >= 1 && v <= 40) { pxmm = v; localStorage.setItem("ecg-center-pxmm", String(v)); draw(); }
  });
  document.getElementById("zoom-in").addEventListener("click", () => { zoom = Math.min(4, zoom * 1.25); draw(); });
  document.getElementById("zoom-out").addEventListener("click", () => { zoom = Math.max(0.4, zoom / 1.25); draw(); });
  document.getElementById("beats").addEventListener("change", draw);
  document.getElementById("layout").addEventListener("change", draw);
  document.getElementById("ack-form").addEventListener("submit", acknowledge);
  Center.onChange(loadAudit);
  load();
})();
