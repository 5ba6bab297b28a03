"""Alembic migrations of the center's database (numbered files in ``versions/``)."""
