"""Event subscriptions against the real kernel."""

from __future__ import annotations

import asyncio

import msgpack

import batos
import batos.aio

#: Bounds the writes made while waiting for a subscription to connect.
MAX_PRIMING_WRITES = 2000


def _first_event(kernel: batos.Kernel, sub: batos.Subscription, obj: batos.Object) -> batos.Event:
    """A SUB socket receives only what is published after it connected, and
    nothing says when that is: write until an event about the writes arrives."""
    for i in range(MAX_PRIMING_WRITES):
        obj.prime = i
        try:
            return sub.recv(timeout=0.05)
        except batos.Timeout:
            continue
    raise AssertionError("no event arrived")


def test_state_updates_arrive_in_commit_order_with_values_decoded(kernel: batos.Kernel) -> None:
    obj = kernel.new()
    other = kernel.new()
    with kernel.subscribe("uvm_state_update") as sub:
        first = _first_event(kernel, sub, obj)
        assert first.topic == "uvm_state_update" and first["oid"] == obj.oid
        obj.friend = other
        obj.tags = ["a", "b"]
        del obj.prime
        events = []
        while len(events) < 3:
            event = sub.recv(timeout=10)
            if "prime" not in event["changed"]:  # not a late priming write
                events.append(event)
        # The subscription is an iterator too.
        obj.tail = "end"
        last = next(e for e in sub if "tail" in e["changed"])
        assert last["changed"] == {"tail": "end"} and last["oid"] == obj.oid
    friend, tags, removed = events
    assert friend["changed"] == {"friend": other}
    assert tags["changed"] == {"tags": ["a", "b"]}
    assert removed["removed"] == ["prime"]
    assert friend["tx"] < tags["tx"] < removed["tx"]
    assert [e["seq"] for e in events] == [friend["seq"] + i for i in range(3)]
    assert all(e.missed == 0 for e in events)


def test_gaps_in_seq_count_as_missed() -> None:
    decoder = batos.events._Decoder(lambda oid: oid)

    def frames(seq):
        return [b"uvm_state_update", msgpack.packb({"event": "uvm_state_update", "seq": seq})]

    assert [decoder.decode(frames(s)).missed for s in (1, 2, 5, 6)] == [0, 0, 2, 0]


def test_async_subscription_iterates(kernel_process) -> None:
    async def main() -> None:
        async with batos.aio.connect(kernel_process.endpoint, events=kernel_process.events) as kernel:
            obj = await kernel.new()
            async with kernel.subscribe() as sub:
                for i in range(MAX_PRIMING_WRITES):
                    await obj.set("prime", i)
                    try:
                        event = await sub.recv(timeout=0.05)
                        break
                    except batos.Timeout:
                        continue
                else:
                    raise AssertionError("no event arrived")
                assert event["oid"] == obj.oid
                await obj.set("last", "yes")
                async for event in sub:
                    if "last" in event["changed"]:
                        assert event["changed"]["last"] == "yes"
                        break

    asyncio.run(asyncio.wait_for(main(), 60))
