"""History store: context verdicts, handover log, state; survives a kill mid-write."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from router.store.history import HistoryStore


def test_context_proven_verdict_is_not_overwritten_by_conjecture(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite")
    store.remember_context("gateway", "AA-BB-CC-00-11-22", "inside", 10.0, proven=True)
    record = store.remember_context("gateway", "aa:bb:cc:00:11:22", "outside", 20.0, proven=False)
    assert record.verdict == "inside" and record.proven and record.times_seen == 2
    assert record.first_seen == 10.0 and record.last_seen == 20.0
    record = store.remember_context("gateway", "aa:bb:cc:00:11:22", "outside", 30.0, proven=True)
    assert record.verdict == "outside" and record.proven
    assert store.lookup_context("bssid", "aa:bb:cc:00:11:22") is None


@pytest.mark.parametrize("mac", ["aa:bb", "zz:bb:cc:00:11:22", ""])
def test_bad_mac_is_rejected(tmp_path: Path, mac: str) -> None:
    with pytest.raises(ValueError, match="MAC"):
        HistoryStore(tmp_path / "h.sqlite").remember_context("bssid", mac, "inside", 0.0, proven=False)


def test_handover_log_is_bounded_and_newest_first(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite", max_handovers=5)
    for i in range(12):
        store.append_handover(float(i), {"step": i})
    assert [r["step"] for r in store.recent_handovers(10)] == [11, 10, 9, 8, 7]


def test_state_survives_reopen(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite")
    store.save_state("inner.identification", 12345)
    store.save_state("inner.identification", 12346)
    store.close()
    assert HistoryStore(tmp_path / "h.sqlite").load_state("inner.identification") == 12346


def test_corrupt_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    store = HistoryStore(path)
    store.save_state("k", 1)
    assert (tmp_path / "h.sqlite.corrupt-0").exists()
    assert store.load_state("k") == 1


def _writer(path: str) -> None:
    store = HistoryStore(path)
    i = 0
    while True:
        store.append_handover(float(i), {"step": i, "pad": "x" * 500})
        store.remember_context("bssid", f"02:00:00:00:{i // 256 % 256:02x}:{i % 256:02x}", "outside", i, proven=False)
        store.save_state("counter", i)
        i += 1


def test_kill_during_writes_leaves_a_valid_database(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    for round_ in range(3):
        process = multiprocessing.get_context("spawn").Process(target=_writer, args=(str(path),))
        process.start()
        deadline = time.monotonic() + 120
        # Wait until it is really writing, then cut it off mid-stream like a power cut.
        # The probe reads through a plain read-only connection so it never takes the write lock.
        written = -1
        while time.monotonic() < deadline and written < 20 * (round_ + 1):
            time.sleep(0.05)
            try:
                probe = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.1)
                row = probe.execute("SELECT value FROM state WHERE key='counter'").fetchone()
                probe.close()
                written = int(row[0]) if row else -1
            except sqlite3.OperationalError:
                continue
        assert written >= 0, "the writer never committed anything"
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()
        store = HistoryStore(path)
        counter = store.load_state("counter")
        assert counter is not None and counter >= 0
        # The handover row of the last committed counter is there: transactions are atomic.
        assert store.recent_handovers(1)[0]["step"] >= counter
    assert not list(tmp_path.glob("*.corrupt-*"))


# --- recall for domain detection (conjecture (d)) --------------------------------------------


def test_recall_context_returns_the_domain_record(tmp_path: Path) -> None:
    from router.policy import domain

    store = HistoryStore(tmp_path / "h.sqlite")
    store.remember_context("gateway", "AA-BB-CC-00-11-22", "inside", 10.0, proven=True)
    store.remember_context("gateway", "aa:bb:cc:00:11:22", "outside", 20.0, proven=False)
    record = store.recall_context("gateway", "AA:BB:CC:00:11:22")
    assert record == domain.ContextRecord(
        "gateway", "aa:bb:cc:00:11:22", domain.Verdict.INSIDE, True, 10.0, 20.0, 2
    )
    assert isinstance(record.verdict, domain.Verdict)
    assert store.recall_context("bssid", "aa:bb:cc:00:11:22") is None
    with pytest.raises(ValueError, match="kind"):
        store.recall_context("router", "aa:bb:cc:00:11:22")


def test_recalled_history_feeds_the_conjecture_after_reopen(tmp_path: Path) -> None:
    from ipaddress import IPv4Address

    from router.policy import domain

    path = tmp_path / "h.sqlite"
    store = HistoryStore(path)
    store.remember_context("gateway", "02:00:00:00:00:01", "inside", 1000.0, proven=True)
    store.remember_context("bssid", "02:00:00:00:00:02", "inside", 1000.0, proven=True)
    store.close()
    store = HistoryStore(path)  # a reboot in between: the file is the memory
    records = store.recall_contexts([("gateway", "02:00:00:00:00:01"), ("bssid", "02-00-00-00-00-02")])
    params = domain.DomainParams(inner_home_agent=IPv4Address("10.10.0.1"), history_half_life=100.0)
    conjecture = domain.conjecture_from_history(records, 1000.0, params)
    # Two proven sightings at age 0: noisy-or of 0.7 and 0.7.
    assert conjecture.verdict is domain.Verdict.INSIDE and conjecture.source is domain.Source.HISTORY
    assert conjecture.confidence == pytest.approx(1 - 0.3 * 0.3)
    # Decay: one half-life later each counts 0.35.
    older = domain.conjecture_from_history(records, 1100.0, params)
    assert older.confidence == pytest.approx(1 - 0.65 * 0.65)


def test_recall_contexts_skips_unknown_missing_malformed_and_duplicates(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite")
    store.remember_context("gateway", "02:00:00:00:00:01", "outside", 5.0, proven=False)
    store.remember_context("bssid", "02:00:00:00:00:03", "outer_home", 6.0, proven=True)
    records = store.recall_contexts(
        [
            ("gateway", "02:00:00:00:00:01"),
            ("gateway", "02-00-00-00-00-01"),  # the same, spelled differently
            ("bssid", None),
            ("bssid", ""),
            ("bssid", "not-a-mac"),
            ("router", "02:00:00:00:00:01"),
            ("dhcp_server", "02:00:00:00:00:09"),  # never seen
            ("bssid", "02:00:00:00:00:03"),
        ]
    )
    assert [(r.kind, r.mac, r.verdict.value, r.proven) for r in records] == [
        ("gateway", "02:00:00:00:00:01", "outside", False),
        ("bssid", "02:00:00:00:00:03", "outer_home", True),
    ]


def test_recall_ignores_a_row_with_a_verdict_the_domain_does_not_know(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    store = HistoryStore(path)
    store.remember_context("gateway", "02:00:00:00:00:01", "inside", 5.0, proven=True)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO context VALUES ('bssid', '02:00:00:00:00:02', 'sideways', 0, 1, 1, 1)")
    db.commit()
    db.close()
    assert store.recall_context("bssid", "02:00:00:00:00:02") is None
    assert [r.mac for r in store.recall_contexts([("bssid", "02:00:00:00:00:02"), ("gateway", "02:00:00:00:00:01")])] == [
        "02:00:00:00:00:01"
    ]
