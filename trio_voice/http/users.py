"""User endpoints: ``GET /v1/users/{id}/presence``, and the offline messages of ``/v1/users/{id}/messages``.

A user token may read only its own user; ``POST …/messages`` (a ``system`` message for the user's next
connection) is for operators (a plain ``--token``, or anyone on a server without tokens). Everything
goes through the server's shared state (``trio_voice.shared``), as the sessions do.
"""

from __future__ import annotations

from typing import Any

from trio_voice.codec.fields import FieldReader
from trio_voice.errors import RemoteProtocolError
from trio_voice.offline import new_message
from trio_voice.shared import QueueFull, SharedState
from trio_voice.storage import OfflineMessage

from .app import AppContext, Request, Route

# Most messages GET …/messages lists (newest first).
MAX_LISTED = 100
# The longest TTL a message may ask for: thirty days.
MAX_TTL_S = 30 * 86400.0


def shared_state(ctx: AppContext) -> SharedState:
    if ctx.host is None:
        raise RemoteProtocolError("this server runs without shared state", code="unsupported")
    shared: SharedState = ctx.host.services.shared
    return shared


def check_user(request: Request, user_id: str) -> None:
    """Refuse (403 ``forbidden``) a user token that names another user."""
    if not request.identity.may_act_as(user_id):
        raise RemoteProtocolError(f"this token may not act for user {user_id!r}", code="forbidden")


def message_json(message: OfflineMessage) -> dict[str, Any]:
    out = {
        "message_id": message.message_id,
        "kind": message.kind,
        "text": message.text,
        "status": message.status,
        "created_at": message.created_at,
        "expires_at": message.expires_at,
        "delivered_at": message.delivered_at,
    }
    if message.conversation_id is not None:
        out["conversation_id"] = message.conversation_id
    return out


async def presence(request: Request, ctx: AppContext) -> None:
    user_id = request.params["user_id"]
    check_user(request, user_id)
    found = await shared_state(ctx).presence(user_id)
    await request.respond_json(
        200,
        {
            "user_id": found.user_id,
            "status": found.status,
            "last_seen": found.last_seen,
            "typing": found.typing,
            "sessions": [
                {"session_id": s.session_id, "status": s.status, "last_seen": s.last_seen, "typing": s.typing}
                for s in found.sessions
            ],
        },
    )


async def post_message(request: Request, ctx: AppContext) -> None:
    """Queue a ``system`` message for the user (delivered at once to its live sessions, if any)."""
    user_id = request.params["user_id"]
    if not request.identity.operator:
        raise RemoteProtocolError("only an operator token may send messages to users", code="forbidden")
    config = ctx.config
    body = await request.json_object(limit=config.max_frame_bytes)
    r = FieldReader(body, where="message", request_id=None)
    r.reject_unknown(("text", "ttl_s"))
    text = r.read_str("text", required=True, non_blank=True, max_chars=config.max_text_chars)
    ttl = r.read_number("ttl_s", minimum=0.001, maximum=MAX_TTL_S)
    assert text is not None
    shared = shared_state(ctx)
    message = new_message(shared, user_id, text, ttl=ttl if ttl is not None else config.offline_ttl)
    try:
        await shared.queue_message(message)
    except QueueFull as exc:
        raise RemoteProtocolError(str(exc), code="queue_full") from None
    ctx.telemetry.offline_message("queued")
    await request.respond_json(202, message_json(message))


async def list_messages(request: Request, ctx: AppContext) -> None:
    user_id = request.params["user_id"]
    check_user(request, user_id)
    messages = await shared_state(ctx).messages(user_id, limit=MAX_LISTED)
    await request.respond_json(200, {"user_id": user_id, "messages": [message_json(m) for m in messages]})


ROUTES = (
    Route("GET", "/v1/users/{user_id}/presence", presence),
    Route("POST", "/v1/users/{user_id}/messages", post_message),
    Route("GET", "/v1/users/{user_id}/messages", list_messages),
)
