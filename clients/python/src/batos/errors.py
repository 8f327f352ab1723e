"""Exceptions: one class per protocol error code, under :class:`KernelError`.

Every error the kernel answers (``{"status": "error", "error": {"code",
"message"}}``) is raised as the class of its code, so a caller catches
exactly what it can handle::

    try:
        obj.withdraw(500)
    except batos.MethodTrap as e:
        print("nothing was kept:", e.message)

A code this client does not know (a newer kernel's) is raised as
:class:`KernelError` itself, with its ``code``.
"""

from __future__ import annotations

from typing import Dict, Type


class BatosError(Exception):
    """Anything this client raises."""


class Timeout(BatosError, TimeoutError):
    """No reply (or event) came within the timeout. The request may still
    have taken effect: the kernel answers every request, but not after the
    client stopped waiting."""


class ProtocolError(BatosError):
    """The kernel's reply broke protocol v1 (a bug on one side)."""


class KernelError(BatosError):
    """The kernel answered with an error. ``code`` is the protocol's error
    code, ``message`` the kernel's explanation."""

    code: str = ""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class BadRequest(KernelError):
    """Not MessagePack, not a map, or a missing or mistyped field."""

    code = "bad_request"


class TooLarge(KernelError):
    """The request (or what a method wrote) is over a limit."""

    code = "too_large"


class UnsupportedVersion(KernelError):
    """The kernel does not speak the protocol version asked for."""

    code = "unsupported_version"


class UnknownCommand(KernelError):
    """No such command."""

    code = "unknown_command"


class NoSuchObject(KernelError):
    """No object has that oid (or root name)."""

    code = "no_such_object"


class NoSuchSlot(KernelError):
    """The object has no such slot of its own."""

    code = "no_such_slot"


class DoesNotUnderstand(KernelError):
    """No method answers the selector and none could be generated."""

    code = "does_not_understand"


class CovenantViolation(KernelError):
    """The method was refused by the audit; the message names the rule."""

    code = "covenant_violation"


class MethodTrap(KernelError):
    """The method trapped or ran out of fuel, memory or time; nothing it
    wrote was kept."""

    code = "method_trap"


class Forbidden(KernelError):
    """The client's role does not allow the change, or the object or slot
    is the kernel's own."""

    code = "forbidden"


class Overloaded(KernelError):
    """Back-pressure: nothing was done; try again later."""

    code = "overloaded"


class Unavailable(KernelError):
    """The subsystem is not configured or not ready (e.g. no model)."""

    code = "unavailable"


class Internal(KernelError):
    """The kernel failed; nothing of the request was kept."""

    code = "internal"


ERRORS: Dict[str, Type[KernelError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        TooLarge,
        UnsupportedVersion,
        UnknownCommand,
        NoSuchObject,
        NoSuchSlot,
        DoesNotUnderstand,
        CovenantViolation,
        MethodTrap,
        Forbidden,
        Overloaded,
        Unavailable,
        Internal,
    )
}


def error_for(code: str, message: str) -> KernelError:
    """The exception for an error reply."""
    cls = ERRORS.get(code)
    if cls is None:
        return KernelError(message, code)
    return cls(message)
