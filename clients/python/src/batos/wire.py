"""Protocol v1 on the wire: request bodies, replies and values.

Values are MessagePack values. Two reserved map shapes have Python types
here: ``{"$ref": oid}`` (an object reference: decoded as the client's
object proxy, encoded from any proxy or :class:`Ref`) and ``{"$method":
{...}}`` (how a method slot shows in state: :class:`MethodSlot`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, NamedTuple, Optional

import msgpack

from .errors import KernelError, ProtocolError, error_for

PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class Ref:
    """A reference to an object by oid, not bound to any client."""

    oid: int

    @property
    def __batos_oid__(self) -> int:
        return self.oid


@dataclass(frozen=True)
class MethodSlot:
    """A method slot as state shows it: the active version of a selector.
    Built-in primitives have ``version`` 0 and ``hash`` ``"primitive"``."""

    selector: str
    version: int
    hash: str


def to_wire(value: Any) -> Any:
    """A Python value as the protocol's value: proxies and :class:`Ref` as
    ``{"$ref": oid}``, tuples as arrays. Map keys must be strings."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    oid = getattr(value, "__batos_oid__", None)
    if isinstance(oid, int):
        return {"$ref": oid}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise TypeError(f"map keys must be strings, not {type(key).__name__}")
            out[key] = to_wire(v)
        return out
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{type(value).__name__} is not a BAT OS value")


def from_wire(value: Any, bind: Callable[[int], Any]) -> Any:
    """A protocol value as Python: ``{"$ref": oid}`` becomes ``bind(oid)``
    (the client's proxy), ``{"$method": ...}`` a :class:`MethodSlot`."""
    if isinstance(value, list):
        return [from_wire(v, bind) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            oid = value.get("$ref")
            if isinstance(oid, int) and not isinstance(oid, bool):
                return bind(oid)
            method = value.get("$method")
            if isinstance(method, dict):
                return MethodSlot(
                    selector=method.get("selector", ""),
                    version=method.get("version", 0),
                    hash=method.get("hash", ""),
                )
        return {k: from_wire(v, bind) for k, v in value.items()}
    return value


def encode_request(request_id: Any, command: str, fields: Dict[str, Any]) -> bytes:
    """One request body."""
    body = {"v": PROTOCOL_VERSION, "id": request_id, "command": command}
    body.update(fields)
    return msgpack.packb(body, use_bin_type=True)


class Reply(NamedTuple):
    """A decoded reply: ``error`` is None when the request succeeded."""

    id: Any
    result: Any
    error: Optional[KernelError]

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


def decode_reply(body: bytes) -> Reply:
    """A reply body, checked against protocol v1."""
    try:
        reply = msgpack.unpackb(body, raw=False)
    except Exception as e:  # msgpack raises several types for bad input
        raise ProtocolError(f"the reply is not MessagePack: {e}") from None
    if not isinstance(reply, dict) or reply.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"not a protocol v1 reply: {reply!r:.200}")
    status = reply.get("status")
    if status == "ok":
        return Reply(reply.get("id"), reply.get("result"), None)
    error = reply.get("error")
    if status != "error" or not isinstance(error, dict):
        raise ProtocolError(f"a reply without a valid status: {reply!r:.200}")
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not isinstance(message, str):
        raise ProtocolError(f"an error without code and message: {error!r:.200}")
    return Reply(reply.get("id"), None, error_for(code, message))
