"""The demo audience in a database: the ``campaign_profiles`` table the sample DAGs query.

``make demo`` loads the committed 1,200-profile audience into an embedded SQLite file;
``make scale`` loads a generated audience of any size into PostgreSQL with ``COPY``.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

from demo.audience import COLUMNS, Profile, render_csv

TABLE = "campaign_profiles"
_SQLITE_SCHEMA = (
    f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, email TEXT NOT NULL, first_name TEXT NOT NULL,"
    " locale TEXT NOT NULL, zip TEXT NOT NULL, region TEXT NOT NULL, segment TEXT NOT NULL,"
    " email_consent BOOLEAN NOT NULL)"
)


def load_sqlite(path: Path, profiles: Sequence[Profile]) -> Path:
    """Create (or replace) ``path`` holding ``profiles`` in the ``campaign_profiles`` table; return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(_SQLITE_SCHEMA)
        conn.executemany(
            f"INSERT INTO {TABLE} VALUES ({', '.join('?' for _ in COLUMNS)})",  # noqa: S608 - fixed names
            [tuple(profile[column] for column in COLUMNS) for profile in profiles],  # type: ignore[literal-required]
        )
    return path


_POSTGRES_SCHEMA = (
    f"CREATE TABLE {TABLE} (id INTEGER PRIMARY KEY, email TEXT NOT NULL, first_name TEXT NOT NULL,"
    " locale TEXT NOT NULL, zip TEXT NOT NULL, region TEXT NOT NULL, segment TEXT NOT NULL,"
    " email_consent BOOLEAN NOT NULL)"
)


def load_postgres(url: str, profiles: Sequence[Profile]) -> None:
    """Create the ``campaign_profiles`` table in the database at ``url`` and fill it with ``COPY`` (fast)."""
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
            cursor.execute(_POSTGRES_SCHEMA)
            cursor.copy_expert(
                f"COPY {TABLE} FROM STDIN WITH (FORMAT csv, HEADER true)", io.StringIO(render_csv(profiles))
            )
            cursor.execute(f"ANALYZE {TABLE}")
    finally:
        conn.close()
