// ecg-center console: helpers shared by every page (no framework, no build step).
"use strict";
const Center = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function api(path, options = {}) {
    const opts = { credentials: "same-origin", ...options };
    opts.headers = { Accept: "application/json", ...(options.headers || {}) };
    if (opts.method && opts.method !== "GET") {
      opts.headers["X-CSRF-Token"] = csrf();
      if (opts.body !== undefined) opts.headers["Content-Type"] = "application/json";
    }
    const resp = await fetch(path, opts);
    if (resp.status === 401) { window.location.href = "/login"; throw new Error("login"); }
    return resp;
  }

  const pad = (n, w = 2) => String(n).padStart(w, "0");
  function localTime(iso, withDate = true) {
    if (!iso) return "";
    const d = new Date(iso);
    const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}` : t;
  }
  function age(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${pad(Math.floor(s / 60) % 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor(s / 3600) % 24} h`;
  }
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-") || k === "title" || k === "href" || k === "colspan") node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  const fmt = (v, digits = 0) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

  // --- audible cue for escalations (Web Audio API, no file) ---------------------------------
  let audio = null;
  let soundOn = localStorage.getItem("ecg-center-sound") !== "off";
  function soundButton() {
    const b = document.getElementById("sound");
    if (!b) return;
    const live = soundOn && audio && audio.state === "running";
    b.textContent = live ? "Sound: on (click to mute)" : (soundOn ? "Sound: click to enable" : "Sound: muted");
    b.classList.toggle("on", !!live);
  }
  function toggleSound() {
    if (soundOn && audio && audio.state === "running") { soundOn = false; }
    else {
      soundOn = true;
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      audio.resume().then(soundButton);
    }
    localStorage.setItem("ecg-center-sound", soundOn ? "on" : "off");
    soundButton();
  }
  function beep(times = 3) {
    window.centerBeeps = (window.centerBeeps || 0) + 1;  // counted for tests
    if (!soundOn || !audio || audio.state !== "running") return false;
    for (let i = 0; i < times; i++) {
      const osc = audio.createOscillator(), gain = audio.createGain();
      const t0 = audio.currentTime + i * 0.35;
      osc.frequency.value = 880; osc.type = "square";
      gain.gain.setValueAtTime(0.0001, t0);
      gain.gain.exponentialRampToValueAtTime(0.25, t0 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t0 + 0.25);
      osc.connect(gain).connect(audio.destination);
      osc.start(t0); osc.stop(t0 + 0.3);
    }
    return true;
  }

  // --- header: counts, broker, escalation cue ------------------------------------------------
  let lastEscalated = null;
  let lastBeepAt = 0;
  async function refreshHeader() {
    const counts = document.getElementById("counts");
    if (!counts) return;
    const resp = await api("/api/summary");
    if (!resp.ok) return;
    const s = await resp.json();
    counts.replaceChildren(
      el("span", { class: "badge", text: `${s.queue.open} open` }),
      el("span", { class: s.queue.urgent ? "badge urgent" : "badge", text: `${s.queue.urgent} urgent` }),
      el("span", { class: s.queue.escalated ? "badge esc" : "badge", text: `${s.queue.escalated} escalated` }));
    const broker = document.getElementById("broker");
    broker.textContent = s.broker_connected ? "" : "broker connection lost";
    broker.classList.toggle("down", !s.broker_connected);
    const now = Date.now();
    const rising = lastEscalated !== null && s.queue.escalated > lastEscalated;
    if (rising || (s.queue.escalated > 0 && now - lastBeepAt > 30000)) {
      beep(); lastBeepAt = now;
    }
    lastEscalated = s.queue.escalated;
  }

  // --- server-sent events: call back on every change (with a fallback poll) ------------------
  const listeners = [];
  let source = null;
  function onChange(callback) {
    let pending = false;
    const run = () => {
      if (pending) return;
      pending = true;
      setTimeout(async () => { pending = false; try { await callback(); } catch (e) { console.warn(e); } }, 30);
    };
    listeners.push(run);
    if (!source) {
      source = new EventSource("/api/stream");
      source.addEventListener("change", () => listeners.forEach((f) => f()));
    }
    setInterval(run, 15000);  // a fallback if the stream is down
  }

  document.addEventListener("DOMContentLoaded", () => {
    const b = document.getElementById("sound");
    if (!b) return;
    b.addEventListener("click", toggleSound);
    soundButton();
    refreshHeader();
    onChange(refreshHeader);
    setInterval(refreshHeader, 5000);
  });

  return { api, el, fmt, age, localTime, onChange, beep, refreshHeader };
})();
