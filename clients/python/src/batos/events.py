"""Event subscriptions: the kernel's PUB socket as an iterator.

Events are notifications published after the commit they describe
(``uvm_state_update``: one per committed transaction and object;
``cycle_update``: a cognitive cycle entered a state). A subscriber that
falls behind loses events (ZeroMQ drops them); each event's ``seq`` counts
its topic's events, so :attr:`Event.missed` says how many were lost just
before it. One that must not miss a change reads the object again: the
image is the truth. A subscription sees only events published after it
has connected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Dict, Iterable, Iterator, Optional

import msgpack
import zmq
import zmq.asyncio

from .errors import ProtocolError, Timeout
from .keys import Curve
from .transport import open_socket
from .wire import from_wire


@dataclass(frozen=True)
class Event:
    """One event: its topic, its body (values decoded as the client's
    proxies), and how many of the topic's events were lost before it."""

    topic: str
    body: Dict[str, Any]
    missed: int = 0

    def __getitem__(self, key: str) -> Any:
        return self.body[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.body.get(key, default)


class _Decoder:
    """Frames to :class:`Event`, counting each topic's gaps in ``seq``."""

    def __init__(self, bind: Callable[[int], Any]) -> None:
        self._bind = bind
        self._last: Dict[str, int] = {}

    def decode(self, frames: Iterable[bytes]) -> Event:
        frames = list(frames)
        if len(frames) != 2:
            raise ProtocolError(f"an event has two frames, not {len(frames)}")
        topic = frames[0].decode("utf-8", "replace")
        try:
            body = msgpack.unpackb(frames[1], raw=False)
        except Exception as e:
            raise ProtocolError(f"an event body is not MessagePack: {e}") from None
        if not isinstance(body, dict):
            raise ProtocolError("an event body is not a map")
        missed = 0
        seq = body.get("seq")
        if isinstance(seq, int):
            last = self._last.get(topic)
            if last is not None and seq > last + 1:
                missed = seq - last - 1
            self._last[topic] = seq
        return Event(topic, from_wire(body, self._bind), missed)


def _socket(context: zmq.Context, endpoint: str, topics: Iterable[str], curve: Optional[Curve]) -> zmq.Socket:
    socket = open_socket(context, zmq.SUB, endpoint, curve)
    for topic in list(topics) or [""]:
        socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
    return socket


class Subscription:
    """Events from the kernel, in the order published. Iterate it, or call
    :meth:`recv` with a timeout. Made by :meth:`batos.Kernel.subscribe`."""

    def __init__(
        self,
        context: zmq.Context,
        endpoint: str,
        topics: Iterable[str],
        curve: Optional[Curve],
        bind: Callable[[int], Any],
    ) -> None:
        self._socket = _socket(context, endpoint, topics, curve)
        self._decoder = _Decoder(bind)

    def recv(self, timeout: Optional[float] = None) -> Event:
        """The next event; :class:`~batos.Timeout` when none comes within
        ``timeout`` seconds (None: wait as long as it takes)."""
        wait_ms = None if timeout is None else max(0, int(timeout * 1000))
        if not self._socket.poll(wait_ms):
            raise Timeout(f"no event within {timeout} s")
        return self._decoder.decode(self._socket.recv_multipart())

    def __iter__(self) -> Iterator[Event]:
        while True:
            yield self.recv()

    def close(self) -> None:
        self._socket.close(linger=0)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncSubscription:
    """Events from the kernel for asyncio: ``async for event in sub``.
    Made by :meth:`batos.aio.Kernel.subscribe`."""

    def __init__(
        self,
        context: zmq.asyncio.Context,
        endpoint: str,
        topics: Iterable[str],
        curve: Optional[Curve],
        bind: Callable[[int], Any],
    ) -> None:
        self._socket = _socket(context, endpoint, topics, curve)
        self._decoder = _Decoder(bind)

    async def recv(self, timeout: Optional[float] = None) -> Event:
        """The next event; :class:`~batos.Timeout` when none comes within
        ``timeout`` seconds."""
        wait_ms = None if timeout is None else max(0, int(timeout * 1000))
        if not await self._socket.poll(wait_ms):
            raise Timeout(f"no event within {timeout} s")
        return self._decoder.decode(await self._socket.recv_multipart())

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while True:
            yield await self.recv()

    def close(self) -> None:
        self._socket.close(linger=0)

    async def __aenter__(self) -> "AsyncSubscription":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
