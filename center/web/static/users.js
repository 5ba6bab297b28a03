// Supervisors manage staff accounts (every change is audited at the center).
"use strict";
(() => {
  const { api, el } = Center;
  async function refresh() {
    const resp = await api("/api/users");
    if (!resp.ok) return;
    const users = await resp.json();
    document.getElementById("users").replaceChildren(...users.map((u) => el("tr", {},
      el("td", { text: u.name }), el("td", { text: u.role }), el("td", { text: u.disabled ? "disabled" : "active" }),
      el("td", {}, el("button", { type: "button", text: u.disabled ? "Enable" : "Disable", onclick: async () => {
        await api(`/api/users/${encodeURIComponent(u.name)}/${u.disabled ? "enable" : "disable"}`, { method: "POST" });
        refresh();
      } })))));
  }
  document.getElementById("add-user").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const resp = await api("/api/users", { method: "POST", body: JSON.stringify(Object.fromEntries(f)) });
    const out = await resp.json();
    document.getElementById("result").textContent = resp.ok ? `Added ${out.name} (${out.role}).` : out.error;
    if (resp.ok) ev.target.reset();
    refresh();
  });
  refresh();
})();
