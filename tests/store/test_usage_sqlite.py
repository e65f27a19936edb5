"""Which SQLite URLs get the ledger's own writer thread (the rest keep the SQLAlchemy path)."""

from __future__ import annotations

import pytest

from sluice.store.usage_sqlite import sqlite_file


@pytest.mark.parametrize("url, path", [
    ("sqlite:///./sluice.db", "./sluice.db"),
    ("sqlite+aiosqlite:////var/lib/sluice/sluice.db", "/var/lib/sluice/sluice.db"),
    ("sqlite://", None),
    ("sqlite:///:memory:", None),
    ("sqlite:///file:x.db?mode=memory&uri=true", None),
    ("sqlite:///x.db?timeout=5", None),
    ("postgresql+asyncpg://u@localhost/db", None),
])
def test_sqlite_file(url, path):
    assert sqlite_file(url) == path
