"""Objects as Python proxies.

``obj.name`` looks ``name`` up the way ``send`` does (the object's own
slots, then depth-first along ``parent*``, each object once): a data slot
gives its value, a method gives a callable :class:`Method`, and a name
found nowhere gives a :class:`Method` too, so calling it sends the message
and lets doesNotUnderstand answer. ``obj.name = v`` and ``del obj.name``
write the object's own slot; ``obj["slot"]`` reads its own slot with no
delegation (and reaches names Python cannot spell, like ``"parent*"``).

Selectors: a call with no arguments sends the name as it is; a call with
arguments sends the name with a trailing ``_`` added when it has none, the
kernel's keyword form: ``acct.deposit(5)`` sends ``deposit_``,
``d.at_put("k", 1)`` sends ``at_put_``, ``o.setSlot_value_("a", 1)`` sends
``setSlot_value_``.

The proxy's own names (``oid``, ``kernel``, ``parent``, ``parents``,
``send``, ``state``, ``clone``, ``define``, ``lookup``) come first; reach a
slot with one of those names with ``obj.lookup(name)`` or ``obj[name]``.
"""

from __future__ import annotations

from typing import Any, Generator, List, Optional, Tuple

from .errors import NoSuchObject, NoSuchSlot
from .wire import MethodSlot

PARENTS = "parent*"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: What a lookup step answers for a slot the object does not have.
MISSING: Any = _Missing()

#: One lookup step: read ``slot`` of object ``oid`` (raw wire value, or MISSING).
Step = Tuple[int, str]


def selector_for(name: str, nargs: int) -> str:
    """The selector a Python call ``obj.name(*args)`` sends."""
    if nargs == 0 or name.endswith("_"):
        return name
    return name + "_"


def _parent_oids(value: Any) -> List[int]:
    refs = value if isinstance(value, list) else [value]
    return [r["$ref"] for r in refs if isinstance(r, dict) and isinstance(r.get("$ref"), int)]


def lookup_steps(oid: int, name: str) -> Generator[Step, Any, Any]:
    """The kernel's lookup as a sequence of own-slot reads: yields ``(oid,
    slot)`` and is sent that slot's raw value (or MISSING); returns the raw
    value found, or MISSING. Written once, driven by the sync and the
    asyncio proxies."""
    seen = set()
    stack = [oid]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        found = yield (current, name)
        if found is not MISSING:
            return found
        parents = yield (current, PARENTS)
        if parents is not MISSING:
            stack.extend(reversed(_parent_oids(parents)))
    return MISSING


def _is_method(raw: Any) -> bool:
    return isinstance(raw, dict) and len(raw) == 1 and isinstance(raw.get("$method"), dict)


def _is_proxy_attribute(cls: type, name: str) -> bool:
    return name.startswith("_") or hasattr(cls, name)


class Method:
    """A message ready to send to an object: calling it sends."""

    __slots__ = ("receiver", "name", "slot")

    def __init__(self, receiver: Any, name: str, slot: Optional[MethodSlot]) -> None:
        self.receiver = receiver
        self.name = name
        #: The method slot the lookup found (None: found nowhere; the send
        #: goes to doesNotUnderstand).
        self.slot = slot

    def selector(self, nargs: int) -> str:
        """The selector sent for a call with ``nargs`` arguments."""
        return self.name if self.slot is not None else selector_for(self.name, nargs)

    def __call__(self, *args: Any) -> Any:
        return self.receiver.send(self.selector(len(args)), *args)

    def __repr__(self) -> str:
        where = "method" if self.slot is not None else "message"
        return f"<batos {where} {self.name!r} of {self.receiver!r}>"


class _Proxy:
    __slots__ = ("_kernel", "_oid")

    def __init__(self, kernel: Any, oid: int) -> None:
        object.__setattr__(self, "_kernel", kernel)
        object.__setattr__(self, "_oid", oid)

    @property
    def oid(self) -> int:
        """The object's oid."""
        return self._oid

    @property
    def kernel(self) -> Any:
        """The client this proxy talks through."""
        return self._kernel

    @property
    def __batos_oid__(self) -> int:
        return self._oid

    def _found(self, raw: Any, name: str) -> Any:
        if raw is MISSING:
            return Method(self, name, None)
        if _is_method(raw):
            return Method(self, name, self._kernel._value(raw))
        return self._kernel._value(raw)

    def send(self, selector: Any, *args: Any) -> Any:
        """Sends a message to the object; returns its value."""
        return self._kernel.send(self, selector, *args)

    def state(self) -> Any:
        """The object's own slots and method versions (``get_full_state``)."""
        return self._kernel.state(self)

    def clone(self) -> Any:
        """A new object with a shallow copy of this one's slots."""
        return self._kernel.clone(self)

    def define(
        self,
        selector: str,
        *,
        python: Optional[str] = None,
        wat: Optional[str] = None,
        wasm: Optional[bytes] = None,
    ) -> Any:
        """Installs a method on this object (``create_method``)."""
        return self._kernel.create_method(self, selector, python=python, wat=wat, wasm=wasm)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Proxy) and other._kernel is self._kernel and other._oid == self._oid

    def __hash__(self) -> int:
        return hash((id(self._kernel), self._oid))

    def __repr__(self) -> str:
        return f"<batos object {self._oid}>"


class Object(_Proxy):
    """An object of the image, through the sync client."""

    __slots__ = ()

    def lookup(self, name: str) -> Any:
        """``name`` found as ``send`` finds it: a data slot's value, or a
        :class:`Method` to call."""
        steps = lookup_steps(self._oid, name)
        try:
            oid, slot = next(steps)
            while True:
                oid, slot = steps.send(self._read(oid, slot))
        except StopIteration as done:
            return self._found(done.value, name)

    def _read(self, oid: int, slot: str) -> Any:
        try:
            return self._kernel._request("get_slot", {"oid": oid, "slot": slot}, lambda r: r)
        except (NoSuchSlot, NoSuchObject):
            return MISSING

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.lookup(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if _is_proxy_attribute(type(self), name):
            object.__setattr__(self, name, value)
        else:
            self._kernel.set_slot(self, name, value)

    def __delattr__(self, name: str) -> None:
        if _is_proxy_attribute(type(self), name):
            raise AttributeError(f"{name} is the proxy's own; use del obj[{name!r}]")
        self._kernel.remove_slot(self, name)

    def __getitem__(self, slot: str) -> Any:
        return self._kernel.get_slot(self, slot)

    def __setitem__(self, slot: str, value: Any) -> None:
        self._kernel.set_slot(self, slot, value)

    def __delitem__(self, slot: str) -> None:
        self._kernel.remove_slot(self, slot)

    @property
    def parents(self) -> List[Any]:
        """The objects this one delegates to, in order."""
        try:
            value = self[PARENTS]
        except NoSuchSlot:
            return []
        return value if isinstance(value, list) else [value]

    @parents.setter
    def parents(self, parents: List[Any]) -> None:
        self[PARENTS] = list(parents)

    @property
    def parent(self) -> Optional[Any]:
        """The first parent (None when there is none)."""
        parents = self.parents
        return parents[0] if parents else None

    @parent.setter
    def parent(self, parent: Any) -> None:
        self[PARENTS] = parent


class AsyncObject(_Proxy):
    """An object of the image, through the asyncio client. Reads and calls
    are awaited: ``await obj.width``, ``await obj.deposit(5)``; writes are
    ``await obj.set("width", 3)`` (an assignment cannot be awaited)."""

    __slots__ = ()

    async def lookup(self, name: str) -> Any:
        """``name`` found as ``send`` finds it (see :meth:`Object.lookup`)."""
        steps = lookup_steps(self._oid, name)
        try:
            oid, slot = next(steps)
            while True:
                oid, slot = steps.send(await self._read(oid, slot))
        except StopIteration as done:
            return self._found(done.value, name)

    async def _read(self, oid: int, slot: str) -> Any:
        try:
            return await self._kernel._request("get_slot", {"oid": oid, "slot": slot}, lambda r: r)
        except (NoSuchSlot, NoSuchObject):
            return MISSING

    def __getattr__(self, name: str) -> "AsyncAttribute":
        if name.startswith("_"):
            raise AttributeError(name)
        return AsyncAttribute(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if _is_proxy_attribute(type(self), name):
            object.__setattr__(self, name, value)
        else:
            raise TypeError(f"an asyncio proxy's slots are written with `await obj.set({name!r}, value)`")

    def get(self, slot: str) -> Any:
        """The object's own slot (no delegation), awaitable."""
        return self._kernel.get_slot(self, slot)

    def set(self, slot: str, value: Any) -> Any:
        """Writes the object's slot, awaitable; done once durable."""
        return self._kernel.set_slot(self, slot, value)

    def remove(self, slot: str) -> Any:
        """Removes the object's slot, awaitable."""
        return self._kernel.remove_slot(self, slot)


class AsyncAttribute:
    """``obj.name`` on an asyncio proxy: awaited, the lookup's result;
    called, the message sent (one round trip, the kernel looks it up)."""

    __slots__ = ("_obj", "_name")

    def __init__(self, obj: AsyncObject, name: str) -> None:
        self._obj = obj
        self._name = name

    def __await__(self) -> Generator[Any, None, Any]:
        return self._obj.lookup(self._name).__await__()

    def __call__(self, *args: Any) -> Any:
        return self._obj.send(selector_for(self._name, len(args)), *args)

    def __repr__(self) -> str:
        return f"<batos attribute {self._name!r} of {self._obj!r}>"
