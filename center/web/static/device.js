// A device's timeline: events, strips, gaps, link states, study records, gateway on/offline.
"use strict";
(() => {
  const { api, el, fmt, localTime } = Center;
  const form = document.getElementById("range");
  const base = `/api/devices/${encodeURIComponent(form.dataset.gateway)}/${encodeURIComponent(form.dataset.device)}/timeline`;
  function describe(i) {
    switch (i.type) {
      case "event": case "strip":
        return el("span", {}, el("a", { href: `/strip/${encodeURIComponent(i.msg_id)}`, text: i.trigger_note ? `${i.trigger} · ${i.trigger_note}` : `${i.trigger}` }),
          ` · ${i.press_at ? "press " + localTime(i.press_at, false) + " · " : ""}HR ${fmt(i.heart_rate_bpm)} bpm · ` +
          `gaps ${i.gap_count} (${i.gap_samples} samples) · ${i.state}`);
      case "study":
        return `coverage ${fmt(i.coverage_pct, 3)} % · ${i.samples_missing} samples missing` +
          (i.gaps.length ? ` · gaps: ${i.gaps.map((g) => `${g.n_samples ?? g.beats_missing ?? "?"} (${g.reason || g.kind || ""})`).join(", ")}` : "");
      case "device":
        return `link ${i.link || "–"} · gaps ${i.gaps ?? "–"} (${i.gap_samples ?? 0} samples)` +
          (i.battery_pct !== null ? ` · battery ${fmt(i.battery_pct)} %` : "");
      case "gateway":
        return `gateway ${i.state}`;
      default: return "";
    }
  }
  function bar(items, since, until) {  // one tick per item on a time axis
    const holder = document.getElementById("bar");
    const w = holder.clientWidth || 800, span = until - since;
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("width", w); svg.setAttribute("height", 32);
    const color = { event: "#b00020", strip: "#0b5cad", study: "#1d6b2f", device: "#9a4d00", gateway: "#555" };
    for (const i of items) {
      const x = ((new Date(i.at).getTime() / 1000 - since) / span) * w;
      const line = document.createElementNS("http://www.w3.org/2000/svg", "line");
      const row = { event: 2, strip: 8, study: 14, device: 20, gateway: 26 }[i.type] || 2;
      for (const [k, v] of Object.entries({ x1: x, x2: x, y1: row, y2: row + 5, stroke: color[i.type] || "#000", "stroke-width": 2 })) line.setAttribute(k, v);
      svg.append(line);
    }
    holder.replaceChildren(svg);
  }
  async function refresh(ev) {
    if (ev) ev.preventDefault();
    const data = new FormData(form), qs = new URLSearchParams();
    const now = Date.now() / 1000;
    let since = now - 86400, until = now + 60;
    if (data.get("since")) { since = new Date(data.get("since")).getTime() / 1000; qs.set("since", new Date(since * 1000).toISOString()); }
    if (data.get("until")) { until = new Date(data.get("until")).getTime() / 1000; qs.set("until", new Date(until * 1000).toISOString()); }
    const resp = await api(`${base}?${qs}`);
    if (!resp.ok) return;
    const items = await resp.json();
    bar(items, since, until);
    document.getElementById("timeline").replaceChildren(...items.map((i) => el("li", { class: i.type },
      el("time", { text: localTime(i.at), title: i.at }), el("span", { class: "kind", text: i.type }), describe(i))));
    if (!items.length) document.getElementById("timeline").append(el("li", { text: "nothing in this time range" }));
  }
  form.addEventListener("submit", refresh);
  refresh();
  Center.onChange(refresh);
})();
