"""The simulator's aiohttp application, and an in-process server on a background thread.

    with SimServer(seed=7, faults="429=0.5", state_dir=tmp) as sim:
        client = Together(api_key="sim-key", base_url=sim.base_url)
        sim.set_faults("")          # change faults between calls

Every response carries `X-Simulated: true`; every error has Together's JSON error body.

What a web page could send to a loopback port is refused: a request with an `Origin`
header (403), without `Authorization: Bearer <key>` (401; with `api_key` set, the key must
match), or with a body that is not `application/json` (415; `POST /v1/files` is
`multipart/form-data`, as the SDK's upload sends it). The upload's `PUT` to its signed
`Location` (which carries no Authorization, as the SDK sends it) needs that URL's token.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import threading
import time
from typing import Any

from aiohttp import web

from dpo_tui.errors import InputError
from dpo_tui.sim.faults import RateWindow
from dpo_tui.sim.state import SimState

STATE: web.AppKey[SimState] = web.AppKey("sim_state", SimState)
API_KEY: web.AppKey[str] = web.AppKey("sim_api_key", str)
RATE: web.AppKey[RateWindow] = web.AppKey("sim_rate", RateWindow)
RATE_HEADERS: web.RequestKey[dict] = web.RequestKey("sim_ratelimit_headers", dict)
SIM_HEADER = "X-Simulated"
_NO_FAULT_PREFIXES = ("/_storage/", "/_sim/")


class ApiError(Exception):
    """An error answered with Together's body `{"error": {message, type, param, code}}`."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> web.Response:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        body.update(self.extra)
        return web.json_response(body, status=self.status, headers=self.headers)


def json_body(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(obj, separators=(",", ":")).encode(), status=status,
                        content_type="application/json", headers=headers)


class ClientGone(Exception):
    """The client hung up while we read its request: nothing to answer, nothing to log."""


async def read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        raise ClientGone() from exc
    except Exception as exc:  # aiohttp's payload errors when the body ends early
        if "payload" in type(exc).__name__.lower() or "connection" in str(exc).lower():
            raise ClientGone() from exc
        raise


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await read_body(request)
    if not raw.strip():
        return {}
    try:
        obj = json.loads(raw)
    except ValueError:
        raise ApiError(400, "Request body is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return obj


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except ClientGone:
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=400, text="client hung up")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status)
        msg = f"{request.method} {request.path}: {exc.reason}"
        return ApiError(exc.status, msg, code=code).response()


@web.middleware
async def _faults(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith(_NO_FAULT_PREFIXES):
        return await handler(request)
    injector = request.app[STATE].faults
    if request.method == "POST" and request.path == "/v1/chat/completions":
        model = str((await read_json(request)).get("model") or "")
        allowed, request[RATE_HEADERS] = request.app[RATE].take(model, injector.spec.rate_rps)
        if not allowed:
            raise ApiError(429, f"Request rate above your dynamic rate for {model} (simulated)",
                           type_="dynamic_request_limited", code="dynamic_request_limited",
                           headers={"retry-after": request[RATE_HEADERS]["x-ratelimit-reset"]})
    kind, delay = injector.draw()
    if delay:
        await asyncio.sleep(delay)
    if kind is None:
        return await handler(request)
    if kind == "429":
        ms = injector.spec.retry_after_ms
        raise ApiError(429, "Rate limit exceeded (simulated fault)", type_="rate_limit_exceeded",
                       code="rate_limit_exceeded",
                       headers={"retry-after-ms": f"{ms:g}", "retry-after": f"{max(ms / 1000, 0.001):g}"})
    if kind in ("503", "500"):
        raise ApiError(int(kind), "The server is overloaded or not ready yet (simulated fault)"
                       if kind == "503" else "Internal server error (simulated fault)", type_="server_error")
    if kind == "timeout":
        await asyncio.sleep(injector.spec.timeout_s)
        raise ApiError(504, "Gateway timeout (simulated fault)", type_="server_error")
    if kind == "reset":
        if request.transport is not None:
            request.transport.abort()
        raise ApiError(502, "connection reset (simulated fault)")
    # malformed: a truncated JSON body with a success status
    return web.Response(body=b'{"id":"sim-malformed","object":', status=200, content_type="application/json")


_BAD_KEY = ("Invalid API key provided. You can find your API key at https://api.together.xyz/settings/api-keys.")


def _check_auth(request: web.Request) -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    expected = request.app.get(API_KEY) or ""
    if scheme.lower() != "bearer" or not token or \
            (expected and not hmac.compare_digest(token.encode(), expected.encode())):
        raise ApiError(401, _BAD_KEY, code="invalid_api_key")


def _check_content_type(request: web.Request) -> None:
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    want = "multipart/form-data" if (request.method, request.path) == ("POST", "/v1/files") else "application/json"
    if request.content_type != want:
        raise ApiError(415, f"Unsupported Content-Type {request.headers.get('Content-Type', '(none)')!r}: "
                       f"{request.method} {request.path} takes {want}", code="unsupported_media_type")


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refuse what a browser could send: any Origin, no key, a body that is not JSON."""
    if "Origin" in request.headers:
        raise ApiError(403, "Requests from a web page (an Origin header) are refused: the simulator serves API "
                       "clients only", type_="forbidden", code="origin_refused")
    if not request.path.startswith("/_storage/"):  # the signed upload URL checks its own token
        _check_auth(request)
        _check_content_type(request)
    return await handler(request)


async def _label(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[SIM_HEADER] = "true"
    for k, v in (request.get(RATE_HEADERS) or {}).items():
        response.headers[k] = v


def build_app(state: SimState, api_key: str | None = None) -> web.Application:
    from dpo_tui.sim import routes_catalog, routes_chat, routes_endpoints, routes_files, routes_finetune

    app = web.Application(middlewares=[_errors, _guard, _faults], client_max_size=512 * 1024 * 1024)
    app[STATE] = state
    app[API_KEY] = api_key or ""
    app.on_response_prepare.append(_label)
    app[RATE] = RateWindow()
    for module in (routes_chat, routes_files, routes_finetune, routes_catalog, routes_endpoints):
        app.router.add_routes(module.routes)
    return app


def check_host(host: str, allow_remote: bool, api_key: str | None = None) -> None:
    if allow_remote:
        if not api_key:
            raise InputError("--allow-remote needs --api-key KEY: a simulator others can reach checks the key "
                             "clients send")
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InputError(f"refusing to bind the simulator to non-loopback host {host!r} (use --allow-remote)")


class SimServer:
    """The simulator on a free loopback port, served from a background thread."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, seed: int = 0, faults: Any = None,
                 state_dir: Any = None, allow_remote: bool = False, api_key: str | None = None,
                 **options: Any) -> None:
        check_host(host, allow_remote, api_key)
        self.host, self.port, self.api_key = host, port, api_key
        self.state = SimState(seed=seed, faults=faults, state_dir=state_dir, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set_faults(self, spec: Any) -> None:
        self.state.faults.set(spec)

    def start(self) -> "SimServer":
        self._thread = threading.Thread(target=self._run, name="dpo-tui-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("simulator did not start within 15 s")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_site())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
        loop.close()

    async def _start_site(self) -> None:
        self._runner = web.AppRunner(build_app(self.state, self.api_key), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_forever(host: str, port: int, state: SimState, ready: Any = None, api_key: str | None = None) -> None:
    """Run in the foreground until interrupted (the `dpo-tui sim serve` command)."""
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    async def main() -> None:
        runner = web.AppRunner(build_app(state, api_key), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        if ready:
            ready(f"http://{host}:{bound}")
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        time.sleep(0)
