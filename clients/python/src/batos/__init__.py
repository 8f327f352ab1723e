"""BAT OS client: talk to a kernel over its Synaptic Bridge (ZeroMQ +
MessagePack, protocol v1).

::

    import batos

    with batos.connect("tcp://127.0.0.1:5555") as kernel:
        ada = kernel.new(name="ada")
        ada.age = 36
        print(ada.name, ada.age)

``batos.aio`` has the same client for asyncio.
"""

from . import aio
from .client import DEFAULT_ENDPOINT, DEFAULT_EVENTS, Kernel, Pending, Pipeline, connect
from .commands import MethodVersion, Sent
from .errors import (
    BadRequest,
    BatosError,
    CovenantViolation,
    DoesNotUnderstand,
    Forbidden,
    Internal,
    KernelError,
    MethodTrap,
    NoSuchObject,
    NoSuchSlot,
    Overloaded,
    ProtocolError,
    Timeout,
    TooLarge,
    Unavailable,
    UnknownCommand,
    UnsupportedVersion,
)
from .events import Event, Subscription
from .keys import Curve
from .objects import AsyncObject, Method, Object, selector_for
from .wire import PROTOCOL_VERSION, MethodSlot, Ref

__all__ = [
    "AsyncObject",
    "BadRequest",
    "BatosError",
    "CovenantViolation",
    "Curve",
    "DEFAULT_ENDPOINT",
    "DEFAULT_EVENTS",
    "DoesNotUnderstand",
    "Event",
    "Forbidden",
    "Internal",
    "Kernel",
    "KernelError",
    "Method",
    "MethodSlot",
    "MethodTrap",
    "MethodVersion",
    "NoSuchObject",
    "NoSuchSlot",
    "Object",
    "Overloaded",
    "PROTOCOL_VERSION",
    "Pending",
    "Pipeline",
    "ProtocolError",
    "Ref",
    "Sent",
    "Subscription",
    "Timeout",
    "TooLarge",
    "Unavailable",
    "UnknownCommand",
    "UnsupportedVersion",
    "aio",
    "connect",
    "selector_for",
]
