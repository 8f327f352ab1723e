"""CURVE keys, as ``batos keys new NAME`` writes them.

A key pair file (``NAME.key``) holds ``public = "Z85"`` and ``secret =
"Z85"`` lines, a public key file (``NAME.pub``) the public line only; a
line starting with ``#`` is a comment. A key given as a string of 40 characters is taken as the
Z85 key itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import zmq

KeyLike = Union[str, "os.PathLike[str]"]
PairLike = Union[KeyLike, Tuple[str, str]]

Z85_KEY_LENGTH = 40


def _field(path: str, name: str) -> Optional[str]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("#"):  # only whole lines: Z85 has '#' and '='
                continue
            key, sep, value = line.partition("=")
            if sep and key.strip() == name:
                value = value.strip().strip('"')
                if len(value) != Z85_KEY_LENGTH:
                    raise ValueError(f"{path}: {name} is not a Z85 CURVE key (40 characters)")
                return value
    return None


def _required(path: str, name: str) -> str:
    value = _field(path, name)
    if value is None:
        raise ValueError(f"key file {path} has no {name} key")
    return value


def public_key(key: KeyLike) -> str:
    """A public key: Z85 text, or the ``public`` line of a key file."""
    if isinstance(key, str) and len(key) == Z85_KEY_LENGTH and not os.path.exists(key):
        return key
    return _required(os.fspath(key), "public")


def key_pair(key: PairLike) -> Tuple[str, str]:
    """A key pair: ``(public, secret)`` in Z85, or a ``NAME.key`` file."""
    if isinstance(key, tuple):
        public, secret = key
        return public, secret
    path = os.fspath(key)
    return _required(path, "public"), _required(path, "secret")


@dataclass(frozen=True)
class Curve:
    """What a client needs to reach a CURVE kernel: the kernel's public key
    and the client's own pair."""

    server_key: str
    public: str
    secret: str

    @classmethod
    def of(cls, server_key: Optional[KeyLike], key: Optional[PairLike]) -> Optional["Curve"]:
        """From the client constructors' ``server_key``/``key`` arguments
        (both or neither)."""
        if server_key is None and key is None:
            return None
        if server_key is None or key is None:
            raise ValueError("CURVE needs both server_key (the kernel's public key) and key (yours)")
        public, secret = key_pair(key)
        return cls(public_key(server_key), public, secret)

    def apply(self, socket: zmq.Socket) -> None:
        """Makes ``socket`` (not yet connected) a CURVE client."""
        if not zmq.has("curve"):
            raise RuntimeError("this libzmq has no CURVE support")
        socket.curve_serverkey = self.server_key.encode()
        socket.curve_publickey = self.public.encode()
        socket.curve_secretkey = self.secret.encode()
