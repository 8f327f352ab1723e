"""The sync client: one DEALER socket, requests matched to replies by id.

::

    with batos.connect() as kernel:
        ada = kernel.new(name="ada")
        ada.age = 36
        with kernel.pipeline() as p:       # many requests in flight at once
            writes = [p.set_slot(ada, f"k{i}", i) for i in range(1000)]

A :class:`Kernel` is not thread-safe: give each thread its own (they may
share one ``zmq.Context``).
"""

from __future__ import annotations

import inspect
import itertools
import os
import textwrap
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, TypeVar

import zmq

from .commands import Commands
from .errors import BatosError, Timeout
from .events import Subscription
from .keys import Curve, KeyLike, PairLike
from .objects import Object, selector_for
from .transport import open_socket
from .wire import Reply, decode_reply, encode_request

#: Where a kernel listens unless told otherwise (``$BATOS_ENDPOINT``,
#: ``$BATOS_EVENTS`` override them).
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
DEFAULT_EVENTS = "tcp://127.0.0.1:5556"

#: Requests a pipeline keeps in flight by default: half the kernel's
#: default share per connection (``max_inflight_per_peer``, 256), so a
#: pipeline is never answered ``overloaded`` for its own depth alone.
DEFAULT_WINDOW = 128

F = TypeVar("F", bound=Callable[..., Any])


def endpoints(endpoint: Optional[str], events: Optional[str]) -> "tuple[str, str]":
    """The command and event endpoints: given, else from the environment,
    else the kernel's defaults."""
    return (
        endpoint or os.environ.get("BATOS_ENDPOINT") or DEFAULT_ENDPOINT,
        events or os.environ.get("BATOS_EVENTS") or DEFAULT_EVENTS,
    )


class Pending:
    """A pipelined request's reply, once it has come."""

    __slots__ = ("_kernel", "_id", "_convert", "_reply")

    def __init__(self, kernel: "Kernel", request_id: int, convert: Callable[[Any], Any]) -> None:
        self._kernel = kernel
        self._id = request_id
        self._convert = convert
        self._reply: Optional[Reply] = None

    @property
    def done(self) -> bool:
        return self._reply is not None

    def result(self) -> Any:
        """The request's result (waiting for it if need be); its error raised."""
        if self._reply is None:
            self._kernel._wait(self)
        assert self._reply is not None
        return self._convert(self._reply.unwrap())

    def exception(self) -> Optional[BatosError]:
        """The error the kernel answered, or None."""
        if self._reply is None:
            self._kernel._wait(self)
        assert self._reply is not None
        return self._reply.error


class Kernel(Commands):
    """A connection to a kernel. Every command of the protocol is a method
    (see :class:`~batos.commands.Commands`); objects are proxies
    (:meth:`object`, :meth:`root`)."""

    def __init__(
        self,
        endpoint: Optional[str] = None,
        *,
        events: Optional[str] = None,
        timeout: float = 10.0,
        server_key: Optional[KeyLike] = None,
        key: Optional[PairLike] = None,
        context: Optional[zmq.Context] = None,
    ) -> None:
        self.endpoint, self.events_endpoint = endpoints(endpoint, events)
        #: Seconds to wait for a reply before :class:`~batos.Timeout`.
        self.timeout = timeout
        self._curve = Curve.of(server_key, key)
        self._context = context or zmq.Context.instance()
        self._socket = open_socket(self._context, zmq.DEALER, self.endpoint, self._curve)
        self._ids = itertools.count(1)
        self._waiting: Dict[int, Pending] = {}

    # -- requests ------------------------------------------------------------

    def _submit(self, command: str, fields: Dict[str, Any], convert: Callable[[Any], Any]) -> Pending:
        pending = Pending(self, next(self._ids), convert)
        self._socket.send(encode_request(pending._id, command, fields))
        self._waiting[pending._id] = pending
        return pending

    def _request(self, command: str, fields: Dict[str, Any], convert: Callable[[Any], Any]) -> Any:
        return self._submit(command, fields, convert).result()

    def _wait(self, pending: Pending) -> None:
        """Receives replies (handing each to its request) until ``pending``'s
        has come; :class:`Timeout` after ``timeout`` seconds of silence."""
        while pending._reply is None:
            if not self._socket.poll(int(self.timeout * 1000)):
                self._waiting.pop(pending._id, None)
                raise Timeout(f"no reply from {self.endpoint} within {self.timeout} s")
            reply = decode_reply(self._socket.recv_multipart()[-1])
            # A reply whose request stopped waiting (it timed out) is dropped.
            owner = self._waiting.pop(reply.id, None) if isinstance(reply.id, int) else None
            if owner is not None:
                owner._reply = reply

    def pipeline(self, window: int = DEFAULT_WINDOW) -> "Pipeline":
        """A pipeline: its commands are sent at once and return
        :class:`Pending` replies; at most ``window`` are in flight."""
        return Pipeline(self, window)

    def method(self, obj: Any, selector: Optional[str] = None) -> Callable[[F], F]:
        """A decorator that installs a Python function as a method of
        ``obj``, from its source (``inspect.getsource``)::

            @kernel.method(account)
            def deposit(self, amount):
                self.balance = self.balance + amount
                return self.balance

        The selector is the function's name, with a trailing ``_`` when it
        takes arguments (``deposit_``), unless given. The function must be
        in the kernel's method subset (``docs/method-abi.md``, "Python");
        it is returned unchanged."""

        def install(function: F) -> F:
            source = textwrap.dedent(inspect.getsource(function))
            lines = source.splitlines()
            start = next(i for i, line in enumerate(lines) if line.startswith("def "))
            nargs = function.__code__.co_argcount - 1
            name = selector or selector_for(function.__name__, nargs)
            self.create_method(obj, name, python="\n".join(lines[start:]) + "\n")
            return function

        return install

    # -- objects and events ----------------------------------------------------

    def object(self, oid: int) -> Object:
        """The proxy for the object ``oid`` (no request is made)."""
        return Object(self, oid)

    def root(self, name: str) -> Object:
        """The proxy for a root object by name (``"genesis_obj"``, ...)."""
        roots = self.state()["roots"]
        if name not in roots:
            raise KeyError(f"no root named {name!r}; the roots are {sorted(roots)}")
        return Object(self, roots[name])

    def subscribe(self, *topics: str) -> Subscription:
        """Events on ``topics`` (all, when none are named)."""
        return Subscription(self._context, self.events_endpoint, topics, self._curve, self.object)

    # -- lifetime ----------------------------------------------------------------

    def close(self) -> None:
        """Closes the socket; requests still waiting are abandoned."""
        self._waiting.clear()
        self._socket.close(linger=0)

    def __enter__(self) -> "Kernel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<batos.Kernel {self.endpoint}>"


class Pipeline(Commands):
    """Commands sent without waiting; each returns a :class:`Pending`. Leaving
    the ``with`` block waits for every reply (errors stay in their
    :class:`Pending` until asked for)."""

    def __init__(self, kernel: Kernel, window: int) -> None:
        if window < 1:
            raise ValueError("a pipeline's window is at least 1")
        self._kernel = kernel
        self._window = window
        self._sent: List[Pending] = []
        self._in_flight: Deque[Pending] = deque()

    def _request(self, command: str, fields: Dict[str, Any], convert: Callable[[Any], Any]) -> Pending:
        while self._in_flight and (self._in_flight[0].done or len(self._in_flight) >= self._window):
            oldest = self._in_flight.popleft()
            if not oldest.done:
                self._kernel._wait(oldest)
        pending = self._kernel._submit(command, fields, convert)
        self._sent.append(pending)
        self._in_flight.append(pending)
        return pending

    def object(self, oid: int) -> Object:
        return self._kernel.object(oid)

    def wait(self) -> List[Pending]:
        """Waits for every reply; returns the pending replies in the order sent."""
        for pending in self._sent:
            if not pending.done:
                self._kernel._wait(pending)
        return list(self._sent)

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.wait()


def connect(endpoint: Optional[str] = None, **options: Any) -> Kernel:
    """A :class:`Kernel` connected to ``endpoint`` (default
    ``$BATOS_ENDPOINT`` or ``tcp://127.0.0.1:5555``). ZeroMQ connects in the
    background: an unreachable kernel shows as :class:`~batos.Timeout` on
    the first request."""
    return Kernel(endpoint, **options)

