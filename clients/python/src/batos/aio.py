"""The asyncio client: the same commands, awaited; replies are matched to
requests by id, so concurrent commands are pipelined on one connection::

    async with batos.aio.connect() as kernel:
        ada = await kernel.new(name="ada")
        await asyncio.gather(*(kernel.set_slot(ada, f"k{i}", i) for i in range(1000)))
        print(await ada.k7)

At most ``max_inflight`` requests are in flight at once (the rest wait
their turn in the client), so a large ``gather`` is never answered
``overloaded`` for its own size alone.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Callable, Dict, Optional

import zmq
import zmq.asyncio

from .client import DEFAULT_WINDOW, endpoints
from .commands import Commands
from .errors import BatosError, Timeout
from .events import AsyncSubscription
from .keys import Curve, KeyLike, PairLike
from .objects import AsyncObject
from .transport import open_socket
from .wire import Reply, decode_reply, encode_request


class Kernel(Commands):
    """A connection to a kernel for asyncio. Every command is a coroutine
    method; objects are :class:`~batos.objects.AsyncObject` proxies."""

    def __init__(
        self,
        endpoint: Optional[str] = None,
        *,
        events: Optional[str] = None,
        timeout: float = 10.0,
        max_inflight: int = DEFAULT_WINDOW,
        server_key: Optional[KeyLike] = None,
        key: Optional[PairLike] = None,
        context: Optional[zmq.asyncio.Context] = None,
    ) -> None:
        self.endpoint, self.events_endpoint = endpoints(endpoint, events)
        self.timeout = timeout
        self._curve = Curve.of(server_key, key)
        self._context = context or zmq.asyncio.Context.instance()
        self._socket = open_socket(self._context, zmq.DEALER, self.endpoint, self._curve)
        self._ids = itertools.count(1)
        self._waiting: Dict[int, "asyncio.Future[Reply]"] = {}
        self._slots = asyncio.Semaphore(max_inflight)
        self._reader: Optional["asyncio.Task[None]"] = None

    async def _request(self, command: str, fields: Dict[str, Any], convert: Callable[[Any], Any]) -> Any:
        request_id = next(self._ids)
        body = encode_request(request_id, command, fields)
        async with self._slots:
            reply = asyncio.get_running_loop().create_future()
            self._waiting[request_id] = reply
            try:
                await self._socket.send(body)
                self._read_replies()
                return convert((await asyncio.wait_for(reply, self.timeout)).unwrap())
            except asyncio.TimeoutError:
                raise Timeout(f"no reply from {self.endpoint} within {self.timeout} s") from None
            finally:
                self._waiting.pop(request_id, None)

    def _read_replies(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._replies())

    async def _replies(self) -> None:
        """Hands each reply to its request's future; a malformed reply fails
        every request waiting (the connection cannot be trusted past it)."""
        while self._waiting:
            frames = await self._socket.recv_multipart()
            try:
                reply = decode_reply(frames[-1])
            except BatosError as e:
                for future in self._waiting.values():
                    if not future.done():
                        future.set_exception(e)
                continue
            future = self._waiting.get(reply.id) if isinstance(reply.id, int) else None
            if future is not None and not future.done():
                future.set_result(reply)

    def object(self, oid: int) -> AsyncObject:
        """The proxy for the object ``oid`` (no request is made)."""
        return AsyncObject(self, oid)

    async def root(self, name: str) -> AsyncObject:
        """The proxy for a root object by name."""
        roots = (await self.state())["roots"]
        if name not in roots:
            raise KeyError(f"no root named {name!r}; the roots are {sorted(roots)}")
        return AsyncObject(self, roots[name])

    def subscribe(self, *topics: str) -> AsyncSubscription:
        """Events on ``topics`` (all, when none are named)."""
        return AsyncSubscription(self._context, self.events_endpoint, topics, self._curve, self.object)

    async def aclose(self) -> None:
        """Closes the connection; requests still waiting fail with
        :class:`~batos.BatosError`."""
        if self._reader is not None:
            self._reader.cancel()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(BatosError("the client was closed"))
        self._socket.close(linger=0)

    async def __aenter__(self) -> "Kernel":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<batos.aio.Kernel {self.endpoint}>"


def connect(endpoint: Optional[str] = None, **options: Any) -> Kernel:
    """An asyncio :class:`Kernel` connected to ``endpoint``."""
    return Kernel(endpoint, **options)
