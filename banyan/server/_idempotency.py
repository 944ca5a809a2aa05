"""Idempotency-Key for the 1.0.1 endpoint, which has no record ids (#20).

A request with a key, per project, is answered once and remembered: a retry
with the same key gets the first answer, status and body, without being
stored again, for ``WINDOW`` seconds and across restarts (the answer is kept
in the same transaction as the record). The same key with another body is
422, as in the IETF draft "The Idempotency-Key HTTP Header Field".
"""

from __future__ import annotations

import hashlib
import sqlite3
import time

from banyan.server._http import HTTPError, Request

HEADER = "Idempotency-Key"
#: Seconds a key is remembered (Stripe's 24 hours); older keys are forgotten.
WINDOW = 24 * 3600
#: Longest key accepted (Stripe's limit too).
MAX_KEY_LENGTH = 255

#: An answer: its status and its body.
Answer = tuple[int, bytes]
#: What a key keeps: the fingerprint of the body it was first used with, and the answer.
Remembered = tuple[str, Answer]


def key_of(req: Request) -> str | None:
    """The request's Idempotency-Key, None without one; 400 for a malformed one."""
    key = req.single_header(HEADER)
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise HTTPError(400, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return key


def fingerprint(body: bytes) -> str:
    """What tells a retry from another request under the same key."""
    return hashlib.sha256(body).hexdigest()


def replay(conn: sqlite3.Connection, project_id: str, key: str) -> Remembered | None:
    """The fingerprint and answer remembered for ``key`` within the window, or None."""
    row = conn.execute(
        "SELECT fingerprint, status, response FROM idempotency_keys"
        " WHERE project_id = ? AND key = ? AND created_at >= ?",
        (project_id, key, time.time() - WINDOW),
    ).fetchone()
    return None if row is None else (row[0], (int(row[1]), bytes(row[2])))


def remember(conn: sqlite3.Connection, project_id: str, key: str, kept: Remembered) -> None:
    """Keep an answer for ``key`` (inside the caller's transaction); forget expired keys."""
    now = time.time()
    conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (now - WINDOW,))
    conn.execute(
        "INSERT OR REPLACE INTO idempotency_keys VALUES (?, ?, ?, ?, ?, ?)",
        (project_id, key, kept[0], *kept[1], now),
    )


def answered(key: str, body: bytes, kept: Remembered) -> Answer:
    """The answer to a request under ``key``: the remembered one; 422 for another body."""
    if kept[0] != fingerprint(body):
        raise HTTPError(422, f"{HEADER} {key!r} was used for another request body")
    return kept[1]
