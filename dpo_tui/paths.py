"""Where the installed program finds its shipped data, from any working directory.

`migrations/` and `fixtures/` sit at the top of the source tree and are mapped into the
package at build time (see pyproject.toml), so both an editable install and a wheel
resolve them through importlib.resources.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _package_dir(name: str) -> Path:
    path = Path(str(resources.files(name)))
    if not path.is_dir():  # pragma: no cover - a broken install
        raise RuntimeError(f"dpo-tui is installed without its {name} data ({path})")
    return path


def migrations_dir() -> Path:
    return _package_dir("dpo_tui.migrations")


def fixtures_dir() -> Path:
    return _package_dir("dpo_tui.fixtures")


def fixture(*parts: str) -> Path:
    """A file under the shipped fixtures, e.g. fixture("plans", "demo.toml")."""
    return fixtures_dir().joinpath(*parts)
