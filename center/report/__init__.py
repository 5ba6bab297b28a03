"""The study report (issue #13): numbers from the scanning analysis, drawn as a PDF.

``build_report(engine, study_id, path)`` = :func:`center.report.build.gather` then
:func:`center.report.pdf.render_pdf` (matplotlib, imported only when a report is made).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

__all__ = ["build_report"]


def build_report(engine: sa.Engine, study_id: str, path: str | Path) -> Path:
    """Write the PDF report of ``study_id`` to ``path`` (``NotFound`` when no such study)."""
    from center.report.build import gather
    from center.report.pdf import render_pdf

    with engine.connect() as conn:
        data = gather(conn, study_id)
    return render_pdf(data, path)
