"""Typed reading of one JSON object's fields, with errors that name the message and the field.

The codec reads every wire message through a ``FieldReader``: it checks JSON types strictly (``true`` is
not an integer, ``1.0`` is not an integer, ``"1"`` is not a number), rejects fields the message does not
define, and raises ``RemoteProtocolError`` carrying the stable error code and the message's
``request_id``. It knows nothing about which messages exist.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

from trio_voice.errors import RemoteProtocolError

from . import codes

MAX_REQUEST_ID_CHARS = 256  # a request_id is echoed on every event it causes: keep it small
MAX_ID_CHARS = 128  # a conversation, session, user or message id is a storage key, not a document


def read_request_id(obj: Mapping[str, Any]) -> str | None:
    """Return the message's ``request_id``, or ``None`` if it has none.

    Raises:
        RemoteProtocolError: ``invalid_field`` if ``request_id`` is not a string of at most
            ``MAX_REQUEST_ID_CHARS`` characters (the error then carries no request_id).
    """
    value = obj.get("request_id")
    if value is None:
        return None
    if not isinstance(value, str):
        raise RemoteProtocolError("field 'request_id' must be a string", code=codes.INVALID_FIELD)
    if len(value) > MAX_REQUEST_ID_CHARS:
        raise RemoteProtocolError(
            f"field 'request_id' must be at most {MAX_REQUEST_ID_CHARS} characters", code=codes.INVALID_FIELD
        )
    return value


def dump_message(type_: str, request_id: str | None, **fields: Any) -> dict[str, Any]:
    """A client message's JSON object: ``type``, ``request_id`` when set, and the fields that are not None."""
    obj: dict[str, Any] = {"type": type_}
    if request_id is not None:
        obj["request_id"] = request_id
    obj.update((name, value) for name, value in fields.items() if value is not None)
    return obj


def message_reader(where: str, obj: Mapping[str, Any], known: tuple[str, ...]) -> FieldReader:
    """A reader of message ``where``'s fields that has already refused fields other than ``known``."""
    reader = FieldReader(obj, where=where, request_id=read_request_id(obj))
    reader.reject_unknown(known)
    return reader


def is_integer(value: object) -> bool:
    """Whether a decoded JSON value is an integer, as JSON Schema counts them: ``3`` and ``3.0`` are,
    ``true`` is not."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def is_number(value: object) -> bool:
    """Whether a decoded JSON value is a finite number (``bool`` is not).

    Every integer is finite, however large: JSON allows 400-digit literals, and asking ``math.isfinite``
    about one raises ``OverflowError`` (it converts to float first).
    """
    if isinstance(value, float):
        return math.isfinite(value)
    return is_integer(value)


def holds_lone_surrogate(value: object) -> bool:
    """Whether a decoded JSON value has a string (or key) with a lone UTF-16 surrogate in it.

    JSON's grammar lets ``"\\ud800"`` through (RFC 8259 §8.2 calls what it means unpredictable; I-JSON,
    RFC 7493 §2.1, forbids it) and Python decodes it to a ``str`` that cannot be encoded as UTF-8. The
    server echoes client strings (``request_id`` on every event a message causes, field names in error
    messages), and a WebSocket text frame must be UTF-8, so such a string would fail when it is sent back.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class FieldReader:
    """Reads the fields of one JSON object ``obj``, the body of the message ``where``.

    Every ``read_*`` method returns ``None`` for an absent (or ``null``) optional field and raises
    ``RemoteProtocolError`` (code ``invalid_field`` unless stated) for anything else that is wrong.
    """

    def __init__(self, obj: Mapping[str, Any], *, where: str, request_id: str | None) -> None:
        self.obj = obj
        self.where = where
        self.request_id = request_id

    def fail(self, name: str, problem: str, *, code: str = codes.INVALID_FIELD) -> RemoteProtocolError:
        """Build (not raise) the error for field ``name``."""
        return RemoteProtocolError(
            f"{self.where}: field '{name}' {problem}", code=code, request_id=self.request_id
        )

    def reject_unknown(self, known: Collection[str]) -> None:
        """Refuse fields other than ``known`` (``type`` and ``request_id`` are always allowed)."""
        for name in self.obj:
            if name not in known and name not in ("type", "request_id"):
                raise self.fail(name, "is not defined for this message")

    def _get(self, name: str, required: bool) -> Any:
        value = self.obj.get(name)
        if value is None and required:
            raise self.fail(name, "is required")
        return value

    def read_str(
        self,
        name: str,
        *,
        required: bool = False,
        non_blank: bool = False,
        max_chars: int | None = None,
        choices: Collection[str] | None = None,
    ) -> str | None:
        """A string; ``max_chars`` overruns raise ``text_too_long``."""
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(name, "must be a string")
        if non_blank and not value.strip():
            raise self.fail(name, "must not be empty")
        if max_chars is not None and len(value) > max_chars:
            raise self.fail(name, f"is longer than {max_chars} characters", code=codes.TEXT_TOO_LONG)
        if choices is not None and value not in choices:
            raise self.fail(name, f"must be one of {', '.join(sorted(choices))}")
        return value

    def read_int(
        self, name: str, *, required: bool = False, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        """An integer within ``[minimum, maximum]``."""
        value = self._get(name, required)
        if value is None:
            return None
        if not is_integer(value):
            raise self.fail(name, "must be an integer")
        if minimum is not None and value < minimum:
            raise self.fail(name, f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise self.fail(name, f"must be at most {maximum}")
        return int(value)

    def read_number(
        self, name: str, *, minimum: float, maximum: float, required: bool = False
    ) -> float | None:
        """A finite number within ``[minimum, maximum]``, returned as ``float``."""
        value = self._get(name, required)
        if value is None:
            return None
        if not is_number(value):
            raise self.fail(name, "must be a number")
        if not minimum <= value <= maximum:
            raise self.fail(name, f"must be between {minimum} and {maximum}")
        return float(value)

    def read_bool(self, name: str, *, required: bool = False) -> bool | None:
        """``true`` or ``false``."""
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.fail(name, "must be true or false")
        return value

    def read_id(self, name: str, *, required: bool = False) -> str | None:
        """A non-blank id of at most ``MAX_ID_CHARS`` characters."""
        value = self.read_str(name, required=required, non_blank=True)
        if value is not None and len(value) > MAX_ID_CHARS:
            raise self.fail(name, f"must be at most {MAX_ID_CHARS} characters")
        return value

    def read_object(self, name: str, *, required: bool = False) -> Mapping[str, Any] | None:
        """A JSON object."""
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(name, "must be an object")
        return value

    def read_sample_rate(self, name: str, *, supported: Collection[int]) -> int | None:
        """An integer sample rate; a rate outside ``supported`` raises ``invalid_audio``."""
        value = self.read_int(name)
        if value is not None and value not in supported:
            rates = ", ".join(str(rate) for rate in sorted(supported))
            raise self.fail(name, f"must be one of {rates} Hz", code=codes.INVALID_AUDIO)
        return value

    def read_audio(self, name: str, *, pcm16: bool = True) -> bytes:
        """Required base64 audio; bad base64, no bytes or (``pcm16``) an odd length raise ``invalid_audio``."""
        value = self._get(name, required=True)
        if not isinstance(value, str):
            raise self.fail(name, "must be a base64 string")
        try:
            audio = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise self.fail(name, "is not valid base64", code=codes.INVALID_AUDIO) from None
        if pcm16:
            check_pcm16(audio, fail=lambda problem: self.fail(name, problem, code=codes.INVALID_AUDIO))
        elif not audio:
            raise self.fail(name, "holds no audio", code=codes.INVALID_AUDIO)
        return audio


def check_pcm16(audio: bytes, *, fail: Callable[[str], Exception]) -> None:
    """Raise ``fail(problem)`` unless ``audio`` holds at least one whole PCM16 sample."""
    if not audio:
        raise fail("holds no audio")
    if len(audio) % 2:
        raise fail(f"has an odd byte length ({len(audio)}); PCM16 samples are 2 bytes")
