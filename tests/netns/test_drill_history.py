"""Drill (issue 9): power cut during a history write.

A process writing ``router.store.history`` in a loop (handover records, context verdicts and a
counter in the state table, each its own transaction) is SIGKILLed at a random moment, again
and again. After every kill the sqlite file passes ``PRAGMA integrity_check``, the daemon's
open path (``HistoryStore``: quick_check, WAL recovery) takes it without moving it aside, and
every write the killed process had reported as committed is there.

A SIGKILL leaves the kernel's page cache intact, so this proves sqlite's transaction and WAL
recovery under an interrupted writer, not the storage's flush ordering (``synchronous=FULL``
is what covers that on real power loss; the guest has no way to cut power to a disk).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from router.store.history import HistoryStore

ROOT = Path(__file__).resolve().parents[2]
KILLS = 25

WRITER = r"""
import sys, time
from router.store.history import HistoryStore
store = HistoryStore(sys.argv[1], max_handovers=100000)
n = int(store.load_state("counter", 0))
print("ready", flush=True)
while True:
    n += 1
    store.append_handover(time.time(), {"n": n, "pad": "x" * (n % 700)})
    store.remember_context("gateway", "02:00:00:00:%02x:%02x" % (n // 256 % 256, n % 256), "outside", time.time(), proven=n % 2 == 0)
    store.save_state("counter", n)
    print(n, flush=True)
"""


def test_sigkill_during_history_writes_leaves_a_valid_database(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(9)
    acknowledged = 0
    for kill in range(KILLS):
        writer = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True, env=env)
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.25))
        writer.send_signal(signal.SIGKILL)
        output = writer.stdout.read().split()
        writer.wait()
        numbers = [int(word) for word in output if word.isdigit()]
        assert numbers, f"kill {kill}: the writer committed nothing (too slow a machine?)"
        acknowledged = numbers[-1]

        with sqlite3.connect(db) as check:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",), f"kill {kill}"
        store = HistoryStore(db)  # the daemon's open path
        try:
            counter = store.load_state("counter")
            assert counter is not None and counter >= acknowledged, (kill, counter, acknowledged)
            newest = store.recent_handovers(1)[0]["n"]
            assert newest >= acknowledged, (kill, newest, acknowledged)
            assert store.lookup_context("gateway", f"02:00:00:00:{acknowledged // 256 % 256:02x}:{acknowledged % 256:02x}")
        finally:
            store.close()
        assert not list(tmp_path.glob("history.sqlite.corrupt-*")), f"kill {kill}: the daemon moved the db aside"
    print(f"\n{KILLS} SIGKILLs during writes: database valid after each; {acknowledged} writes committed in all")
