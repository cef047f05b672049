"""Alembic, run in code, on a campaign database file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event

from dpo_tui.paths import migrations_dir


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


@lru_cache(maxsize=1)
def known_revisions() -> tuple[str, frozenset[str]]:
    """(head revision, every revision this code knows)."""
    script = ScriptDirectory.from_config(_config())
    heads = script.get_heads()
    if len(heads) != 1:  # pragma: no cover - a packaging mistake
        raise RuntimeError(f"migrations have {len(heads)} heads: {heads}")
    return heads[0], frozenset(rev.revision for rev in script.walk_revisions())


def upgrade(path: Path) -> None:
    """Bring the schema of the SQLite file at `path` to head, in one transaction."""
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # noqa: ANN001 - SQLAlchemy's hook signature
        dbapi_conn.execute("PRAGMA busy_timeout = 5000")

    try:
        with engine.begin() as conn:
            cfg = _config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        engine.dispose()
