// The fleet: every gateway's retained status (online / offline by clean exit or Last Will).
"use strict";
(() => {
  const { api, el, fmt, age, localTime, onChange } = Center;
  function devices(g) {
    return g.devices.map((d) => el("a", { class: "dev", href: `/device/${encodeURIComponent(g.gateway)}/${encodeURIComponent(d.device)}`,
      title: "Open the device timeline",
      text: `${d.device} · ${fmt(d.heart_rate_bpm)} bpm · gaps ${d.gaps ?? "–"} (${d.gap_samples ?? 0} smp)` +
            ` · connections ${d.connects ?? "–"} (${d.connect_failures ?? "–"} failed)` +
            (d.battery_pct !== null && d.battery_pct !== undefined ? ` · battery ${fmt(d.battery_pct)} %` : "") +
            ` · coverage ${d.coverage_pct === null ? "–" : fmt(d.coverage_pct, 2) + " %"}` }));
  }
  async function refresh() {
    const resp = await api("/api/gateways");
    if (!resp.ok) return;
    const gws = await resp.json();
    document.getElementById("gateways").replaceChildren(...gws.map((g) => el("tr", { "data-gateway": g.gateway },
      el("td", { text: g.gateway }),
      el("td", {}, el("span", { class: `badge ${g.state}`, text: g.state })),
      el("td", { text: `${localTime(g.last_seen_at)} (${age(g.last_seen_age_s)} ago)`, title: g.last_seen_at }),
      el("td", { class: "num", text: g.outbox_pending ?? "–" }),
      el("td", { class: "num", text: g.transmission ? g.transmission.nacked : "–" }),
      el("td", { text: g.version || "" }),
      el("td", {}, ...devices(g)))));
  }
  refresh();
  onChange(refresh);
})();
