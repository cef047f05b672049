"""POST /v1/chat/completions (non-streaming and SSE streaming), with Qwen token usage."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from dpo_tui.sim.respond import respond
from dpo_tui.sim.server import STATE, ApiError, json_body, read_json
from dpo_tui.sim.serving import resolve

routes = web.RouteTableDef()


def _check(body: dict[str, Any]) -> tuple[str, list[dict], int | None, float | None, int, int | None]:
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required", param="model")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "messages must be a non-empty list of message objects", param="messages")
    seed, temp, n, max_tokens = body.get("seed"), body.get("temperature"), body.get("n", 1), body.get("max_tokens")
    if seed is not None and not isinstance(seed, int):
        raise ApiError(400, "seed must be an integer", param="seed")
    if temp is not None and (not isinstance(temp, (int, float)) or not 0 <= temp <= 2):
        raise ApiError(400, "temperature must be a number between 0 and 2", param="temperature")
    if not isinstance(n, int) or not 1 <= n <= 16:
        raise ApiError(400, "n must be an integer between 1 and 16", param="n")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ApiError(400, "max_tokens must be a positive integer", param="max_tokens")
    return model, messages, seed, None if temp is None else float(temp), n, max_tokens


def _truncate(state: Any, text: str, max_tokens: int | None) -> tuple[str, int, str]:
    used = state.tokenizer.count_completion(text).n
    if max_tokens is None or used <= max_tokens:
        return text, used, "stop"
    keep = max(1, int(len(text) * max_tokens / used))
    while keep > 1 and state.tokenizer.count_text(text[:keep]).n > max_tokens:
        keep = int(keep * 0.9)
    return text[:keep], max_tokens, "length"


@routes.post("/v1/chat/completions")
async def chat(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await read_json(request)
    model, messages, seed, temp, n, max_tokens = _check(body)
    served = resolve(state, model)
    choices, completion = [], 0
    for i in range(n):
        text = respond(served.params, model, messages, seed=seed, temperature=temp, index=i, refs=state.references)
        text, used, finish = _truncate(state, text, max_tokens)
        completion += used
        choices.append({"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                        "logprobs": None})
    if served.deployment is not None:  # a dedicated deployment serves so much at once
        refused = await state.capacity.serve(served.deployment["id"], served.deployment.get("ready", 1), completion)
        if refused:
            raise ApiError(503, f"The endpoint {model} is overloaded ({refused}); retry later",
                           type_="service_unavailable", code="overloaded")
    prompt = state.tokenizer.count_chat(messages).n
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    out = {"id": state.new_id("chatcmpl-sim-", 16), "object": "chat.completion", "created": int(time.time()),
           "model": model, "prompt": [], "choices": choices, "usage": usage}
    if body.get("stream"):
        return await _stream(request, out)
    return json_body(out)


async def _stream(request: web.Request, out: dict[str, Any]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    base = {"id": out["id"], "object": "chat.completion.chunk", "created": out["created"], "model": out["model"]}
    for c in out["choices"]:
        text = c["message"]["content"]
        pieces = [text[i:i + 64] for i in range(0, len(text), 64)] or [""]
        for j, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece}
            chunk = {**base, "choices": [{"index": c["index"], "delta": delta, "finish_reason": None}], "usage": None}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        last = {**base, "choices": [{"index": c["index"], "delta": {"role": "assistant", "content": ""},
                                 "finish_reason": c["finish_reason"]}],
                "usage": out["usage"]}
        await resp.write(f"data: {json.dumps(last)}\n\n".encode())
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp
