"""Parsing ``multipart/form-data`` bodies (sans-I/O): bytes and a Content-Type in, named parts out.

The parsing itself is python-multipart's (the parser Starlette and FastAPI use): a streaming state
machine, well fuzzed, with limits on header count and size. This module only collects its callbacks
into :class:`FormPart` records.
"""

from __future__ import annotations

import attrs
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from trio_voice.errors import RemoteProtocolError

# Parts accepted in one form: an upload and a handful of text fields need far fewer.
MAX_PARTS = 16


@attrs.frozen
class FormPart:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    def text(self) -> str:
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError(
                f"form field {self.name!r} is not UTF-8 text", code="invalid_field"
            ) from None


def parse_form(body: bytes, content_type: str | None) -> dict[str, FormPart]:
    """Split a ``multipart/form-data`` body into its parts, by field name (the last one wins).

    Raises:
        RemoteProtocolError: ``unsupported_media_type`` when the body is not multipart/form-data with
            a boundary the parser accepts (at most 256 bytes); ``invalid_field`` when it does not parse
            or has too many parts.
    """
    media_type, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise RemoteProtocolError(
            "the request body must be multipart/form-data with a boundary", code="unsupported_media_type"
        )

    parts: list[FormPart] = []
    headers: dict[bytes, bytes] = {}
    field, value, data = bytearray(), bytearray(), bytearray()

    def on_part_begin() -> None:
        headers.clear()
        data.clear()

    def on_header_field(buf: bytes, start: int, end: int) -> None:
        field.extend(buf[start:end])

    def on_header_value(buf: bytes, start: int, end: int) -> None:
        value.extend(buf[start:end])

    def on_header_end() -> None:
        headers[bytes(field).lower()] = bytes(value)
        field.clear()
        value.clear()

    def on_part_data(buf: bytes, start: int, end: int) -> None:
        data.extend(buf[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name")
        if name is None:
            raise RemoteProtocolError("a form part has no name", code="invalid_field")
        if len(parts) >= MAX_PARTS:
            raise RemoteProtocolError(f"the form has more than {MAX_PARTS} parts", code="invalid_field")
        filename = disposition.get(b"filename")
        part_type = headers.get(b"content-type")
        parts.append(
            FormPart(
                name=name.decode("utf-8", "replace"),
                data=bytes(data),
                filename=filename.decode("utf-8", "replace") if filename is not None else None,
                content_type=part_type.decode("latin-1") if part_type is not None else None,
            )
        )

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    # FormParserError is the base of everything python-multipart raises on bad input: the constructor
    # refuses a boundary over its limit, write() and finalize() a body that does not parse.
    try:
        parser = MultipartParser(boundary, callbacks)
    except FormParserError as exc:
        raise RemoteProtocolError(
            f"the multipart boundary is not usable: {exc}", code="unsupported_media_type"
        ) from None
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise RemoteProtocolError(f"the multipart body does not parse: {exc}", code="invalid_field") from None
    return {part.name: part for part in parts}
