"""Files: the 3-step upload (metadata -> 302, PUT bytes, preprocess), list, retrieve, content, delete."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets

from aiohttp import web

from dpo_tui.sim.dpo_format import validate_dpo
from dpo_tui.sim.server import STATE, ApiError, ClientGone, json_body, read_body

routes = web.RouteTableDef()
PURPOSES = ("fine-tune", "calibration", "eval", "batch-api")
FILE_TYPES = ("jsonl", "csv", "parquet")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def file_view(rec: dict) -> dict:
    out = {"id": rec["id"], "object": "file", "bytes": int(rec.get("bytes", 0)), "created_at": int(rec["created_at"]),
           "filename": rec["filename"], "FileType": rec["file_type"], "purpose": rec["purpose"],
           "processing_status": rec.get("processing_status")}
    if rec.get("validation_report") is not None:
        out["validation_report"] = rec["validation_report"]
    return out


def get_file(request: web.Request, file_id: str) -> dict:
    rec = request.app[STATE].store["files"].get(file_id)
    if rec is None or rec.get("deleted"):
        raise ApiError(404, f"File {file_id} not found", code="file_not_found")
    return rec


@routes.post("/v1/files")
async def create_upload(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        form = await request.post()
    except ConnectionError as exc:
        raise ClientGone() from exc
    purpose = str(form.get("purpose", "fine-tune"))
    name = str(form.get("file_name", "") or "upload.jsonl")
    ftype = str(form.get("file_type", "jsonl"))
    checksum = str(form.get("checksum", ""))
    if purpose not in PURPOSES:
        raise ApiError(400, f"Invalid purpose {purpose!r}", param="purpose")
    if ftype not in FILE_TYPES:
        raise ApiError(400, f"Invalid file_type {ftype!r}", param="file_type")
    with state.lock:
        for rec in state.store["files"].values():
            if checksum and rec.get("checksum") == checksum and rec.get("uploaded") and not rec.get("deleted"):
                body = {"error": {"message": f"File already exists: {rec['id']}", "type": "invalid_request_error",
                                  "param": None, "code": "file_exists"}, "file_id": rec["id"]}
                return json_body(body, status=409, headers={"x-should-retry": "false"})
        file_id = state.new_id("file-")
        token = secrets.token_urlsafe(18)  # the signed URL's signature: the PUT carries no Authorization
        state.store.put("files", file_id, {
            "id": file_id, "filename": name, "file_type": ftype, "purpose": purpose, "checksum": checksum,
            "created_at": int(state.now()), "bytes": 0, "uploaded": False, "processing_status": "PENDING",
            "upload_token": token})
    location = f"{request.scheme}://{request.host}/_storage/{file_id}?token={token}"
    return web.Response(status=302, headers={"Location": location, "X-Together-File-Id": file_id})


@routes.put("/_storage/{file_id}")
async def put_content(request: web.Request) -> web.Response:
    state = request.app[STATE]
    file_id = request.match_info["file_id"]
    if not _ID_RE.match(file_id):
        raise ApiError(400, "bad file id")
    rec = get_file(request, file_id)
    token = request.query.get("token", "")
    if not rec.get("upload_token") or not hmac.compare_digest(token.encode(), str(rec["upload_token"]).encode()):
        raise ApiError(403, "The upload URL's signature does not match", type_="forbidden", code="bad_signature")
    content = await read_body(request)
    state.store.put_blob(file_id, content)
    with state.lock:
        rec.update(bytes=len(content), uploaded=True, sha256=hashlib.sha256(content).hexdigest())
        state.store.save("files")
    return web.Response(status=200, text="")


def _report(file_id: str, content: bytes) -> tuple[str, dict]:
    first = next((ln for ln in content.decode("utf-8", "replace").splitlines() if ln.strip()), "")
    try:
        head = json.loads(first) if first else None
    except ValueError:
        head = None
    keys = set(head) if isinstance(head, dict) else set()
    if keys & {"input", "preferred_output", "non_preferred_output"}:
        v = validate_dpo(content)
        if v.valid:
            return "COMPLETED", {"valid": True, "dataset_format": "PREFERENCE_OPENAI", "nlines": v.nlines,
                                 "file_id": file_id}
        return "INVALID_FORMAT", {"valid": False, "error_type": "INVALID_FORMAT", "error": v.error,
                                  "nlines": v.nlines, "file_id": file_id, "line": v.line, "rule": v.rule}
    for fmt, need in (("CONVERSATION", {"messages"}), ("INSTRUCTION", {"prompt", "completion"}),
                      ("GENERAL", {"text"})):
        if need <= keys:
            n = sum(1 for ln in content.splitlines() if ln.strip())
            return "COMPLETED", {"valid": True, "dataset_format": fmt, "nlines": n, "file_id": file_id}
    return "INVALID_FORMAT", {"valid": False, "error_type": "INVALID_FORMAT", "file_id": file_id, "line": 1,
                              "rule": "unknown_format", "error": "Line 1: unknown dataset format; expected "
                              "input/preferred_output/non_preferred_output, messages, prompt/completion or text "
                              "(rule: unknown_format)"}


@routes.post("/v1/files/{file_id}/preprocess")
async def preprocess(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rec = get_file(request, request.match_info["file_id"])
    if not rec.get("uploaded"):
        raise ApiError(400, f"File {rec['id']} has no content yet (PUT it first)")
    content = state.store.get_blob(rec["id"]) or b""
    if rec["purpose"] == "fine-tune" and rec["file_type"] == "jsonl":
        status, report = _report(rec["id"], content)
    else:
        status, report = "COMPLETED", {"valid": True, "file_id": rec["id"]}
    with state.lock:
        rec.update(processing_status=status, validation_report=report)
        state.store.save("files")
    return json_body(file_view(rec))


@routes.get("/v1/files")
async def list_files(request: web.Request) -> web.Response:
    files = [file_view(r) for r in request.app[STATE].store["files"].values()
             if r.get("uploaded") and not r.get("deleted")]
    return json_body({"data": files})


@routes.get("/v1/files/{file_id}")
async def retrieve(request: web.Request) -> web.Response:
    return json_body(file_view(get_file(request, request.match_info["file_id"])))


@routes.get("/v1/files/{file_id}/content")
async def content(request: web.Request) -> web.Response:
    rec = get_file(request, request.match_info["file_id"])
    data = request.app[STATE].store.get_blob(rec["id"]) or b""
    return web.Response(body=data, content_type="application/octet-stream")


@routes.delete("/v1/files/{file_id}")
async def delete(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rec = get_file(request, request.match_info["file_id"])
    with state.lock:
        rec["deleted"] = True
        state.store.save("files")
    state.store.delete_blob(rec["id"])
    return json_body({"id": rec["id"], "deleted": True})
