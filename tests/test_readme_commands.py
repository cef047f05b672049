"""The README's first command runs as written both as root and as a user: its programs
(apt-get, sudo, python3) are replaced by ones that log how they were called, so the test
checks the line's own shell logic, not Debian's mirrors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def first_command() -> str:
    return re.search(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text(), re.S).group(1)


def fake_bin(tmp: Path) -> Path:
    bin_ = tmp / "bin"
    bin_.mkdir(parents=True)
    log = tmp / "calls.log"
    for name in ("apt-get", "sudo"):
        (bin_ / name).write_text(f"#!/bin/sh\necho \"{name} $*\" >> {log}\n"
                                 + ('[ "$1" = apt-get ] && shift && apt-get "$@"\n' if name == "sudo" else ""))
    # python3 -m venv .venv: a venv whose pip and dpo-tui only log
    (bin_ / "python3").write_text(f"#!/bin/sh\necho \"python3 $*\" >> {log}\nmkdir -p .venv/bin\n"
                                  f"for p in pip dpo-tui; do printf '#!/bin/sh\\necho \"%s $*\" >> {log}\\n' $p"
                                  f" > .venv/bin/$p; chmod +x .venv/bin/$p; done\n")
    for f in bin_.iterdir():
        f.chmod(0o755)
    for tool in ("id", "sh", "mkdir", "chmod", "printf", "echo"):
        found = shutil.which(tool)
        if found and not (bin_ / tool).exists():
            (bin_ / tool).symlink_to(found)
    return bin_


def run_as(uid: int | None, tmp: Path) -> list[str]:
    bin_ = fake_bin(tmp)
    work = tmp / "work"
    work.mkdir()
    cmd = ["bash", "-c", first_command()]
    if uid is not None:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("setpriv (util-linux) is needed to run the line as a user")
        for d in (tmp, work, bin_):
            d.chmod(0o777)
        cmd = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *cmd]
    res = subprocess.run(cmd, cwd=work, env={"PATH": f"{bin_}:/usr/bin:/bin", "HOME": str(tmp)},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return (tmp / "calls.log").read_text().splitlines()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to try both as root and as a user")
def test_the_first_command_runs_as_root_without_sudo_and_as_a_user_with_it():
    import tempfile

    # not under pytest's tmp_path: a user cannot enter root's /tmp/pytest-of-root (0700)
    base = Path(tempfile.mkdtemp(prefix="dpo-tui-readme-"))
    base.chmod(0o755)
    try:
        root = run_as(None, base / "root")
        user = run_as(65534, base / "user")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert root[0] == "apt-get update" and not any(c.startswith("sudo") for c in root)
    assert root[-1] == "dpo-tui demo"
    assert user[:2] == ["sudo apt-get update", "apt-get update"] and user[-1] == "dpo-tui demo"
