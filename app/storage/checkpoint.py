"""WAL checkpoints of a SQLite database in a thread of their own.

SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL over
`wal_autocheckpoint` pages: that request copies every page changed since the last one back into
the database file and syncs it, with the event loop stopped (inline database calls). In the
CRUD benchmark that was the p99: 22-26 ms with automatic checkpoints, 7 ms with none
(bench/run.py --db sqlite --workloads crud --workers 1). This thread runs a PASSIVE checkpoint
every second instead, which waits for no reader or writer; the sqlite3 module lets go of the
GIL while SQLite works, so requests go on meanwhile: p99 16 ms (the copying still shares the
core), throughput within the runs' noise. The automatic checkpoint (engine.py: every ~40 MB of
WAL) stays as the backstop should this thread fall behind. Each worker process runs one; a
checkpoint another is running makes this one a no-op.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

log = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 1.0


class WalCheckpointer:
    def __init__(self, engine: Engine, interval: float = CHECKPOINT_SECONDS) -> None:
        self._engine = engine
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        # the last checkpoint's (busy, frames in the WAL, frames of them in the database)
        self.last: tuple[int, int, int] | None = None

    def start(self) -> WalCheckpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ends the thread after the checkpoint in progress, if any."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.checkpoint()
            except Exception as exc:  # a read-only file, a database gone: the backstop remains
                log.warning("background WAL checkpoints stopped: %s", exc)
                return

    def checkpoint(self) -> None:
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            busy, frames, copied = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            cursor.close()
        finally:
            connection.close()
        self.last = (busy, frames, copied)


def needs_checkpointer(engine: Engine) -> bool:
    """A SQLite database in a file (WAL mode); not `:memory:`."""
    database = engine.url.database
    return engine.dialect.name == "sqlite" and bool(database) and database != ":memory:"
