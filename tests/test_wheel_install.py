"""Build the wheel, install it into a fresh venv, and use it from another folder: the
installed program must find its migrations and fixtures inside the package."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_data_inside_the_package_and_runs_from_anywhere(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist), str(ROOT)], check=True, timeout=300)
    (wheel,) = dist.glob("dpo_tui-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "dpo_tui/migrations/env.py" in names
    assert "dpo_tui/migrations/script.py.mako" in names
    assert any(n.startswith("dpo_tui/migrations/versions/0001_") for n in names)
    assert any(n.startswith("dpo_tui/fixtures/") for n in names)
    # every package of the source tree is in the wheel (the console's screens were once left out)
    packages = {str(p.relative_to(ROOT)) for p in (ROOT / "dpo_tui").rglob("__init__.py")}
    assert packages - set(names) == set()
    tops = {n.split("/")[0] for n in names}
    assert not tops & {"migrations", "fixtures", "tests"}, tops

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # Dependencies come from the test's own environment (no network needed); dpo_tui only from the wheel.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, timeout=300)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([py, "-c", "import dpo_tui; print(dpo_tui.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(env_dir)), where
    subprocess.run([py, "-c", "import dpo_tui.tui.app"], cwd=elsewhere, check=True, timeout=120)  # the console
    exe = env_dir / "bin" / "dpo-tui"
    subprocess.run([exe, "init", "--db", "w.db", "--name", "from-wheel"], cwd=elsewhere, check=True, timeout=120)
    out = subprocess.run([exe, "replay", "--db", "w.db", "--json"], cwd=elsewhere, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    assert json.loads(out)["campaign"]["name"] == "from-wheel"
    assert subprocess.run([exe, "audit", "--db", "w.db"], cwd=elsewhere, timeout=120).returncode == 0
