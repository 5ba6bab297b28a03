"""The study report as a PDF (matplotlib, at the center; never on the Pi).

Page 1: the study, the recording, the measured numbers and the service facts; page 2: the
hourly heart-rate trend, the heart-rate histogram and the analysable share per hour; then
the strips on ECG paper (25 mm/s, 10 mm/mV). Facts and measurements only: the report is
for the physician who interprets, and says so on every page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from center.report.build import ReportData, Strip, service_band

__all__ = ["NOTICE", "render_pdf", "summary_lines"]

NOTICE = (
    "Measurements only, no interpretation: this report is for the physician who interprets "
    "the recording."
)
A4 = (8.27, 11.69)


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _dur(s: float) -> str:
    d, rest = divmod(int(round(s)), 86400)
    h, rest = divmod(rest, 3600)
    return f"{d} d {h:02d} h {rest // 60:02d} min"


def _ectopy_lines(d: ReportData) -> list[str]:
    st, c = d.stats, d.stats.counts
    if not st.classes_available:
        return ["Ectopy: not available (no beat classes for this recording)"]
    pct = (lambda n: f"{100.0 * n / st.beats:.2f} %") if st.beats else (lambda n: "-")
    return [
        f"Ventricular ectopic beats: {c.ventricular} ({pct(c.ventricular)} of beats); "
        f"couplets {c.couplets}; runs of 3 or more {c.v_runs}; "
        f"VT episodes {len(st.of_kind('vt'))}",
        f"Supraventricular ectopic beats: {c.supraventricular} ({pct(c.supraventricular)} "
        f"of beats); runs of 3 or more {c.s_runs}; SVT episodes {len(st.of_kind('svt'))}",
    ]


def summary_lines(d: ReportData) -> list[str]:
    """The first page's text, one line each (the test reads them back from the PDF)."""
    s, st = d.study, d.stats
    share = st.analysable_share
    lines = [
        f"Study {s['study_id']} - patch {s['device']} - gateway {s['gateway']} - "
        f"patient (pseudonym) {s['patient'] or 'not set'}",
        f"Recording start: {_utc(s['started_at'])}",
        f"Recording end: {_utc(s['ended_at'] or s['last_end_at'])}",
        f"Duration (wear time): {_dur(s['wear_s'])} ({s['wear_s'] / 86400:.2f} days)",
        f"Recorded: {st.recorded_s / 3600:.2f} h; analysable: {st.analysable_s / 3600:.2f} h"
        f" ({'-' if share is None else f'{100 * share:.1f} %'} of recorded)",
        f"Total beats: {st.beats}",
    ]
    if st.hr_mean is not None and st.hr_min and st.hr_max:
        lines += [
            f"Heart rate mean: {st.hr_mean:.1f} bpm",
            f"Heart rate minimum: {st.hr_min[0]:.1f} bpm at {_utc(d.t0 + st.hr_min[1])}",
            f"Heart rate maximum: {st.hr_max[0]:.1f} bpm at {_utc(d.t0 + st.hr_max[1])}",
        ]
    else:
        lines.append("Heart rate: not available (no minute with enough beats)")
    return lines + _rhythm_lines(d) + _ectopy_lines(d) + _event_lines(d) + _service_lines(d)


def _rhythm_lines(d: ReportData) -> list[str]:
    st = d.stats
    af_s = st.burden_s("af")
    burden = f"{100 * af_s / st.analysable_s:.2f} %" if st.analysable_s else "-"
    longest = st.longest("af")
    out = [f"AF burden: {burden} of analysable time ({af_s / 60:.1f} min in "
           f"{len(st.of_kind('af'))} episodes)"]  # fmt: skip
    if longest is not None:
        out.append(f"Longest AF episode: {longest.duration_s(st.fs) / 60:.1f} min from "
                   f"{_utc(d.t0 + longest.start / st.fs)}")  # fmt: skip
    pauses = st.of_kind("pause")
    p = st.longest("pause")
    out.append(
        f"Pauses of 3 s or more: {len(pauses)}"
        + (f"; longest {p.duration_s(st.fs):.1f} s at {_utc(d.t0 + p.start / st.fs)}" if p else "")
    )
    return out


def _event_lines(d: ReportData) -> list[str]:
    presses = [e for e in d.events if e.trigger == "button"]
    autos = [e for e in d.events if e.trigger == "auto"]
    out = [f"Patient-triggered events: {len(presses)}"]
    for e in presses[:12]:
        rate = "-" if e.rate_bpm is None else f"{e.rate_bpm:.0f} bpm"
        out.append(f"  {_utc(e.time_utc)}: rhythm measured {e.rhythm}; rate {rate}")
    out.append(f"Automatically triggered events: {len(autos)}")
    out += [f"  {_utc(e.time_utc)}: {e.reason or 'auto'}" for e in autos[:12]]
    tx = d.transmissions
    out.append(f"Transmissions during the study: {tx['events']} events, {tx['strips']} strips, "
               f"{tx['records']} records ({tx['record_versions']} versions)")  # fmt: skip
    return out


def _service_lines(d: ReportData) -> list[str]:
    wear = d.study["wear_s"]
    out = [
        f"Service facts: recording duration band: {service_band(wear)}; "
        f"days worn: {wear / 86400:.2f}",
        "  continuous recording of the whole wear time, scanning analysis and this report",
    ]
    if not d.analysed:
        out.append("Not every record has been analysed yet: the numbers cover those that are.")
    return out


def _text_page(pdf: PdfPages, d: ReportData) -> None:
    fig = Figure(figsize=A4)
    fig.text(0.06, 0.96, "Long-term ECG patch study: report", fontsize=15, weight="bold")
    fig.text(0.06, 0.935, NOTICE, fontsize=7.5, style="italic")
    y = 0.9
    for line in summary_lines(d):
        fig.text(0.06, y, line, fontsize=8.2, family="DejaVu Sans")
        y -= 0.022
    fig.text(0.06, 0.03, _definitions(), fontsize=6.3, va="bottom", wrap=True)
    pdf.savefig(fig)


def _definitions() -> str:
    return ("Definitions: analysable = recorded seconds with a signal-quality index of 0.5 or "
            "more; minute heart rate = 60 / mean interval of a minute with 20 or more intervals "
            "(minimum and maximum are such minutes); mean = 60 / mean of all intervals; "
            "intervals never span a gap; AF burden = AF time / analysable time; episodes and "
            "beat classes by the automated scanning analysis (dsp), to be verified.")  # fmt: skip


def _trend_page(pdf: PdfPages, d: ReportData) -> None:
    st = d.stats
    fig = Figure(figsize=A4)
    ax1, ax2, ax3 = fig.subplots(3, 1, gridspec_kw={"hspace": 0.45})
    hours = [h for h, *_ in st.hourly]
    for idx, label, style in ((1, "mean", "-"), (2, "slowest minute", ":"),
                              (3, "fastest minute", "--")):  # fmt: skip
        ax1.plot(hours, [np.nan if r[idx] is None else r[idx] for r in st.hourly], style,
                 label=label)  # fmt: skip
    ax1.set(title="Heart rate per hour", xlabel="hour of the study", ylabel="bpm")
    ax1.legend(fontsize=7)
    counts, edges = st.histogram
    ax2.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#4a6fa5")
    ax2.set(title="Heart-rate histogram (every interval)", xlabel="bpm", ylabel="intervals")
    q = d.stats.extra.get("hourly_analysable", [])
    ax3.bar(range(len(q)), [100 * v for v in q], color="#6a9955")
    ax3.set(title="Analysable share per hour", xlabel="hour of the study", ylabel="%",
            ylim=(0, 100))  # fmt: skip
    fig.text(0.06, 0.015, NOTICE, fontsize=7, style="italic")
    pdf.savefig(fig)


def _strip_axes(ax, s: Strip) -> None:  # type: ignore[no-untyped-def]
    """One strip on ECG paper: 1 mm / 5 mm grid at 25 mm/s and 10 mm/mV."""
    t = np.arange(len(s.samples)) / s.fs
    mv = s.samples / 1000.0
    mid = float(np.nanmedian(mv)) if np.isfinite(mv).any() else 0.0
    ax.set_xlim(0, len(s.samples) / s.fs)
    ax.set_ylim(mid - 1.5, mid + 2.0)
    ax.set_xticks(np.arange(0, t[-1] + 0.2, 0.2), minor=False) if len(t) else None
    ax.set_xticks(np.arange(0, t[-1] + 0.04, 0.04), minor=True) if len(t) else None
    ax.set_yticks(np.arange(np.floor(mid - 1.5), mid + 2.0, 0.5))
    ax.set_yticks(np.arange(np.floor(mid - 1.5), mid + 2.0, 0.1), minor=True)
    ax.grid(which="major", color="#e07a7a", lw=0.6)
    ax.grid(which="minor", color="#f3c4c4", lw=0.3)
    ax.tick_params(labelbottom=False, labelleft=False, length=0, which="both")
    ax.plot(t, mv, color="black", lw=0.6)
    if s.mark_s is not None:
        ax.axvline(s.mark_s, color="#b00020", ls="--", lw=1)
    ax.set_title(f"{s.title} - {_utc(s.start_utc)} (25 mm/s, 10 mm/mV)", fontsize=8, loc="left")


def _strip_pages(pdf: PdfPages, d: ReportData) -> None:
    per_page = 4
    for i in range(0, len(d.strips), per_page):
        group = d.strips[i : i + per_page]
        fig = Figure(figsize=A4)
        axes = fig.subplots(per_page, 1, gridspec_kw={"hspace": 0.35})
        for ax, s in zip(axes, group, strict=False):
            _strip_axes(ax, s)
        for ax in axes[len(group) :]:
            ax.axis("off")
        fig.text(0.06, 0.015, NOTICE, fontsize=7, style="italic")
        pdf.savefig(fig)


def render_pdf(d: ReportData, path: str | Path) -> Path:
    """Write the report to ``path``; the path."""
    path = Path(path)
    q = d.stats
    n_h = len(q.hourly)
    d.stats.extra["hourly_analysable"] = [
        float(((q.extra["quality"][h * 3600 : (h + 1) * 3600] >= 50)
               & (q.extra["quality"][h * 3600 : (h + 1) * 3600] != 255)).mean())
        for h in range(n_h)
    ] if "quality" in q.extra else []  # fmt: skip
    with PdfPages(path, metadata={"Title": f"Study report {d.study['study_id']}",
                                  "Creator": "ecg-center"}) as pdf:  # fmt: skip
        _text_page(pdf, d)
        _trend_page(pdf, d)
        _strip_pages(pdf, d)
    return path
