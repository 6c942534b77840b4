"""Persistent history: network context verdicts, the handover log, small daemon state.

sqlite3 in WAL mode with ``synchronous=FULL``: every write is one short transaction, so a
power cut in the middle of a write leaves the previous state intact (sqlite's journal is the
recovery mechanism; we never write files by hand). On open, ``PRAGMA quick_check`` runs; a
corrupt database is moved aside (``.corrupt-<n>``) and a fresh one started, because a router
that refuses to boot over a history file is worse than one that forgets its history.

Context records implement the seed's "network context history": gateways, DHCP servers and
WLAN BSSIDs, indexed by their MAC address, with the verdict last proven there.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.policy import domain

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS context (
    kind TEXT NOT NULL,            -- 'gateway' | 'dhcp_server' | 'bssid'
    mac TEXT NOT NULL,             -- lower-case aa:bb:cc:dd:ee:ff
    verdict TEXT NOT NULL,         -- 'inside' | 'outside' | 'outer_home'
    proven INTEGER NOT NULL,       -- 1 if an authenticated registration proved it
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    times_seen INTEGER NOT NULL,
    PRIMARY KEY (kind, mac)
);
CREATE TABLE IF NOT EXISTS handover (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    record TEXT NOT NULL           -- JSON, as the status page shows it
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL            -- JSON
);
"""

CONTEXT_KINDS = ("gateway", "dhcp_server", "bssid")
VERDICTS = ("inside", "outside", "outer_home")


@dataclass(frozen=True, slots=True)
class ContextRecord:
    kind: str
    mac: str
    verdict: str
    proven: bool
    first_seen: float
    last_seen: float
    times_seen: int


def _normalise_mac(mac: str) -> str:
    parts = mac.replace("-", ":").lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise ValueError(f"not a MAC address: {mac!r}")
    return ":".join(parts)


class HistoryStore:
    """One sqlite file; all methods are short synchronous transactions (microseconds on flash)."""

    def __init__(self, path: str | Path, *, max_handovers: int = 1000) -> None:
        self.path = Path(path)
        self.max_handovers = max_handovers
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open_checked()

    def _open_checked(self) -> sqlite3.Connection:
        try:
            db = self._connect()
            (result,) = db.execute("PRAGMA quick_check").fetchone()
            if result != "ok":
                raise sqlite3.DatabaseError(result)
            return db
        except sqlite3.DatabaseError as exc:
            aside = self._move_aside()
            log.warning("history %s unreadable (%s): moved to %s, starting fresh", self.path, exc, aside)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # A writer killed mid-transaction (or a tool reading the file) may hold the lock a
        # moment longer: wait for it rather than fail the daemon's start.
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        db.execute(
            "INSERT OR IGNORE INTO state(key, value) VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),)
        )
        return db

    def _move_aside(self) -> Path:
        n = 0
        while (aside := self.path.with_name(f"{self.path.name}.corrupt-{n}")).exists():
            n += 1
        for suffix in ("", "-wal", "-shm"):
            part = Path(str(self.path) + suffix)
            if part.exists():
                part.rename(Path(str(aside) + suffix))
        return aside

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    # --- network context --------------------------------------------------------------------

    def remember_context(self, kind: str, mac: str, verdict: str, now: float, *, proven: bool) -> ContextRecord:
        """Record what we believe about the network behind ``mac``.

        A proven verdict (authenticated registration) always wins; an unproven one never
        overwrites a proven one, so a rogue network imitating a known gateway cannot
        rewrite history by conjecture alone.
        """
        if kind not in CONTEXT_KINDS:
            raise ValueError(f"unknown context kind {kind!r}")
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}")
        mac = _normalise_mac(mac)
        with self._transaction() as db:
            row = db.execute(
                "SELECT verdict, proven FROM context WHERE kind=? AND mac=?", (kind, mac)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO context VALUES (?, ?, ?, ?, ?, ?, 1)", (kind, mac, verdict, int(proven), now, now)
                )
            elif proven or not row[1]:
                db.execute(
                    "UPDATE context SET verdict=?, proven=?, last_seen=?, times_seen=times_seen+1 WHERE kind=? AND mac=?",
                    (verdict, int(proven), now, kind, mac),
                )
            else:
                db.execute(
                    "UPDATE context SET last_seen=?, times_seen=times_seen+1 WHERE kind=? AND mac=?", (now, kind, mac)
                )
        record = self.lookup_context(kind, mac)
        assert record is not None
        return record

    def lookup_context(self, kind: str, mac: str) -> ContextRecord | None:
        row = self._db.execute(
            "SELECT kind, mac, verdict, proven, first_seen, last_seen, times_seen FROM context WHERE kind=? AND mac=?",
            (kind, _normalise_mac(mac)),
        ).fetchone()
        if row is None:
            return None
        return ContextRecord(row[0], row[1], row[2], bool(row[3]), row[4], row[5], row[6])

    def contexts(self) -> list[ContextRecord]:
        rows = self._db.execute(
            "SELECT kind, mac, verdict, proven, first_seen, last_seen, times_seen FROM context ORDER BY last_seen DESC"
        ).fetchall()
        return [ContextRecord(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6]) for r in rows]

    def recall_context(self, kind: str, mac: str) -> domain.ContextRecord | None:
        """What ``domain.conjecture_from_history`` takes: the record for ``(kind, mac)`` with its
        verdict as a ``domain.Verdict``, or None if never seen. ValueError for a bad kind or MAC.

        Times are the ``now`` given to :meth:`remember_context` (the daemon uses wall-clock
        ``time.time()``, since history outlives reboots): pass the same clock to the conjecture.
        """
        if kind not in CONTEXT_KINDS:
            raise ValueError(f"unknown context kind {kind!r}")
        record = self.lookup_context(kind, mac)
        if record is None:
            return None
        try:
            verdict = domain.Verdict(record.verdict)
        except ValueError:
            log.warning("history: %s %s has unknown verdict %r, ignored", kind, record.mac, record.verdict)
            return None
        return domain.ContextRecord(
            record.kind, record.mac, verdict, record.proven, record.first_seen, record.last_seen, record.times_seen
        )

    def recall_contexts(self, observed: Iterable[tuple[str, str | None]]) -> list[domain.ContextRecord]:
        """The known records among ``(kind, mac)`` pairs observed on an uplink, in the given order.

        A hint path never raises: a missing (None / empty) or malformed MAC, or an unknown kind,
        is skipped; duplicates are recalled once.
        """
        records: list[domain.ContextRecord] = []
        seen: set[tuple[str, str]] = set()
        for kind, mac in observed:
            if not mac:
                continue
            try:
                key = (kind, _normalise_mac(mac))
                if key in seen:
                    continue
                seen.add(key)
                record = self.recall_context(*key)
            except ValueError as exc:
                log.debug("history: not recalled: %s", exc)
                continue
            if record is not None:
                records.append(record)
        return records

    # --- handover log -----------------------------------------------------------------------

    def append_handover(self, at: float, record: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO handover(at, record) VALUES (?, ?)", (at, json.dumps(record, sort_keys=True)))
            db.execute(
                "DELETE FROM handover WHERE id <= (SELECT MAX(id) FROM handover) - ?", (self.max_handovers,)
            )

    def recent_handovers(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT record FROM handover ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    # --- small state (identification counters, last good config digest) ---------------------

    def save_state(self, key: str, value: Any) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO state(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, json.dumps(value)),
            )

    def load_state(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])
