"""Alembic, run in code, on a campaign database file.

Alembic (and SQLAlchemy under it) is imported only to upgrade a file: opening a campaign
already at head, which is every command on an existing campaign, reads the revisions from
the migration scripts' own `revision` / `down_revision` lines (a test holds the two
readings equal) and starts without them.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from dpo_tui.paths import migrations_dir

if TYPE_CHECKING:
    from alembic.config import Config


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def _script_revisions(path: Path) -> tuple[str, str | None] | None:
    """(revision, down_revision) as the script assigns them, literally; None if it does not."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target = (node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1
                  else node.target if isinstance(node, ast.AnnAssign) else None)  # `revision: str = "..."`
        if (isinstance(target, ast.Name) and target.id in ("revision", "down_revision")
                and isinstance(node.value, ast.Constant)):
            found[target.id] = node.value.value
    rev = found.get("revision")
    return (rev, found.get("down_revision")) if isinstance(rev, str) else None  # type: ignore[return-value]


@lru_cache(maxsize=1)
def known_revisions() -> tuple[str, frozenset[str]]:
    """(head revision, every revision this code knows)."""
    revisions = [r for p in sorted((migrations_dir() / "versions").glob("*.py"))
                 if (r := _script_revisions(p)) is not None]
    known = frozenset(rev for rev, _down in revisions)
    heads = sorted(known - {down for _rev, down in revisions})
    if len(heads) != 1:  # pragma: no cover - a packaging mistake
        raise RuntimeError(f"migrations have {len(heads)} heads: {heads}")
    return heads[0], known


def alembic_revisions() -> tuple[str, frozenset[str]]:
    """The same, as Alembic reads them (the test's reference for `known_revisions`)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    heads = script.get_heads()
    return heads[0] if len(heads) == 1 else ",".join(heads), frozenset(rev.revision for rev in script.walk_revisions())


def upgrade(path: Path) -> None:
    """Bring the schema of the SQLite file at `path` to head, in one transaction."""
    from alembic import command
    from sqlalchemy import create_engine, event

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
