"""The protocol's commands, written once.

:class:`Commands` turns each command's Python arguments into the request's
fields and says how its result becomes Python. How the request travels is
the subclass's ``_request``: the sync client sends it and waits, a pipeline
sends it and returns a :class:`~batos.client.Pending`, the asyncio client
returns a coroutine. So every command has one definition and three ways to
be called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from .wire import from_wire, to_wire

#: An object as a command takes it: an oid, a root's name, or any proxy.
ObjectLike = Union[int, str, Any]


def oid_field(obj: ObjectLike) -> Union[int, str]:
    """The ``oid`` field for an object given as an oid, a root name or a proxy."""
    if isinstance(obj, bool):
        raise TypeError("an object is an oid, a root's name or a proxy, not a bool")
    if isinstance(obj, (int, str)):
        return obj
    oid = getattr(obj, "__batos_oid__", None)
    if isinstance(oid, int):
        return oid
    raise TypeError(f"{type(obj).__name__} is not an object (an oid, a root's name or a proxy)")


@dataclass(frozen=True)
class Sent:
    """A ``send``'s whole result: the value, and whether doesNotUnderstand
    generated the method that answered it."""

    value: Any
    generated: bool


@dataclass(frozen=True)
class MethodVersion:
    """What ``create_method`` installed."""

    selector: str
    version: int
    hash: str


def _same(result: Any) -> Any:
    return result


def _nothing(_result: Any) -> None:
    return None


def _documents(documents: Iterable[Union[Mapping[str, str], Tuple[str, str]]]) -> List[Dict[str, str]]:
    out = []
    for doc in documents:
        if isinstance(doc, tuple):
            source, text = doc
            out.append({"source": source, "text": text})
        else:
            out.append({"source": doc["source"], "text": doc["text"]})
    return out


class Commands:
    """Every command of protocol v1 (and this kernel's extensions to it)."""

    def _request(self, command: str, fields: Dict[str, Any], convert: Callable[[Any], Any]) -> Any:
        raise NotImplementedError

    def object(self, oid: int) -> Any:
        """The proxy for an object."""
        raise NotImplementedError

    def _value(self, result: Any) -> Any:
        return from_wire(result, self.object)

    def _bound(self, result: Any) -> Any:
        return self.object(result["oid"])

    # -- the kernel --------------------------------------------------------

    def ping(self) -> Any:
        """``{"version", "protocol", "uptime_s", "objects", ...}``."""
        return self._request("ping", {}, _same)

    def state(self, obj: Optional[ObjectLike] = None) -> Any:
        """An object's slots and method versions; without one, the image's
        roots and object count (``get_full_state``)."""
        fields = {} if obj is None else {"oid": oid_field(obj)}
        return self._request("get_full_state", fields, self._value)

    def snapshot(self) -> Any:
        """Checkpoints the whole image; returns the snapshot's id."""
        return self._request("snapshot", {}, lambda r: r["id"])

    # -- objects and slots ---------------------------------------------------

    def create_object(self, slots: Optional[Mapping[str, Any]] = None) -> Any:
        """A new object with these slots (``parent*`` defaults to
        ``traits_obj``); returns its proxy."""
        fields = {} if slots is None else {"slots": to_wire(dict(slots))}
        return self._request("create_object", fields, self._bound)

    def new(self, **slots: Any) -> Any:
        """``create_object`` with the slots as keywords."""
        return self.create_object(slots)

    def clone(self, obj: ObjectLike) -> Any:
        """A new object with a shallow copy of ``obj``'s slots."""
        return self._request("clone", {"oid": oid_field(obj)}, self._bound)

    def get_slot(self, obj: ObjectLike, slot: str) -> Any:
        """The value in the object's own slot (no delegation)."""
        return self._request("get_slot", {"oid": oid_field(obj), "slot": slot}, self._value)

    def set_slot(self, obj: ObjectLike, slot: str, value: Any) -> Any:
        """Writes a slot; returns once the write is durable."""
        fields = {"oid": oid_field(obj), "slot": slot, "value": to_wire(value)}
        return self._request("set_slot", fields, _nothing)

    def remove_slot(self, obj: ObjectLike, slot: str) -> Any:
        """Removes a slot; returns once the removal is durable."""
        return self._request("remove_slot", {"oid": oid_field(obj), "slot": slot}, _nothing)

    # -- messages and methods ------------------------------------------------

    def send(self, obj: ObjectLike, selector: str, *args: Any) -> Any:
        """Sends a message; returns its value."""
        return self._request("send", self._send_fields(obj, selector, args), lambda r: self._value(r["value"]))

    def send_full(self, obj: ObjectLike, selector: str, *args: Any) -> Any:
        """Sends a message; returns :class:`Sent` (the value, and whether
        doesNotUnderstand generated the method)."""
        return self._request(
            "send",
            self._send_fields(obj, selector, args),
            lambda r: Sent(self._value(r["value"]), bool(r.get("generated"))),
        )

    def _send_fields(self, obj: ObjectLike, selector: str, args: Tuple[Any, ...]) -> Dict[str, Any]:
        return {"oid": oid_field(obj), "selector": selector, "args": [to_wire(a) for a in args]}

    def create_method(
        self,
        obj: ObjectLike,
        selector: str,
        *,
        wat: Optional[str] = None,
        wasm: Optional[bytes] = None,
        python: Optional[str] = None,
    ) -> Any:
        """Installs a method (Python source, WAT text or a WebAssembly
        binary) as the next version of ``selector`` on the object; returns
        :class:`MethodVersion`. A refusal (the audit, or Python outside the
        method subset) raises :class:`~batos.CovenantViolation`."""
        given = [(k, v) for k, v in (("wat", wat), ("wasm", wasm), ("python", python)) if v is not None]
        if len(given) != 1:
            raise TypeError("create_method takes exactly one of python=, wat= and wasm=")
        fields: Dict[str, Any] = {"oid": oid_field(obj), "selector": selector}
        key, code = given[0]
        fields[key] = bytes(code) if key == "wasm" else code  # type: ignore[arg-type]
        return self._request(
            "create_method",
            fields,
            lambda r: MethodVersion(r["selector"], r["version"], r["hash"]),
        )

    def rollback_method(self, obj: ObjectLike, selector: str, version: int) -> Any:
        """Makes an earlier version of the object's method active again."""
        return self.send(obj, "rollbackMethod_toVersion_", selector, version)

    # -- memory ----------------------------------------------------------------

    def ingest(self, documents: Iterable[Union[Mapping[str, str], Tuple[str, str]]]) -> Any:
        """Stores and indexes documents (``(source, text)`` pairs or
        ``{"source", "text"}`` maps); returns ``{"documents", "chunks"}``
        once they are durable and searchable."""
        return self._request("ingest", {"documents": _documents(documents)}, _same)

    def search_memory(
        self,
        query: Optional[str] = None,
        *,
        limit: Optional[int] = None,
        source: Optional[str] = None,
        kind: Optional[str] = None,
        related: Optional[ObjectLike] = None,
    ) -> Any:
        """Hits, best first: ``[{"chunk", "kind", "source", "score",
        "snippet"}]``. ``related`` (a chunk or summary) instead of ``query``
        finds the summaries most like it."""
        fields: Dict[str, Any] = {}
        if query is not None:
            fields["query"] = query
        if related is not None:
            fields["related"] = oid_field(related)
        for key, value in (("limit", limit), ("source", source), ("kind", kind)):
            if value is not None:
                fields[key] = value
        return self._request("search_memory", fields, lambda r: r["hits"])

    # -- the cognitive core ----------------------------------------------------

    def list_experts(self) -> Any:
        """The persona experts and their tiers."""
        return self._request("list_experts", {}, lambda r: r["experts"])

    def infer(self, prompt: str, *, expert: Optional[str] = None, max_tokens: Optional[int] = None) -> Any:
        """Generates text with the kernel's model: ``{"text", "expert",
        "tokens", "model"}``. Without a model: :class:`~batos.Unavailable`."""
        fields: Dict[str, Any] = {"prompt": prompt}
        if expert is not None:
            fields["expert"] = expert
        if max_tokens is not None:
            fields["max_tokens"] = max_tokens
        return self._request("infer", fields, _same)

    def start_cycle(self, kind: str = "display_yourself") -> Any:
        """Starts a cognitive cycle; returns its oid."""
        return self._request("start_cycle", {"kind": kind}, lambda r: r["cycle"])

    def get_cycle(self, cycle: ObjectLike) -> Any:
        """A cycle's state, history and results."""
        return self._request("get_cycle", {"cycle": oid_field(cycle)}, self._value)
