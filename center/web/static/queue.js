// The queue: open items, most urgent first; updates itself from server-sent events.
"use strict";
(() => {
  const { api, el, fmt, age, localTime, onChange } = Center;
  const TRIGGER = { button: "patient button", auto: "automatic", periodic: "periodic", stage_end: "stage end" };
  const PRIORITY = ["PATIENT", "AUTO", "EVENT", "STAGE", "STRIP"];
  let state = JSON.parse(document.getElementById("initial").textContent);
  let page = 1;
  let shown = new Set(state.events.map((e) => e.msg_id));
  let loadedAt = Date.now();

  function pressCell(e) {
    if (e.trigger === "button" || e.trigger === "auto") return localTime(e.trigger_at);
    return localTime(e.end_at || e.received_at);
  }
  function row(e, fresh) {
    const esc = e.escalated;
    const tr = el("tr", { class: `p${e.priority}${esc ? " escalated" : ""}${fresh ? " fresh" : ""}`,
                          "data-msg-id": e.msg_id, title: "Open the strip" },
      el("td", {}, el("span", { class: e.priority <= 1 ? "badge urgent" : "badge", text: PRIORITY[e.priority] || "STRIP" }),
         esc ? el("span", { class: "badge esc", text: "ESCALATED" }) : ""),
      el("td", { text: e.gateway }),
      el("td", {}, el("a", { href: `/device/${encodeURIComponent(e.gateway)}/${encodeURIComponent(e.device)}`, text: e.device })),
      el("td", { text: (TRIGGER[e.trigger] || e.trigger) + (e.trigger_note ? ` · ${e.trigger_note}` : "") }),
      el("td", { text: pressCell(e), title: e.trigger_at || "" }),
      el("td", { class: "num", text: fmt(e.heart_rate_bpm) }),
      el("td", { class: "num", text: e.quality_min === null ? "–" : fmt(e.quality_min, 2) }),
      el("td", { class: "num", text: e.gap_count ? `${e.gap_count} (${e.gap_samples} smp)` : "0" }),
      el("td", { text: localTime(e.received_at), title: e.received_at }),
      el("td", { class: "num age", "data-age": e.age_s, text: age(e.age_s) }));
    tr.addEventListener("click", (ev) => {
      if (ev.target.tagName !== "A") window.location.href = `/strip/${encodeURIComponent(e.msg_id)}`;
    });
    return tr;
  }
  function render() {
    const tbody = document.getElementById("rows");
    const rows = state.events.map((e) => row(e, !shown.has(e.msg_id)));
    tbody.replaceChildren(...rows);
    shown = new Set(state.events.map((e) => e.msg_id));
    loadedAt = Date.now();
    document.getElementById("empty").hidden = state.events.length > 0;
    document.getElementById("queue").dataset.rows = String(state.events.length);
    const pages = Math.max(1, Math.ceil(state.total / state.per_page));
    const pager = document.getElementById("pager");
    pager.replaceChildren(
      el("button", { type: "button", disabled: page <= 1, text: "‹ previous", onclick: () => { page--; refresh(); } }),
      el("span", { text: `page ${page} of ${pages} · ${state.total} open` }),
      el("button", { type: "button", disabled: page >= pages, text: "next ›", onclick: () => { page++; refresh(); } }));
  }
  async function refresh() {
    const resp = await api(`/api/events?state=open&page=${page}&per_page=${state.per_page}`);
    if (!resp.ok) return;
    state.events = await resp.json();
    state.total = Number(resp.headers.get("X-Total-Count") || state.events.length);
    render();
  }
  function tick() {  // ages move on between updates
    const dt = (Date.now() - loadedAt) / 1000;
    for (const cell of document.querySelectorAll("td.age")) cell.textContent = age(Number(cell.dataset.age) + dt);
  }
  render();
  onChange(refresh);
  setInterval(tick, 1000);
})();
