"""ZeroMQ sockets to a kernel, made one way for every client."""

from __future__ import annotations

from typing import Optional

import zmq

from .keys import Curve


def open_socket(context: zmq.Context, kind: int, endpoint: str, curve: Optional[Curve]) -> zmq.Socket:
    """A socket of ``kind`` connected to ``endpoint``: closed without
    lingering, a CURVE client when ``curve`` is given."""
    socket = context.socket(kind)
    socket.linger = 0
    if curve is not None:
        curve.apply(socket)
    socket.connect(endpoint)
    return socket
