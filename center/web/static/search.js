// Search and filters over every strip and event (acknowledged or not), paginated.
"use strict";
(() => {
  const { api, el, fmt, localTime } = Center;
  const form = document.getElementById("filters");
  let page = 1;
  const params = new URLSearchParams(window.location.search);
  for (const [k, v] of params) if (form.elements[k]) form.elements[k].value = v;
  function query() {
    const data = new FormData(form), qs = new URLSearchParams();
    for (const [k, v] of data) {
      if (!v) continue;
      qs.set(k, k === "since" || k === "until" ? new Date(v).toISOString() : v);
    }
    qs.set("page", String(page));
    return qs;
  }
  async function run(ev) {
    if (ev) { ev.preventDefault(); page = 1; }
    const resp = await api(`/api/events?${query()}`);
    const tbody = document.getElementById("rows");
    if (!resp.ok) { tbody.replaceChildren(el("tr", {}, el("td", { colspan: 11, text: (await resp.json()).error }))); return; }
    const rows = await resp.json(), total = Number(resp.headers.get("X-Total-Count")), per = Number(resp.headers.get("X-Per-Page"));
    tbody.replaceChildren(...rows.map((e) => {
      const tr = el("tr", { class: `p${e.priority}${e.escalated && e.state === "open" ? " escalated" : ""}`, "data-msg-id": e.msg_id },
        el("td", { text: e.kind }), el("td", { text: e.gateway }), el("td", { text: e.device }), el("td", { text: e.trigger_note ? `${e.trigger} · ${e.trigger_note}` : e.trigger }),
        el("td", { text: localTime(e.trigger_at || e.end_at) }), el("td", { class: "num", text: fmt(e.heart_rate_bpm) }),
        el("td", { class: "num", text: e.quality_min === null ? "–" : fmt(e.quality_min, 2) }),
        el("td", { class: "num", text: String(e.gap_count) }), el("td", { text: localTime(e.received_at) }),
        el("td", { text: e.state }), el("td", { text: e.acknowledged_by || "" }));
      tr.addEventListener("click", () => { window.location.href = `/strip/${encodeURIComponent(e.msg_id)}`; });
      return tr;
    }));
    const pages = Math.max(1, Math.ceil(total / per));
    document.getElementById("total").textContent = `${total} found`;
    document.getElementById("pager").replaceChildren(
      el("button", { type: "button", disabled: page <= 1, text: "‹ previous", onclick: () => { page--; run(); } }),
      el("span", { text: `page ${page} of ${pages}` }),
      el("button", { type: "button", disabled: page >= pages, text: "next ›", onclick: () => { page++; run(); } }));
  }
  form.addEventListener("submit", run);
  run();
})();
