"""The asyncio client against the real kernel."""

from __future__ import annotations

import asyncio

import pytest

import batos
import batos.aio


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def test_commands_and_proxies_are_awaited(kernel_process) -> None:
    async def main() -> None:
        async with batos.aio.connect(kernel_process.endpoint) as kernel:
            assert (await kernel.ping())["protocol"] == 1
            base = await kernel.new(legs=4)
            dog = await kernel.create_object({"parent*": base, "name": "rex"})
            assert isinstance(dog, batos.AsyncObject)
            assert await dog.name == "rex"
            assert await dog.legs == 4  # delegated
            await dog.set("legs", 3)
            assert (await dog.legs, await dog.get("legs"), await base.legs) == (3, 3, 4)
            with pytest.raises(TypeError):
                dog.legs = 5
            assert await dog.setSlot_value_("mood", "calm") is None
            assert await dog.mood == "calm"
            assert await dog.setColour("red") is None  # synthesized setColour_
            assert await dog.colour == "red"
            await dog.remove("colour")
            with pytest.raises(batos.NoSuchSlot):
                await dog.get("colour")
            with pytest.raises(batos.DoesNotUnderstand):
                await dog.frobnicate()
            assert (await kernel.root("genesis_obj")).oid == (await kernel.state())["roots"]["genesis_obj"]

    run(main())


def test_concurrent_commands_pipeline_and_keep_order_per_object(kernel_process) -> None:
    async def main() -> None:
        async with batos.aio.connect(kernel_process.endpoint, max_inflight=32) as kernel:
            obj = await kernel.new()
            # gather starts every coroutine in order, so the writes are sent in order
            results = await asyncio.gather(
                *(kernel.set_slot(obj, "n", i) for i in range(1000)),
                kernel.get_slot(obj, "missing"),
                return_exceptions=True,
            )
            assert results[:1000] == [None] * 1000
            assert isinstance(results[1000], batos.NoSuchSlot)
            assert await kernel.get_slot(obj, "n") == 999

    run(main())


def test_a_timeout_fails_only_its_own_request(kernel_process) -> None:
    async def main() -> None:
        async with batos.aio.connect("tcp://127.0.0.1:9", timeout=0.2) as nobody:
            with pytest.raises(batos.Timeout):
                await nobody.ping()
        async with batos.aio.connect(kernel_process.endpoint) as kernel:
            assert (await kernel.ping())["protocol"] == 1

    run(main())
