"""`dpo-tui models`, `dpo-tui tokens`, `dpo-tui doctor`: the provider layer on the command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpo_tui.errors import InputError
from dpo_tui.provider.needs import NEEDS

# Settings (pydantic), the tokenizer, the SDK and the catalogue (which imports the SDK and
# the store) are imported inside the commands that use them, not here: `dpo-tui --help`
# and argument errors start on the standard library (tests/test_cli_start.py).
if TYPE_CHECKING:
    from dpo_tui.config import Settings
    from dpo_tui.provider.catalog import Availability, PriceBook
    from dpo_tui.provider.tokenizer import QwenTokenizer

DEFAULT_MODEL = "Qwen/Qwen2.5-7B-Instruct-Turbo"
APPROX_LABEL = "APPROXIMATE (Qwen BPE ranks not found: install dpo-tui[qwen] or set qwen_ranks_path)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list models: availability, how they are served, prices")
    _common(p)
    p.add_argument("models", nargs="*", metavar="MODEL", help="models to check (default: every priced model)")
    p.add_argument("--need", action="append", default=[], choices=NEEDS,
                   help="how the models must be served (repeatable); a model that is not is a problem (exit 1)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("tokens", help="count the tokens of a text file or a JSON chat for a model")
    _common(p, network=False)
    p.add_argument("--model", required=True, help="model whose tokenizer to use (Qwen2.5 family)")
    p.add_argument("file", metavar="FILE", help="text file, or JSON: a list of messages or {\"messages\": [...]}; - for stdin")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_tokens)

    p = sub.add_parser("doctor", help="check the key, base URL, prices, tokenizer and sandbox")
    _common(p)
    p.add_argument("--live", action="store_true", help="show the cost of one tiny call, then make it")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model for --live (default {DEFAULT_MODEL})")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_doctor)


def _common(p: argparse.ArgumentParser, *, network: bool = True) -> None:
    p.add_argument("--config", metavar="PATH", help="config file (default $XDG_CONFIG_HOME/dpo-tui/config.toml)")
    if network:
        p.add_argument("--base-url", metavar="URL", help="API base URL without /v1, e.g. a running simulator's")
        p.add_argument("--sim", action="store_true", help="start the loopback simulator for this command and use it")


@contextlib.contextmanager
def settings_from(args: argparse.Namespace) -> Iterator[tuple[Settings, bool]]:
    """Settings for a command; with --sim an in-process simulator runs for its duration."""
    from pydantic import SecretStr

    from dpo_tui.config import SIM_DUMMY_KEY, load_settings

    if getattr(args, "sim", False):
        from dpo_tui.sim.server import SimServer

        with SimServer(seed=0) as sim:
            yield load_settings(args.config, base_url=sim.base_url, api_key=SIM_DUMMY_KEY,
                                api_key_source="simulator dummy key"), True
        return
    settings = load_settings(args.config, base_url=getattr(args, "base_url", None))
    if settings.api_key is None and settings.is_loopback:
        settings = settings.model_copy(update={"api_key": SecretStr(SIM_DUMMY_KEY), "api_key_source": "loopback dummy key"})
        sys.stderr.write(f"dpo-tui: note: no API key set; using a dummy key for the loopback server {settings.base_url}\n")
    yield settings, False


def _redacted_error(settings: Settings, exc: BaseException) -> str:
    from dpo_tui.provider.secrets import Redactor

    key = settings.api_key.get_secret_value() if settings.api_key else None
    return Redactor([key]).redact(f"{type(exc).__name__}: {exc}")[:300]


def _load_catalogue(settings: Settings) -> tuple[list[Any] | None, str | None]:
    import together
    
    from dpo_tui.provider.catalog import fetch_catalogue
    from dpo_tui.provider.client import sync_client

    try:
        return fetch_catalogue(sync_client(settings)), None
    except (together.APIError, OSError) as exc:
        return None, _redacted_error(settings, exc)


# -- models ---------------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from dpo_tui.provider.catalog import availability, check_needs, price_book_for

    needs = check_needs(args.need)
    with settings_from(args) as (settings, simulated):
        settings.key_value()
        catalogue, error = _load_catalogue(settings)
    book = price_book_for(settings, catalogue)
    names = args.models or sorted(set(book.prices) | {m.name for m in catalogue or []})
    rows = [availability(n, catalogue, book, needs) if catalogue is not None else None for n in names]
    if args.json:
        out = {"base_url": settings.base_url, "simulated": simulated, "catalogue_error": error,
               "prices": {"source": book.source, "date": book.date},
               "models": [r.to_json() if r else {"model": n, "exists": None, "price": _price_json(book, n)}
                          for n, r in zip(names, rows)]}
        print(json.dumps(out, indent=2))
    else:
        _print_models(names, rows, book, error, simulated)
    if error is not None:
        sys.stderr.write(f"dpo-tui: error: model catalogue unreachable at {settings.base_url}: {error}\n")
        return 1
    return 0 if all(r is not None and r.ok for r in rows) or not (args.models or needs) else 1


def _price_json(book: PriceBook, model: str) -> dict[str, Any] | None:
    p = book.prices.get(model)
    return p.model_dump() if p else None


def _print_models(names: list[str], rows: list[Availability | None], book: PriceBook, error: str | None,
                  simulated: bool) -> None:
    from dpo_tui.provider.catalog import dedicated_note

    if simulated:
        print("(simulated: the loopback simulator's catalogue, not Together's)")
    print(f"{'MODEL':<40} {'SERVED AS':<32} {'$IN/1M':>7} {'$OUT/1M':>8}  PRICE SOURCE")
    for name, row in zip(names, rows):
        price = book.prices.get(name)
        served = ("unknown (catalogue unreachable)" if row is None else
                  ", ".join(row.served_as) or "-" if row.exists else "NOT IN CATALOGUE")
        pin = f"{price.input_usd_per_mtok:.2f}" if price else "-"
        pout = f"{price.output_usd_per_mtok:.2f}" if price else "-"
        print(f"{name:<40} {served:<32} {pin:>7} {pout:>8}  {price.source if price else 'no price'}")
        for problem in (row.problems if row else []):
            print(f"    ! {problem}")
        if row is not None and row.dedicated and not row.serverless:
            note = dedicated_note(name)
            print(f"    a LoRA on {name} needs a dedicated endpoint" + (f" ({note})" if note else ""))


# -- tokens ---------------------------------------------------------------------------------


def _read_input(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read as UTF-8 text: {exc}") from None


def _as_messages(text: str) -> list[dict[str, Any]] | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("messages"), list):
        obj = obj["messages"]
    if isinstance(obj, list) and obj and all(isinstance(m, dict) and "role" in m for m in obj):
        return obj
    return None


def cmd_tokens(args: argparse.Namespace) -> int:
    from dpo_tui.config import load_settings

    settings = load_settings(args.config)
    if "qwen" not in args.model.lower():
        raise InputError(f"no tokenizer known for model {args.model!r} (only the Qwen2.5 family)")
    tok = _tokenizer(settings)
    text = _read_input(args.file)
    messages = _as_messages(text)
    count = tok.count_chat(messages) if messages is not None else tok.count_text(text)
    kind = "chat (ChatML template incl. per-message overhead)" if messages is not None else "text"
    label = f"exact (Qwen BPE ranks {tok.ranks_path})" if count.exact else APPROX_LABEL
    if args.json:
        print(json.dumps({"model": args.model, "tokens": count.n, "exact": count.exact, "kind": kind.split()[0],
                          "ranks_path": str(tok.ranks_path) if tok.ranks_path else None,
                          "approximate": not count.exact}))
    else:
        print(f"{'' if count.exact else '~'}{count.n} tokens, {kind}, {label}")
    return 0


def _tokenizer(settings: Settings) -> QwenTokenizer:
    from dpo_tui.provider.tokenizer import get_tokenizer

    try:
        return get_tokenizer(str(settings.qwen_ranks_path) if settings.qwen_ranks_path else None)
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None


# -- doctor ---------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    with settings_from(args) as (settings, simulated):
        if simulated and not args.json:
            print("(simulated: checks ran against the loopback simulator, not Together)", flush=True)
        checks = _doctor_checks(settings)
        if args.live and all(c["ok"] for c in checks if c["name"] in ("api key", "base url", "prices")):
            checks.append(_live_call(settings, args.model, args.json))
        elif args.live:
            checks.append({"name": "live call", "ok": False, "detail": "skipped: fix the checks above first"})
    if args.json:
        print(json.dumps({"simulated": simulated, "ok": all(c["ok"] for c in checks), "checks": checks}, indent=2))
    else:
        for c in checks:
            print(f"{'ok  ' if c['ok'] else 'FAIL'}  {c['name']}: {c['detail']}")
    return 0 if all(c["ok"] for c in checks) else 1


def _doctor_checks(settings: Settings) -> list[dict[str, Any]]:
    from dpo_tui.provider.catalog import price_book_for

    checks = []
    has_key = settings.api_key is not None and bool(settings.api_key.get_secret_value())
    checks.append({"name": "api key", "ok": has_key,
                   "detail": f"set ({settings.api_key_source}; value not shown)" if has_key else
                   "missing: set TOGETHER_API_KEY or api_key in the config file (never in a plan file)"})
    catalogue, error = _load_catalogue(settings) if has_key else (None, "no key")
    checks.append({"name": "base url", "ok": catalogue is not None,
                   "detail": f"{settings.base_url}: " + (f"catalogue reachable, {len(catalogue)} models"
                                                         if catalogue is not None else f"unreachable ({error})")})
    if has_key and catalogue is not None:
        checks.append(_whoami(settings))
    try:
        book = price_book_for(settings, catalogue)
        checks.append({"name": "prices", "ok": bool(book.prices),
                       "detail": f"{len(book.prices)} chat prices from {book.source}"
                                 + (f", dated {book.date}" if book.date else "")})
    except InputError as exc:
        checks.append({"name": "prices", "ok": False, "detail": exc.message})
    if has_key and catalogue is not None:
        checks.append(_prices_vs_table(settings))
    try:
        tok = _tokenizer(settings)
        checks.append({"name": "tokenizer", "ok": True, "detail": f"exact Qwen BPE ranks at {tok.ranks_path}"
                       if tok.exact else APPROX_LABEL})
    except InputError as exc:
        checks.append({"name": "tokenizer", "ok": False, "detail": exc.message})
    bwrap = shutil.which("bwrap")
    checks.append({"name": "sandbox", "ok": bwrap is not None,
                   "detail": f"bubblewrap at {bwrap}" if bwrap else "bwrap not found: install bubblewrap"})
    return checks


def _prices_vs_table(settings: Settings) -> dict[str, Any]:
    """Where the live catalogue and hardware list disagree with the shipped table (the live
    prices are what estimates and runs use; the table is the fallback)."""
    import together

    from dpo_tui.provider.offers import live_offers, price_disagreements
    from dpo_tui.provider.prices import load_prices

    table = load_prices(settings.prices_path)
    try:
        diffs = price_disagreements(live_offers(settings), table)
    except (together.APIError, OSError) as exc:
        return {"name": "prices vs table", "ok": False, "detail": f"hardware list unreadable: "
                                                                 f"{_redacted_error(settings, exc)}"}
    if not diffs:
        return {"name": "prices vs table", "ok": True,
                "detail": f"the live catalogue and hardware list agree with the shipped table of {table.date}"}
    return {"name": "prices vs table", "ok": True, "disagreements": diffs,
            "detail": f"{len(diffs)} disagreement(s) with the shipped table of {table.date} (estimates use the live "
                      f"prices): " + "; ".join(diffs)}


def _whoami(settings: Settings) -> dict[str, Any]:
    """Does the server accept the key? (GET /v3/whoami; costs nothing)"""
    import together
    
    from dpo_tui.provider.client import sync_client

    try:
        who = sync_client(settings).whoami()
    except together.AuthenticationError:
        return {"name": "key accepted", "ok": False, "detail": f"{settings.base_url} rejected the key (401): "
                "check TOGETHER_API_KEY or the config file"}
    except (together.APIError, OSError) as exc:
        return {"name": "key accepted", "ok": False, "detail": _redacted_error(settings, exc)}
    project = getattr(who, "project", None)
    name = getattr(project, "name", None) or getattr(project, "id", None) or "unknown project"
    return {"name": "key accepted", "ok": True, "detail": f"by {settings.base_url} (project: {name})"}


def _live_call(settings: Settings, model: str, json_out: bool) -> dict[str, Any]:
    from dpo_tui.events.campaign import Campaign
    from dpo_tui.provider.catalog import price_book_for
    from dpo_tui.provider.provider import CallGaveUp, CallKey, Provider

    messages = [{"role": "user", "content": "Reply with the single word: ok"}]
    with tempfile.TemporaryDirectory(prefix="dpo-tui-doctor-") as tmp:
        campaign = Campaign.create(Path(tmp) / "doctor.db", name="doctor", actor="system")
        try:
            provider = Provider(settings, campaign, price_book_for(settings, _load_catalogue(settings)[0]),
                                _tokenizer(settings))
            price = provider.prices.price(model)
            est = provider.tokenizer.count_chat(messages)
            worst = provider._reservation(est, 4, price)
            print(f"live call: {model}, {est.n} prompt tokens + at most 4 completion tokens "
                  f"costs at most ${worst:.8f} ({price.source}); making it now", flush=True,
                  file=sys.stderr if json_out else sys.stdout)
            import asyncio

            async def call() -> Any:
                try:
                    return await provider.chat(CallKey("doctor"), stage="doctor", model=model, messages=messages,
                                               temperature=0.0, seed=0, max_tokens=4)
                finally:
                    await provider.aclose()

            result = asyncio.run(call())
        except (CallGaveUp, InputError) as exc:
            return {"name": "live call", "ok": False, "detail": _redacted_error(settings, exc)}
        finally:
            campaign.close()
    return {"name": "live call", "ok": True,
            "detail": f"{model} answered {result.text!r}: {result.usage.prompt_tokens}+{result.usage.completion_tokens}"
                      f" tokens, ${result.cost_usd:.8f}, {result.attempts} attempt(s), {result.latency_s:.2f}s"}
