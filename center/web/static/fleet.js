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
            ` · coverage ${d.coverage_pct === null ? "–" : fmt(d.coverage_pct, 2) + " %"}` +
            (d.contact === false ? " · NO CONTACT" : "") +
            (d.rssi_dbm !== null && d.rssi_dbm !== undefined ? ` · ${d.rssi_dbm} dBm` : "") +
            (d.link_up_s !== null && d.link_up_s !== undefined ? ` · link up ${age(d.link_up_s)}` : "") }));
  }
  // host facts and warnings (issue #14)
  function health(g) {
    const h = g.health || {};
    const parts = [];
    if (h.disk && h.disk.free_pct !== undefined) parts.push(`disk ${fmt(h.disk.free_pct)} % free`);
    if (h.cpu && h.cpu.temp_c !== null && h.cpu.temp_c !== undefined) parts.push(`CPU ${fmt(h.cpu.temp_c)} °C`);
    if (h.clock && h.clock.synchronized !== undefined) parts.push(h.clock.synchronized ? "clock synced" : "clock NOT synced");
    if (g.certificate_days_left !== null && g.certificate_days_left !== undefined) parts.push(`certificate ${fmt(g.certificate_days_left)} days`);
    if (h.config_version !== undefined) parts.push(`config v${h.config_version ?? "local"}`);
    const cell = el("td", {}, el("div", { text: parts.join(" · ") }),
      ...(g.warnings || []).map((w) => el("div", { class: "warning", text: `⚠ ${w}` })),
      el("a", { href: `/gateway/${encodeURIComponent(g.gateway)}/config`, text: "configuration" }));
    return cell;
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
      el("td", {}, ...devices(g)),
      health(g))));
  }
  refresh();
  onChange(refresh);
})();
