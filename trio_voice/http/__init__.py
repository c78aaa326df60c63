"""The HTTP listener: health, readiness, metrics, stats, streaming chat fallbacks, speech endpoints, demo page.

- ``app``: the small ASGI core (requests, responses, routes, auth, error answers).
- ``status``: ``/healthz``, ``/readyz``, ``/metrics``, ``/v1/sessions``, ``/v1/stats``.
- ``streaming``: ``/v1/chat/stream`` (SSE) and ``/v1/chat/ndjson``.
- ``speech``: OpenAI-compatible ``/v1/audio/speech`` and ``/v1/audio/transcriptions``.
- ``users``: presence and offline messages of a user (``/v1/users/{id}/…``).
- ``replies``: pause, resume and cancel a running reply (``/v1/responses/{id}/…``).
- ``recordings``: a session's recording (``/v1/sessions/{id}/recording``).
- ``static``: the demo page from ``trio_voice/static/``.
- ``serve``: :func:`serve_http`, hypercorn's trio worker running the app.

The spec for client authors is ``protocol/http.md``.
"""

from .serve import build_app as build_app
from .serve import serve_http as serve_http
