"""Typed reading of a realtime client event's JSON, with errors shaped like the hosted API's.

Every field of a realtime client event is read through a ``Reader``: it checks JSON types strictly
(``true`` is not an integer, ``1.5`` is not one either, ``"1"`` is not a number), refuses fields the
object does not define, and raises ``RealtimeProtocolError`` carrying what a realtime ``error`` event
needs: ``type``, ``code``, ``param`` (the dotted path of the field, as in ``session.audio.input.format``)
and the offending event's ``event_id``. It knows nothing about which events exist.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Collection, Mapping
from typing import Any

from trio_voice.errors import RemoteProtocolError

from . import codes

MAX_EVENT_ID_CHARS = 256  # an event_id is echoed in errors: keep it small


class RealtimeProtocolError(RemoteProtocolError):
    """A realtime client event the server cannot accept; rendered as one realtime ``error`` event.

    ``code`` is the realtime ``error.code`` (see ``codes.ERROR_CODES``); ``error_type`` is
    ``invalid_request_error`` unless said otherwise; ``param`` names the offending field (dotted path)
    or is ``None``; ``event_id`` is the client's id of the offending event, when it could be read
    (also set as ``request_id``, the name the session core uses for it). The session survives.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        param: str | None = None,
        event_id: str | None = None,
        error_type: str = codes.INVALID_REQUEST_ERROR,
    ) -> None:
        super().__init__(message, code=code, request_id=event_id)
        self.param = param
        self.event_id = event_id
        self.error_type = error_type


def read_event_id(obj: Mapping[str, Any]) -> str | None:
    """The event's ``event_id``, or ``None`` if it has none.

    Raises:
        RealtimeProtocolError: ``invalid_type`` / ``string_above_max_length`` for a bad ``event_id``
            (the error then echoes no event_id: the one sent cannot be trusted).
    """
    value = obj.get("event_id")
    if value is None:
        return None
    if not isinstance(value, str):
        raise RealtimeProtocolError(
            "Invalid type for 'event_id': expected a string.", code=codes.INVALID_TYPE, param="event_id"
        )
    if len(value) > MAX_EVENT_ID_CHARS:
        raise RealtimeProtocolError(
            f"Invalid 'event_id': string too long. Expected at most {MAX_EVENT_ID_CHARS} characters.",
            code=codes.STRING_ABOVE_MAX_LENGTH,
            param="event_id",
        )
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class Reader:
    """Reads the fields of one JSON object ``obj``, found at dotted path ``path`` ("" for the event).

    Every ``read_*`` method returns ``None`` for an absent or ``null`` optional field and raises
    ``RealtimeProtocolError`` for anything else that is wrong. ``has`` and ``is_null`` tell absent from
    ``null`` where the API gives them different meanings (``turn_detection: null`` turns VAD off).
    """

    def __init__(self, obj: Mapping[str, Any], *, path: str, event_id: str | None) -> None:
        self.obj = obj
        self.path = path
        self.event_id = event_id

    def param(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str | None, message: str, *, code: str) -> RealtimeProtocolError:
        """Build (not raise) the error for field ``name`` (``None``: the object itself)."""
        param = self.path or None if name is None else self.param(name)
        return RealtimeProtocolError(message, code=code, param=param, event_id=self.event_id)

    def reject_unknown(self, known: Collection[str]) -> None:
        """Refuse fields other than ``known`` (``type`` and ``event_id`` are allowed on events)."""
        for name in self.obj:
            if name not in known and not (not self.path and name in ("type", "event_id")):
                raise self.fail(
                    name, f"Unknown parameter: '{self.param(name)}'.", code=codes.UNKNOWN_PARAMETER
                )

    def has(self, name: str) -> bool:
        return name in self.obj

    def is_null(self, name: str) -> bool:
        return name in self.obj and self.obj[name] is None

    def _get(self, name: str, required: bool) -> Any:
        value = self.obj.get(name)
        if value is None and required:
            raise self.fail(
                name,
                f"Missing required parameter: '{self.param(name)}'.",
                code=codes.MISSING_REQUIRED_PARAMETER,
            )
        return value

    def _wrong_type(self, name: str, expected: str, value: object) -> RealtimeProtocolError:
        return self.fail(
            name,
            f"Invalid type for '{self.param(name)}': expected {expected}, but got {_json_type(value)} instead.",
            code=codes.INVALID_TYPE,
        )

    def invalid_value(self, name: str, value: object, allowed: Collection[Any]) -> RealtimeProtocolError:
        supported = ", ".join(repr(choice) for choice in sorted(allowed, key=str))
        return self.fail(
            name,
            f"Invalid value: {value!r:.80}. Supported values are: {supported}.",
            code=codes.INVALID_VALUE,
        )

    def unsupported(self, name: str, what: str) -> RealtimeProtocolError:
        return self.fail(
            name,
            f"'{self.param(name)}': {what} is not supported by this server.",
            code=codes.UNSUPPORTED_FEATURE,
        )

    def only(self, name: str, *allowed: object) -> None:
        """A field the API defines but trio-voice does not implement: accept it only with a value that asks
        for nothing (``tools: []``, ``tracing: null``, ``speed: 1.0`` …); refuse anything else clearly."""
        if name not in self.obj:
            return
        value = self.obj[name]
        if not any((value == ok and type(value) is type(ok)) or value is ok for ok in allowed):
            shown = " or ".join("null" if ok is None else repr(ok) for ok in allowed)
            raise self.unsupported(name, f"a value other than {shown}")

    def read_str(
        self,
        name: str,
        *,
        required: bool = False,
        non_blank: bool = False,
        max_chars: int | None = None,
        choices: Collection[str] | None = None,
    ) -> str | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._wrong_type(name, "a string", value)
        if non_blank and not value.strip():
            raise self.fail(name, f"Invalid '{self.param(name)}': empty string.", code=codes.INVALID_VALUE)
        if max_chars is not None and len(value) > max_chars:
            raise self.fail(
                name,
                f"Invalid '{self.param(name)}': string too long. Expected at most {max_chars} characters, "
                f"but got {len(value)} instead.",
                code=codes.STRING_ABOVE_MAX_LENGTH,
            )
        if choices is not None and value not in choices:
            raise self.invalid_value(name, value, choices)
        return value

    def read_int(
        self, name: str, *, required: bool = False, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong_type(name, "an integer", value)
        if minimum is not None and value < minimum:
            raise self.fail(
                name,
                f"Invalid '{self.param(name)}': integer below minimum value. Expected a value >= {minimum}, "
                f"but got {value} instead.",
                code=codes.INTEGER_BELOW_MIN_VALUE,
            )
        if maximum is not None and value > maximum:
            raise self.fail(
                name,
                f"Invalid '{self.param(name)}': integer above maximum value. Expected a value <= {maximum}, "
                f"but got {value} instead.",
                code=codes.INTEGER_ABOVE_MAX_VALUE,
            )
        return value

    def read_number(
        self, name: str, *, minimum: float, maximum: float, required: bool = False
    ) -> float | None:
        value = self._get(name, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self._wrong_type(name, "a decimal", value)
        if value < minimum:
            raise self.fail(
                name,
                f"Invalid '{self.param(name)}': decimal below minimum value. Expected a value >= {minimum}, "
                f"but got {value} instead.",
                code=codes.DECIMAL_BELOW_MIN_VALUE,
            )
        if value > maximum:
            raise self.fail(
                name,
                f"Invalid '{self.param(name)}': decimal above maximum value. Expected a value <= {maximum}, "
                f"but got {value} instead.",
                code=codes.DECIMAL_ABOVE_MAX_VALUE,
            )
        return float(value)

    def read_bool(self, name: str, *, required: bool = False) -> bool | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self._wrong_type(name, "a boolean", value)
        return value

    def read_object(self, name: str, *, required: bool = False) -> Reader | None:
        """A nested JSON object, as a ``Reader`` whose errors name it by its path."""
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._wrong_type(name, "an object", value)
        return Reader(value, path=self.param(name), event_id=self.event_id)

    def read_list(self, name: str, *, required: bool = False) -> list[Any] | None:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self._wrong_type(name, "an array", value)
        return value

    def read_str_map(self, name: str, *, max_entries: int) -> dict[str, str] | None:
        """An object of string values (``metadata``), at most ``max_entries`` of them."""
        sub = self.read_object(name)
        if sub is None:
            return None
        if len(sub.obj) > max_entries:
            raise self.fail(
                name, f"Invalid '{self.param(name)}': at most {max_entries} keys.", code=codes.INVALID_VALUE
            )
        for key, value in sub.obj.items():
            if not isinstance(value, str):
                raise sub._wrong_type(key, "a string", value)
        return dict(sub.obj)

    def read_base64(self, name: str, *, required: bool = True) -> bytes | None:
        """Base64 bytes, not empty."""
        value = self.read_str(name, required=required)
        if value is None:
            return None
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise self.fail(
                name, f"Invalid '{self.param(name)}': not valid base64.", code=codes.INVALID_VALUE
            ) from None
        if not data:
            raise self.fail(name, f"Invalid '{self.param(name)}': no audio.", code=codes.INVALID_VALUE)
        return data

    def element(self, name: str, index: int, value: object) -> Reader:
        """Element ``index`` of array ``name``, which must be an object."""
        path = f"{self.param(name)}[{index}]"
        if not isinstance(value, dict):
            raise RealtimeProtocolError(
                f"Invalid type for '{path}': expected an object, but got {_json_type(value)} instead.",
                code=codes.INVALID_TYPE,
                param=path,
                event_id=self.event_id,
            )
        return Reader(value, path=path, event_id=self.event_id)
