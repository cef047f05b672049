"""A client that hangs up mid-request (a client timeout, a dropped connection) must not make
the simulator print a traceback: `dpo-tui sim serve` users read its stderr. Found by the
fault soak (tests/hardening/fault_soak.py), reproduced here on a raw socket."""

from __future__ import annotations

import io
import logging
import socket
import time

from dpo_tui.sim.server import SimServer


def test_a_client_hanging_up_mid_body_is_handled_quietly_by_the_simulator():
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    logger = logging.getLogger("aiohttp")
    logger.addHandler(handler)
    try:
        with SimServer(seed=1) as sim:
            host, port = sim.base_url.split("//")[1].rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
                          b"Authorization: Bearer sim-dummy-key\r\nContent-Length: 500\r\n\r\n{\"model\":")
                time.sleep(0.3)
            time.sleep(0.5)
            with socket.create_connection((host, int(port)), timeout=5) as s:  # and it still serves
                s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer sim-dummy-key\r\n"
                          b"Connection: close\r\n\r\n")
                assert s.recv(64).startswith(b"HTTP/1.1 "), "the simulator stopped answering after a hang-up"
    finally:
        logger.removeHandler(handler)
    logged = buf.getvalue()
    assert "Traceback" not in logged, (
        "BUG(sim): a client hanging up while the simulator reads the request body logs an aiohttp "
        "'Error handling request' traceback (ConnectionResetError from request.read() in sim/server.py read_json; "
        "catch it, e.g. in the _errors middleware, and drop the request quietly):\n" + logged[:600])
