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
  // certificates and revocation (issue #14)
  const certPath = `/api/gateways/${encodeURIComponent(gw)}/certificates`;
  async function refreshCerts() {
    const resp = await api(certPath);
    if (!resp.ok) return;
    const data = await resp.json();
    document.getElementById("certificates").replaceChildren(...data.certificates.map((c) => el("tr", { "data-serial": c.serial },
      el("td", { text: c.serial }), el("td", { text: c.kind }), el("td", { text: localTime(c.issued_at) }),
      el("td", { text: localTime(c.not_after) }), el("td", { class: c.revoked_at ? "warning" : "", text: c.revoked_at ? localTime(c.revoked_at) : "no" }))));
  }
  const form = document.getElementById("revoke-form");
  if (form) form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = document.getElementById("revoke-result");
    const confirm = document.getElementById("revoke-confirm").value.trim();
    const resp = await api(`/api/gateways/${encodeURIComponent(gw)}/revoke`, { method: "POST", body: JSON.stringify({ confirm }) });
    const body = await resp.json();
    out.textContent = resp.ok ? `${body.revoked.length} certificate(s) revoked; CRL written to ${body.crl}: ${body.next}.` : body.error;
    refreshCerts();
  });
  refresh(true);
  refreshCerts();
})();
