"""Storage: the schema (SQLAlchemy Core), engines and migrations, and the queries.

Times are POSIX seconds UTC stored as double precision (``*_at`` columns); the full JSON of
every strip, event and study is kept as received (``payload``).
"""
