"""ecg-center: the monitoring center that receives what ecg-gateway publishes.

Ingest (MQTT v5, acknowledged only after the database commit), storage (SQLAlchemy +
Alembic, SQLite or PostgreSQL), and a web console with a JSON API for the attended staff.
It does not run on the gateway and imports nothing from ``gateway``, ``drivers`` or ``dsp``.
"""

__version__ = "0.1.0"
