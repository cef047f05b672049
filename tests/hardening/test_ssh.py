"""The console over a real SSH session: OpenSSH's sshd (Debian package `openssh-server`,
installed by .ci/run) on 127.0.0.1 at a free port with its own config, host key and an
authorized key made here; `ssh -tt` (a pty) runs `dpo-tui tui` on a campaign; a local tmux
hosts the ssh client, so the test presses keys and reads the screen the operator would see."""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpo_tui.campaign.plan import demo_plan_path
from tests.conftest import run_dpo_tui
from tests.tui.tmux import Tmux

SSHD = next((p for p in ("/usr/sbin/sshd", shutil.which("sshd")) if p and Path(p).exists()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    assert SSHD, "sshd not found: .ci/run must install the Debian package openssh-server"
    assert shutil.which("ssh") and shutil.which("ssh-keygen"), ".ci/run must install openssh-client (ssh, ssh-keygen)"
    d = tmp_path / "sshd"
    d.mkdir(mode=0o700)
    for name in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True, timeout=30)
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "PermitUserEnvironment no\nAcceptEnv LANG LC_*\nPrintMotd no\nPrintLastLog no\n")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"sshd exited: {proc.stdout.read() if proc.stdout else ''}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    else:
        raise AssertionError("sshd did not listen within 20 s")
    try:
        yield port, d / "user"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_the_console_over_ssh_shows_the_campaign_and_answers_keys(sshd, tmp_path):
    port, key = sshd
    plan = tmp_path / "plan.toml"
    plan.write_text(demo_plan_path().read_text())
    db = tmp_path / "c.db"
    res = run_dpo_tui("run", "--plan", plan, "--db", db, "--until", "split", "--yes", timeout=120)
    assert res.returncode == 0, res.stderr
    remote = f"cd {shlex.quote(str(tmp_path))} && TERM=xterm-256color {shlex.quote(sys.executable)} -m dpo_tui.cli tui --db {shlex.quote(str(db))}"
    ssh = ["ssh", "-tt", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
           "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
           "root@127.0.0.1", remote]
    t = Tmux(ssh, cwd=tmp_path)
    try:
        # waited on until all of it is drawn: a pane is mounted before its table is filled
        t.wait_for(lambda s: all(x in s for x in ("$ est", "[simulated]", "calls")), timeout=60)
        t.keys("2")
        t.wait_for(lambda s: all(x in s for x in ("leak", "suite fixtures", "frozen", " train ")))
        t.keys("7")
        screen = t.wait_for("chain: ok")
        t.keys("q")
        end = time.monotonic() + 15
        while not t.dead() and time.monotonic() < end:
            time.sleep(0.2)
        assert t.dead(), "the session did not end after q:\n" + t.capture()
        assert "Traceback" not in t.capture()
    finally:
        t.close()
