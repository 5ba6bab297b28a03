// A gateway's configuration: edit the JSON, publish it (retained) as the next version, and
// see what the gateway made of it (applied, refused, rolled back — and why).
"use strict";
(() => {
  const { api, el, localTime } = Center;
  const gw = document.getElementById("gateway").dataset.gateway;
  const path = `/api/gateways/${encodeURIComponent(gw)}/config`;
  function reported(r) {
    if (!r) return "The gateway has not reported a configuration yet.";
    const last = r.last ? ` Last: version ${r.last.version} ${r.last.outcome}${r.last.reason ? ` (${r.last.reason})` : ""}.` : "";
    return `Applied on the gateway: version ${r.applied_version ?? "none (its own file)"}.${last}`;
  }
  async function refresh(fillEditor) {
    const resp = await api(path);
    if (!resp.ok) return;
    const data = await resp.json();
    document.getElementById("reported").textContent = reported(data.reported);
    document.getElementById("versions").replaceChildren(...data.versions.map((v) => el("tr", {},
      el("td", { class: "num", text: v.version }), el("td", { text: localTime(v.created_at) }),
      el("td", { text: v.created_by || "" }), el("td", { text: v.sent_at ? localTime(v.sent_at) : "no" }),
      el("td", { text: v.last_error || "" }))));
    if (fillEditor) {
      const current = data.versions.length ? data.versions[0].document.config : { devices: [] };
      document.getElementById("config").value = JSON.stringify(current, null, 2);
    }
  }
  document.getElementById("config-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = document.getElementById("result");
    let config;
    try { config = JSON.parse(document.getElementById("config").value); } catch (e) { out.textContent = `Not JSON: ${e.message}`; return; }
    const resp = await api(path, { method: "POST", body: JSON.stringify({ config }) });
    const body = await resp.json();
    out.textContent = resp.ok ? `Version ${body.version} published; the gateway reports the outcome in its status.`
      : (body.version ? `Version ${body.version} saved but not published: ${body.error}` : body.error);
    refresh(false);
  });
  refresh(true);
})();
