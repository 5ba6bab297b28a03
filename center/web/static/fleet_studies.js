// The fleet's long-term studies (issue #13): per open study, hours recorded, analysable
// share, how much is scanned, wear time and the duration band so far (from /api/studies).
"use strict";
(() => {
  const { api, el, fmt, age, localTime, onChange } = Center;
  const iso = (s) => new Date(s * 1000).toISOString();
  async function refresh() {
    const resp = await api("/api/studies");
    if (!resp.ok) return;
    const open = (await resp.json()).filter((s) => !s.ended_at);
    const now = Date.now() / 1000;
    document.getElementById("study-progress").replaceChildren(...open.map((s) => el("tr", { "data-study": s.study_id },
      el("td", {}, el("a", { href: `/study/${encodeURIComponent(s.study_id)}`, text: s.study_id })),
      el("td", { text: `${s.gateway} / ${s.device}` }),
      el("td", { text: `${localTime(iso(s.last_end_at))} (${age(now - s.last_end_at)} ago)` }),
      el("td", { class: "num hours", text: fmt(s.hours_recorded, 2) }),
      el("td", { class: "num share", text: s.analysable_share === null ? "–" : `${(100 * s.analysable_share).toFixed(1)} %` }),
      el("td", { class: "num scanned", text: `${fmt(s.hours_analysed, 2)} of ${fmt(s.hours_recorded, 2)} h` }),
      el("td", { text: age(s.wear_s) }),
      el("td", { class: "band", text: s.duration_band }),
      el("td", { class: "num", text: s.days_left_in_band === null ? "–" : fmt(s.days_left_in_band, 1) }))));
  }
  refresh();
  onChange(refresh);
})();
