"""A real terminal for end-to-end tests: the program under tmux on a private server."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path


class Tmux:
    def __init__(self, command: list[str], *, cwd: Path, width: int = 80, height: int = 24,
                 env: dict[str, str] | None = None) -> None:
        assert shutil.which("tmux"), "tmux is required (CI installs it: .ci/run)"
        self.socket = f"dpo-tui-test-{uuid.uuid4().hex[:8]}"
        # COLUMNS and LINES would pin the program's size (Textual takes them over the terminal's,
        # and pytest-xdist's workers set them to 80x24): the terminal is tmux's, so drop them
        inherited = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        self.env = {**inherited, **(env or {}), "TERM": "xterm-256color"}
        cmd = " ".join(shlex.quote(c) for c in command)
        self._tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), "-c", str(cwd), cmd,
                   ";", "set-option", "-t", "t", "remain-on-exit", "on", ";", "set-option", "-s", "escape-time", "0")

    def _tmux(self, *args: str) -> str:
        res = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30,
                             env=self.env)
        assert res.returncode == 0, f"tmux {args[0]}: {res.stderr}"
        return res.stdout

    def capture(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str, pause: float = 0.15) -> None:
        for k in keys:
            self._tmux("send-keys", "-t", "t", k)
            # a key right after Escape would arrive as alt+key: give the lone ESC time to land
            time.sleep(0.4 if k == "Escape" else pause)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "t", "-l", text)

    def wait_for(self, predicate: Callable[[str], bool] | str, timeout: float = 60.0) -> str:
        check = (lambda s: predicate in s) if isinstance(predicate, str) else predicate
        end = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < end:
            screen = self.capture()
            assert "Traceback" not in screen, screen
            if check(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting; the screen was:\n{screen}")

    def dead(self) -> bool:
        return self._tmux("list-panes", "-t", "t", "-F", "#{pane_dead}").strip() == "1"

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


def count(pattern: str, screen: str) -> int | None:
    m = re.search(pattern, screen)
    return int(m.group(1)) if m else None
