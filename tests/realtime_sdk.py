"""Strict validation of realtime events against the official ``openai`` SDK's own pydantic types.

The SDK's models allow unknown fields (``extra="allow"``) and coerce types, so that old SDKs survive new
servers; a test wants the opposite. ``validate_server`` / ``validate_client`` pick the model for an
event's ``type`` out of the SDK's union (``RealtimeServerEvent`` / ``RealtimeClientEvent``, GA or beta),
validate with ``strict=True`` (``3.0`` is not an int, ``"1"`` is not a number) and then walk the result:
any field the SDK does not define, at any depth, fails the test.
"""

from __future__ import annotations

import typing
from typing import Any

from openai.types.beta.realtime.realtime_client_event import RealtimeClientEvent as BetaClientEvent
from openai.types.beta.realtime.realtime_server_event import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime.realtime_client_event import RealtimeClientEvent as GAClientEvent
from openai.types.realtime.realtime_server_event import RealtimeServerEvent as GAServerEvent
from pydantic import BaseModel

from trio_voice.realtime import codes


def _models_by_type(union: Any) -> dict[str, type[BaseModel]]:
    """``type`` literal → model, for every member of an SDK event union (``Annotated[Union[...], …]``)."""
    members = typing.get_args(union)
    if members and typing.get_origin(members[0]) is typing.Union:  # Annotated[Union[...], PropertyInfo]
        members = typing.get_args(members[0])
    out = {}
    for model in members:
        (literal,) = typing.get_args(model.model_fields["type"].annotation)
        out[literal] = model
    return out


SERVER_MODELS = {codes.GA: _models_by_type(GAServerEvent), codes.BETA: _models_by_type(BetaServerEvent)}
CLIENT_MODELS = {codes.GA: _models_by_type(GAClientEvent), codes.BETA: _models_by_type(BetaClientEvent)}


class NotTheSDKShape(AssertionError):
    """An event the SDK's types do not accept strictly."""


def _no_extra(value: Any, path: str) -> None:
    if isinstance(value, BaseModel):
        if value.model_extra:
            raise NotTheSDKShape(f"{path}: fields the SDK does not define: {sorted(value.model_extra)}")
        for name in type(value).model_fields:
            _no_extra(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, (list, tuple)):
        for index, element in enumerate(value):
            _no_extra(element, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, element in value.items():
            _no_extra(element, f"{path}.{key}")


def _validate(obj: dict[str, Any], models: dict[str, type[BaseModel]]) -> BaseModel:
    model = models.get(obj.get("type"))  # type: ignore[arg-type]
    if model is None:
        raise NotTheSDKShape(f"the SDK knows no event of type {obj.get('type')!r}")
    try:
        instance = model.model_validate(obj, strict=True)
    except ValueError as exc:  # pydantic.ValidationError
        raise NotTheSDKShape(f"{obj.get('type')}: {exc}") from None
    _no_extra(instance, obj["type"])
    return instance


def validate_server(obj: dict[str, Any], dialect: str = codes.GA) -> BaseModel:
    """Validate one server event strictly against the SDK's type for it; return the parsed model.

    Raises:
        NotTheSDKShape: unknown type, a missing or wrongly typed field, or a field the SDK does not know.
    """
    return _validate(obj, SERVER_MODELS[dialect])


def validate_client(obj: dict[str, Any], dialect: str = codes.GA) -> BaseModel:
    """Validate one client event strictly against the SDK's type for it (as ``validate_server``)."""
    return _validate(obj, CLIENT_MODELS[dialect])
