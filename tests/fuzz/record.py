"""Crash bookkeeping shared by the engines: dedupe by signature, keep the shortest input."""

from __future__ import annotations

import hashlib
import json
import traceback
from pathlib import Path


def signature(exc: BaseException) -> str:
    """Exception type plus the innermost product frame: one line per distinct bug."""
    cause = exc.__cause__ or exc
    frames = traceback.extract_tb(cause.__traceback__)
    product = [f for f in frames if "/router/" in f.filename] or frames
    where = f"{product[-1].filename.split('/work/main/')[-1]}:{product[-1].lineno}" if product else "?"
    kind = type(cause).__name__ if cause is not exc else str(exc).split(":", 2)[1].strip()[:60]
    return f"{kind} at {where}"


class CrashLog:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.hits = 0
        self.unique: dict[str, int] = {}  # signature -> length of the shortest input kept

    def record(self, exc: BaseException, data: bytes) -> None:
        self.hits += 1
        sig = signature(exc)
        if sig in self.unique and self.unique[sig] <= len(data):
            return
        self.unique[sig] = len(data)
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = "crash-" + hashlib.sha1(sig.encode()).hexdigest()[:12]
        (self.directory / f"{stem}.bin").write_bytes(data)
        text = "".join(traceback.format_exception(exc))
        (self.directory / f"{stem}.txt").write_text(f"{sig}\ninput: {data!r}\n\n{text}")

    def write_stats(self, path: Path, executions: int, seconds: float) -> None:
        path.write_text(json.dumps({"executions": executions, "seconds": seconds,
                                    "crash_hits": self.hits, "crashes": sorted(self.unique)}))
