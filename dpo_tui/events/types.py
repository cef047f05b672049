"""Typed event payloads: a registry by stable type name, with schema versions and upcasters.

A payload class is a pydantic model registered under a type name and a version:

    @event_type("note.added", version=1)
    class NoteAdded(Payload):
        text: str

Rows are never rewritten. An older stored version is upcast on read by the chain of
functions registered with `@upcaster(type, from_version)`; a stored version newer than
the code knows is an error (the log was written by a newer dpo-tui); an unknown type is
kept as it is and reported, so replay can go on and audit can say so.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from dpo_tui.errors import InputError

# Modules that register event types, fold handlers and audit invariants. Later stages add
# their module here; the store and the core fold stay untouched.
PLUGIN_MODULES: tuple[str, ...] = (
    "dpo_tui.events.core",
    "dpo_tui.events.checkpoint",
    "dpo_tui.provider.events",
    "dpo_tui.campaign.state.plan",
    "dpo_tui.campaign.state.budget",
    "dpo_tui.campaign.state.split",
    "dpo_tui.campaign.state.tasks",
    "dpo_tui.campaign.state.rollouts",
    "dpo_tui.campaign.state.allocation",
    "dpo_tui.campaign.state.pairs",
    "dpo_tui.campaign.state.train",
    "dpo_tui.campaign.state.metrics",
    "dpo_tui.campaign.state.eval",
    "dpo_tui.campaign.state.concurrency",
    "dpo_tui.campaign.state.api",
    "dpo_tui.campaign.rederive",
    "dpo_tui.campaign.rederive_spend",
    "dpo_tui.campaign.rederive_alloc",
    "dpo_tui.campaign.rederive_looks",
)


class Payload(BaseModel):
    """Base of every event payload: strict about unknown fields, immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type_name: ClassVar[str] = ""
    version: ClassVar[int] = 1


@dataclass(frozen=True)
class EventTypeSpec:
    name: str
    version: int
    model: type[Payload]


_TYPES: dict[str, EventTypeSpec] = {}
_UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}
_loaded = False


def event_type(name: str, *, version: int = 1) -> Callable[[type[Payload]], type[Payload]]:
    def register(model: type[Payload]) -> type[Payload]:
        if name in _TYPES and _TYPES[name].model is not model:
            raise RuntimeError(f"event type {name!r} registered twice")
        model.type_name = name
        model.version = version
        _TYPES[name] = EventTypeSpec(name, version, model)
        return model

    return register


def upcaster(name: str, from_version: int) -> Callable[[Callable[[dict], dict]], Callable[[dict], dict]]:
    """Register fn(payload at from_version) -> payload at from_version + 1."""

    def register(fn: Callable[[dict], dict]) -> Callable[[dict], dict]:
        _UPCASTERS[(name, from_version)] = fn
        return fn

    return register


def load_plugins() -> None:
    global _loaded
    if not _loaded:
        for module in PLUGIN_MODULES:
            importlib.import_module(module)
        _loaded = True


def spec_for(name: str) -> EventTypeSpec | None:
    load_plugins()
    return _TYPES.get(name)


def known_types() -> dict[str, EventTypeSpec]:
    load_plugins()
    return dict(_TYPES)


class NewerSchemaError(Exception):
    """A stored payload version that this code cannot read."""


class UpcastError(NewerSchemaError):
    """An upcaster failed on a stored payload (reported at its seq like a schema problem)."""


_CURRENT: set[tuple[str, int]] = set()  # (type, version) pairs that need no upcasting


def upcast(name: str, version: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Bring a stored payload up to the current version of its type (unknown types pass through)."""
    if (name, version) in _CURRENT:
        return version, payload
    spec = spec_for(name)
    if spec is not None and version == spec.version:
        _CURRENT.add((name, version))
    if spec is None:
        return version, payload
    if version > spec.version:
        raise NewerSchemaError(
            f"{name} schema version {version} is newer than this dpo-tui knows ({spec.version}); upgrade dpo-tui"
        )
    while version < spec.version:
        fn = _UPCASTERS.get((name, version))
        if fn is None:
            raise NewerSchemaError(f"no upcaster for {name} from schema version {version}")
        try:
            payload = fn(payload)
        except Exception as exc:  # an old row of a shape its upcaster did not expect: report it, never crash
            raise UpcastError(f"{name} schema version {version} cannot be upcast: "
                              f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
        if not isinstance(payload, dict):
            raise UpcastError(f"{name} schema version {version}: its upcaster did not return an object")
        version += 1
    return version, payload


def validate_new(name: str, payload: Payload | dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Check a payload about to be appended; return (version, plain JSON-able dict)."""
    spec = spec_for(name)
    if spec is None:
        raise InputError(f"unknown event type {name!r}: register it in a PLUGIN_MODULES module")
    if isinstance(payload, Payload):
        if type(payload) is not spec.model:
            raise InputError(f"payload {type(payload).__name__} is not the payload of {name}")
        model = payload
    else:
        try:
            model = spec.model.model_validate(payload)
        except ValidationError as exc:
            raise InputError(f"{name} payload invalid: {_first_error(exc)}") from None
    return spec.version, model.model_dump(mode="json")


def validate_stored(name: str, payload: dict[str, Any]) -> str | None:
    """Audit's check of an upcast stored payload; None when it fits its model."""
    spec = spec_for(name)
    if spec is None:
        return None
    try:
        spec.model.model_validate(payload)
    except ValidationError as exc:
        return _first_error(exc)
    return None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "payload"
    return f"{where}: {err.get('msg', 'invalid')}"
