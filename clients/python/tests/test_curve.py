"""CURVE: the client reaches a kernel that admits only listed keys, with
the key files `batos keys new` writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import zmq

import batos
from conftest import batos_bin


def new_key(directory: Path, name: str) -> Path:
    subprocess.run([batos_bin(), "keys", "new", name, "--dir", str(directory)], check=True, capture_output=True)
    return directory / f"{name}.key"


@pytest.mark.skipif(not zmq.has("curve"), reason="this libzmq has no CURVE")
def test_listed_keys_get_their_role_and_others_no_connection(start_kernel, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    new_key(keys, "kernel")
    alice = new_key(tmp_path, "alice")
    bob = new_key(tmp_path, "bob")
    mallory = new_key(tmp_path, "mallory")
    for role, client in (("admin", alice), ("read", bob)):
        (keys / "clients" / role).mkdir(parents=True)
        (keys / "clients" / role / f"{client.stem}.pub").write_text(client.with_suffix(".pub").read_text())
    kernel = start_kernel(
        "--no-first-conversation",
        env={
            "BATOS_BRIDGE_CURVE_KEY": str(keys / "kernel.key"),
            "BATOS_BRIDGE_CURVE_CLIENTS": str(keys / "clients"),
        },
    )
    server_key = keys / "kernel.pub"

    with batos.connect(kernel.endpoint, server_key=server_key, key=alice) as admin:
        obj = admin.new(owner="alice")
        assert obj.owner == "alice"
    public, secret = batos.keys.key_pair(bob)
    with batos.connect(kernel.endpoint, server_key=batos.keys.public_key(server_key), key=(public, secret)) as reader:
        assert reader.get_slot(obj.oid, "owner") == "alice"
        with pytest.raises(batos.Forbidden):
            reader.set_slot(obj.oid, "owner", "bob")
    with batos.connect(kernel.endpoint, server_key=server_key, key=mallory, timeout=0.5) as unlisted:
        with pytest.raises(batos.Timeout):
            unlisted.ping()
    with batos.connect(kernel.endpoint, timeout=0.5) as plain:
        with pytest.raises(batos.Timeout):
            plain.ping()
    with pytest.raises(ValueError):
        batos.connect(kernel.endpoint, server_key=server_key)
