"""The sqlite tracking store: created/upgraded once under a file lock, WAL, busy timeout.

MLflow creates a fresh sqlite store's schema (~50 alembic migrations, seconds) in whichever
process opens it first and takes no lock: concurrent first runs raced and broke the store
(`_alembic_tmp_*` tables left behind, runs untracked). `ensure_sqlite_store` does it once, under
an fcntl lock on `<db>.lock`, switches the database to WAL (a property of the file, kept by every
later connection) and leaves a stamp `<db>.schema` so later calls take a stdlib-only fast path
(no `import mlflow`). Connections Scanflow makes add a busy timeout (`with_busy_timeout`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

__all__ = [
    "BUSY_TIMEOUT_S",
    "ensure_sqlite_store",
    "run_exists",
    "sqlite_path",
    "store_ready",
    "with_busy_timeout",
]

#: Seconds a connection waits for another writer (sqlite's busy timeout) instead of failing.
BUSY_TIMEOUT_S = 60
_LOCK_WAIT_HINT = "another process is creating or upgrading it"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI (query string dropped), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):].split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest).absolute() if rest.startswith("/") else Path(os.getcwd(), rest)


def with_busy_timeout(uri: str, seconds: float = BUSY_TIMEOUT_S) -> str:
    """`uri` with `?timeout=SECONDS` for a sqlite URI without one (SQLAlchemy's pysqlite passes it
    to `sqlite3.connect`, i.e. the busy timeout); any other URI unchanged."""
    if sqlite_path(uri) is None:
        return uri
    base, _, query = uri.partition("?")
    params = dict(parse_qsl(query))
    params.setdefault("timeout", f"{seconds:g}")
    return f"{base}?{urlencode(params)}"


def _stamp_path(db: Path) -> Path:
    return db.with_name(db.name + ".schema")


@contextlib.contextmanager
def _flock(db: Path, exclusive: bool) -> Iterator[None]:
    lock = db.with_name(db.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def _mlflow_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlflow")
    except PackageNotFoundError:
        return version("mlflow-skinny")


def _connect_ro(db: Path) -> sqlite3.Connection:
    """A read-only connection that never creates the file."""
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)


def _current_state(db: Path) -> tuple[str | None, str, bool]:
    """(alembic revision, journal mode, leftover `_alembic_tmp_*` tables?) read with the stdlib."""
    con = _connect_ro(db)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        revision = None
        if "alembic_version" in names:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
        mode = str(con.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        return revision, mode, any(n.startswith("_alembic_tmp_") for n in names)
    finally:
        con.close()


def _stamp_matches(db: Path) -> bool:
    try:
        stamp = json.loads(_stamp_path(db).read_text(encoding="utf-8"))
        if stamp.get("mlflow") != _mlflow_version():
            return False
        revision, mode, leftovers = _current_state(db)
    except (OSError, ValueError, sqlite3.Error, AttributeError):
        return False
    return revision is not None and revision == stamp.get("revision") and mode == "wal" and not leftovers


def store_ready(uri: str) -> bool:
    """True if `uri` is not a sqlite store, or its schema is current and WAL is on (no mlflow
    import; waits while another process holds the creation lock)."""
    db = sqlite_path(uri)
    if db is None:
        return True
    if not db.exists():
        return False
    try:
        with _flock(db, exclusive=False):
            return _stamp_matches(db)
    except OSError:
        return False


def ensure_sqlite_store(uri: str) -> None:
    """Create or upgrade the sqlite store of `uri` once, under `<db>.lock`; turn on WAL; drop
    `_alembic_tmp_*` tables an interrupted migration left. Not a sqlite URI: nothing to do.

    Raises `TrackingError` naming the file and the fix.
    """
    from scanflow_jupyter.tracking import TrackingError

    db = sqlite_path(uri)
    if db is None:
        return
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        with _flock(db, exclusive=True):
            if _stamp_matches(db):
                return
            _create_or_upgrade(db)
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure names the store and the fix
        raise TrackingError(
            f"could not create or upgrade the MLflow sqlite store {db}: {type(exc).__name__}: {exc}. "
            f"Check that {db.parent} is writable and has free space; if the file is damaged, move it "
            "away (its runs are lost) and run again."
        ) from exc


def _create_or_upgrade(db: Path) -> None:
    """Under the exclusive lock: WAL, schema at head, no leftovers, stamp."""
    con = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()
    import sqlalchemy
    from mlflow.store.db import utils as db_utils

    engine = sqlalchemy.create_engine(f"sqlite:///{db}", connect_args={"timeout": BUSY_TIMEOUT_S})
    try:
        with engine.begin() as conn:  # leftovers of an interrupted batch migration
            for (name,) in conn.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE '\\_alembic\\_tmp\\_%' ESCAPE '\\'"
            ).fetchall():
                conn.exec_driver_sql(f'DROP TABLE "{name}"')
        head = db_utils._get_latest_schema_revision()
        if db_utils._is_empty_database(engine):
            db_utils._initialize_tables(engine)
        elif db_utils._get_schema_version(engine) != head:
            db_utils._upgrade_db(engine)
        revision = db_utils._get_schema_version(engine)
    finally:
        engine.dispose()
    stamp = {"mlflow": _mlflow_version(), "revision": revision}
    tmp = _stamp_path(db).with_name(f".{db.name}.schema.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stamp), encoding="utf-8")
    os.replace(tmp, _stamp_path(db))


def run_exists(uri: str, run_id: str) -> bool | None:
    """Does MLflow run `run_id` exist in the sqlite store of `uri`? None if `uri` is not sqlite.

    Reads the file with the stdlib, read-only: a deleted store is never re-created by the check.
    """
    db = sqlite_path(uri)
    if db is None:
        return None
    try:
        con = _connect_ro(db)
        try:
            row = con.execute("SELECT 1 FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return row is not None
