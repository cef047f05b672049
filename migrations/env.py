"""Alembic environment for dpo-tui campaign databases.

dpo-tui runs migrations in code with a connection handed over in
`config.attributes["connection"]`; run by hand, it takes `sqlalchemy.url` from the config.
"""

from alembic import context
from sqlalchemy import create_engine

from dpo_tui.events.table import SQLModel

target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():  # pragma: no cover - dpo-tui never uses offline SQL scripts
    raise SystemExit("dpo-tui migrations run online only")
run_migrations_online()
