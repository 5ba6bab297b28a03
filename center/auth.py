"""Staff accounts, sessions and login rate limits.

Passwords are hashed with argon2id (argon2-cffi defaults). A session is a random token the
client holds (cookie or ``Authorization: Bearer``); the database keeps only its SHA-256,
the user, the CSRF token (cookie sessions) and its times. A session expires after
``session_idle_s`` without use and ``session_max_s`` after login, whichever comes first.
Failed logins are rows; more than the allowed number per user name or per client address
within the window refuses further attempts (HTTP 429) until older failures leave it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from center.config import AuthConfig
from center.store import schema as t

__all__ = [
    "ROLES",
    "AuthError",
    "RateLimited",
    "Session",
    "StoredSession",
    "add_user",
    "authenticate",
    "create_session",
    "delete_session",
    "list_users",
    "read_session",
    "set_disabled",
    "touch_session",
]

ROLES = ("technician", "supervisor")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD_LEN = 10
_TOUCH_EVERY_S = 15.0
"""A session's last-use time is written at most this often (fewer writes per request), s."""

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a real password, for constant-time misses")


class AuthError(Exception):
    """Wrong user or password, disabled user, or a bad new account."""


class RateLimited(AuthError):
    """Too many failed logins for this user or address; try again later."""


@dataclass(frozen=True)
class Session:
    """A resolved session."""

    token_hash: str
    user_id: int
    user: str
    role: str
    kind: str  # cookie | bearer
    csrf_token: str

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(conn: sa.Connection, name: str, role: str, password: str, now: float) -> int:
    """Create a user; AuthError on a bad name, role, short password or a taken name."""
    if not _NAME.match(name):
        raise AuthError("user names are 1-64 letters, digits, _ . @ -")
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD_LEN:
        raise AuthError(f"passwords have at least {MIN_PASSWORD_LEN} characters")
    exists = conn.execute(sa.select(t.users.c.id).where(t.users.c.name == name)).first()
    if exists is not None:
        raise AuthError(f"user {name} exists")
    return int(conn.execute(
        t.users.insert().values(name=name, role=role, password_hash=_hasher.hash(password),
                                created_at=now).returning(t.users.c.id)
    ).scalar_one())


def list_users(conn: sa.Connection) -> list[dict]:
    """Every user (no hashes)."""
    rows = conn.execute(
        sa.select(t.users.c.name, t.users.c.role, t.users.c.created_at, t.users.c.disabled_at)
        .order_by(t.users.c.name)
    ).mappings().all()
    return [dict(r) for r in rows]


def set_disabled(conn: sa.Connection, name: str, disabled: bool, now: float) -> bool:
    """Disable (and end the sessions of) or re-enable a user; whether the user exists."""
    uid = conn.execute(sa.select(t.users.c.id).where(t.users.c.name == name)).scalar()
    if uid is None:
        return False
    conn.execute(t.users.update().where(t.users.c.id == uid)
                 .values(disabled_at=now if disabled else None))
    if disabled:
        conn.execute(t.sessions.delete().where(t.sessions.c.user_id == uid))
    return True


def _failures(conn: sa.Connection, col: sa.Column, value: str, since: float) -> int:
    return int(conn.execute(
        sa.select(sa.func.count()).select_from(t.login_failures)
        .where(col == value, t.login_failures.c.at >= since)
    ).scalar() or 0)


def authenticate(
    conn: sa.Connection, name: str, password: str, ip: str, now: float, cfg: AuthConfig
) -> tuple[int, str]:
    """``(user id, role)`` for a right password; RateLimited or AuthError otherwise.

    A failure is recorded in the caller's transaction: commit it even on AuthError.
    """
    since = now - cfg.login_window_s
    lf = t.login_failures.c
    if (_failures(conn, lf.user_name, name[:64], since) >= cfg.max_failures_per_user
            or _failures(conn, lf.ip, ip[:64], since) >= cfg.max_failures_per_ip):
        raise RateLimited("too many failed logins; try again later")
    row = conn.execute(
        sa.select(t.users.c.id, t.users.c.role, t.users.c.password_hash, t.users.c.disabled_at)
        .where(t.users.c.name == name)
    ).first()
    try:
        _hasher.verify(row.password_hash if row else _DUMMY_HASH, password)
        ok = row is not None and row.disabled_at is None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        conn.execute(t.login_failures.insert().values(at=now, user_name=name[:64], ip=ip[:64]))
        raise AuthError("wrong user name or password")
    return int(row.id), str(row.role)


def create_session(
    conn: sa.Connection, user_id: int, kind: str, ip: str | None, now: float
) -> tuple[str, str]:
    """A new session: ``(token for the client, CSRF token)``."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    conn.execute(t.sessions.insert().values(
        token_hash=_hash_token(token), user_id=user_id, kind=kind, csrf_token=csrf,
        created_at=now, last_used_at=now, ip=(ip or "")[:64] or None,
    ))
    return token, csrf


@dataclass(frozen=True)
class StoredSession:
    """A session row as read, with what the caller must write back (if anything)."""

    session: Session
    created_at: float
    last_used_at: float
    user_disabled: bool

    def verdict(self, now: float, cfg: AuthConfig) -> str:
        """``expired`` (delete it), ``touch`` (refresh its last use) or ``ok``."""
        if (now - self.last_used_at > cfg.session_idle_s
                or now - self.created_at > cfg.session_max_s or self.user_disabled):
            return "expired"
        return "touch" if now - self.last_used_at > _TOUCH_EVERY_S else "ok"


def read_session(conn: sa.Connection, token: str, kind: str) -> StoredSession | None:
    """The session of a token of this kind (a read only; see :meth:`StoredSession.verdict`)."""
    h = _hash_token(token)
    s, u = t.sessions.c, t.users.c
    row = conn.execute(
        sa.select(s.token_hash, s.user_id, s.kind, s.csrf_token, s.created_at, s.last_used_at,
                  u.name, u.role, u.disabled_at)
        .join(t.users, t.users.c.id == s.user_id)
        .where(s.token_hash == h)
    ).first()
    if row is None or row.kind != kind:
        return None
    return StoredSession(Session(h, int(row.user_id), row.name, row.role, row.kind,
                                 row.csrf_token),
                         row.created_at, row.last_used_at, row.disabled_at is not None)


def touch_session(conn: sa.Connection, token_hash: str, now: float) -> None:
    """Record a use of the session (idle expiry counts from here)."""
    conn.execute(t.sessions.update().where(t.sessions.c.token_hash == token_hash)
                 .values(last_used_at=now))


def delete_session(conn: sa.Connection, token_hash: str) -> None:
    """Log out."""
    conn.execute(t.sessions.delete().where(t.sessions.c.token_hash == token_hash))
