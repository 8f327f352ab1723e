"""The sync client against the real kernel: commands, proxies, values,
errors, pipelining."""

from __future__ import annotations

import math
import socket

import pytest

import batos
from batos.errors import ERRORS

COUNTER = """
(module
  (import "uvm" "slot_i64" (func $slot_i64 (param i32 i32 i32) (result i32)))
  (import "uvm" "set_slot_i64" (func $set_slot_i64 (param i32 i32 i64) (result i32)))
  (import "uvm" "return_i64" (func $return_i64 (param i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "count")
  (func (export "invoke")
    (local $n i64)
    (if (i32.eqz (call $slot_i64 (i32.const 0) (i32.const 5) (i32.const 16)))
      (then (local.set $n (i64.load (i32.const 16)))))
    (local.set $n (i64.add (local.get $n) (i64.const {step})))
    (drop (call $set_slot_i64 (i32.const 0) (i32.const 5) (local.get $n)))
    (call $return_i64 (local.get $n))))
"""

ADD = """
(module
  (import "uvm" "arg_count" (func $arg_count (result i32)))
  (import "uvm" "arg_i64" (func $arg_i64 (param i32 i32) (result i32)))
  (import "uvm" "return_i64" (func $return_i64 (param i64)))
  (memory (export "memory") 1)
  (func (export "invoke")
    (if (i32.ne (call $arg_count) (i32.const 2)) (then unreachable))
    (drop (call $arg_i64 (i32.const 0) (i32.const 0)))
    (drop (call $arg_i64 (i32.const 1) (i32.const 8)))
    (call $return_i64 (i64.add (i64.load (i32.const 0)) (i64.load (i32.const 8))))))
"""

WRITE_THEN_TRAP = """
(module
  (import "uvm" "set_slot_i64" (func $set_slot_i64 (param i32 i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "count")
  (func (export "invoke")
    (drop (call $set_slot_i64 (i32.const 0) (i32.const 5) (i64.const 999)))
    unreachable))
"""


def test_ping_and_the_image_roots(kernel: batos.Kernel) -> None:
    pong = kernel.ping()
    assert pong["protocol"] == batos.PROTOCOL_VERSION == 1
    assert pong["objects"] >= 6
    roots = kernel.state()["roots"]
    assert {"traits_obj", "genesis_obj", "pLLM_obj"} <= set(roots)
    assert kernel.root("traits_obj").oid == roots["traits_obj"]
    with pytest.raises(KeyError):
        kernel.root("no_such_root")


def test_an_object_reads_and_writes_as_python_attributes(kernel: batos.Kernel) -> None:
    ada = kernel.new(name="ada")
    assert isinstance(ada, batos.Object)
    ada.age = 36
    assert (ada.name, ada.age) == ("ada", 36)
    assert ada["age"] == 36
    assert kernel.get_slot(ada.oid, "age") == 36
    ada.age += 1
    assert ada.age == 37
    del ada.age
    with pytest.raises(batos.NoSuchSlot):
        ada["age"]
    assert ada.state()["slots"]["name"] == "ada"


def test_reads_delegate_along_parents_and_parents_are_proxies(kernel: batos.Kernel) -> None:
    base = kernel.new(kind="base", legs=4)
    other = kernel.new(colour="grey")
    dog = kernel.create_object({"parent*": [base, other], "name": "rex"})
    assert dog.parent == base
    assert dog.parents == [base, other]
    assert (dog.legs, dog.colour, dog.name) == (4, "grey", "rex")
    # an own slot shadows the parent's; the parent's stays
    dog.legs = 3
    assert (dog.legs, base.legs) == (3, 4)
    # a data slot reached by delegation is exactly what `send` answers
    assert dog.kind == kernel.send(dog, "kind") == "base"
    dog.parent = other
    assert dog["parent*"] == other
    with pytest.raises(batos.NoSuchSlot):
        dog["kind"]
    assert isinstance(dog.kind, batos.Method)  # found nowhere now: a message


def test_parent_cycles_end_the_lookup(kernel: batos.Kernel) -> None:
    a = kernel.new()
    b = kernel.create_object({"parent*": a})
    a.parents = [b]
    assert isinstance(a.nowhere, batos.Method)
    assert a.nowhere.slot is None


def test_values_round_trip_exactly(kernel: batos.Kernel) -> None:
    target = kernel.new()
    box = kernel.new()
    values = [
        None,
        True,
        False,
        0,
        -(2**63),
        2**64 - 1,
        1.5,
        -0.0,
        math.inf,
        "héllo ✓",
        b"\x00\xffbytes",
        [1, [2, [3]], {"k": "v"}],
        {"nested": {"list": [1.25, None, "x"]}},
        target,
        [target, {"ref": target}],
    ]
    for value in values:
        box.value = value
        got = box.value
        assert got == value and type(got) is type(value), (value, got)
    box.value = -0.0
    assert math.copysign(1.0, box.value) == -1.0
    box.value = math.nan
    assert math.isnan(box.value)
    box.value = (1, 2)
    assert box.value == [1, 2]
    box.value = batos.Ref(target.oid)
    assert box.value == target
    with pytest.raises(TypeError):
        box.value = {1: "int keys are not values"}
    with pytest.raises(TypeError):
        box.value = object()


def test_messages_sends_and_the_selector_rule(kernel: batos.Kernel) -> None:
    obj = kernel.new()
    # a primitive on traits_obj, found by lookup: a method, called as is
    method = obj.setSlot_value_
    assert isinstance(method, batos.Method) and method.slot is not None
    assert method.slot.version == 0 and method.slot.hash == "primitive"
    assert obj.setSlot_value_("mood", "curious") is None
    assert obj.mood == "curious"
    # a name found nowhere, called with an argument, sends `name_`: the
    # synthesis tier writes the setter and the send is answered
    sent = kernel.send_full(obj, "setColour_", "red")
    assert sent.generated is True
    assert obj.colour == "red"
    assert obj.setColour("blue") is None  # sends setColour_ (installed now)
    assert obj.colour == "blue"
    assert batos.selector_for("deposit", 1) == "deposit_"
    assert batos.selector_for("at_put", 2) == "at_put_"
    assert batos.selector_for("at_put_", 2) == "at_put_"
    assert batos.selector_for("area", 0) == "area"
    with pytest.raises(batos.DoesNotUnderstand):
        obj.frobnicate()


def test_methods_install_run_roll_back_and_trap_keeping_nothing(kernel: batos.Kernel) -> None:
    counter = kernel.new()
    first = counter.define("increment", wat=COUNTER.replace("{step}", "1"))
    assert (first.selector, first.version, len(first.hash)) == ("increment", 1, 64)
    assert [counter.increment(), counter.increment()] == [1, 2]
    second = kernel.create_method(counter, "increment", wat=COUNTER.replace("{step}", "10"))
    assert second.version == 2
    assert counter.increment() == 12
    assert kernel.rollback_method(counter, "increment", 1) is None
    assert counter.increment() == 13
    versions = counter.state()["methods"]["increment"]
    assert [v["version"] for v in versions] == [1, 2]
    assert isinstance(counter["increment"], batos.MethodSlot)

    counter.define("add", wat=ADD)
    assert counter.add(40, 2) == 42  # `add` is found, so it is sent as is
    with pytest.raises(batos.MethodTrap):
        counter.add(1)

    counter.define("explode", wat=WRITE_THEN_TRAP)
    with pytest.raises(batos.MethodTrap):
        counter.explode()
    assert counter.count == 13  # the trapped method's write was not kept

    with pytest.raises(batos.CovenantViolation) as refused:
        counter.define("broken", wat="(module (func")
    assert "wat-syntax" in refused.value.message
    with pytest.raises(TypeError):
        kernel.create_method(counter, "neither")


def test_every_error_code_has_its_class(kernel: batos.Kernel) -> None:
    codes = {
        "bad_request", "too_large", "unsupported_version", "unknown_command",
        "no_such_object", "no_such_slot", "does_not_understand",
        "covenant_violation", "method_trap", "forbidden", "overloaded",
        "unavailable", "internal",
    }
    assert set(ERRORS) == codes
    assert len(set(ERRORS.values())) == len(codes)
    for code, cls in ERRORS.items():
        error = batos.errors.error_for(code, "why")
        assert type(error) is cls and error.code == code and str(error) == f"{code}: why"
        assert isinstance(error, batos.KernelError)
    newer = batos.errors.error_for("from_the_future", "why")
    assert type(newer) is batos.KernelError and newer.code == "from_the_future"


def test_the_kernel_errors_arrive_as_their_classes(kernel: batos.Kernel) -> None:
    obj = kernel.new(width=3)
    with pytest.raises(batos.NoSuchObject):
        kernel.object(10**15).state()
    with pytest.raises(batos.NoSuchSlot):
        kernel.get_slot(obj, "height")
    with pytest.raises(batos.BadRequest):
        kernel.send(obj, "width", 1)  # a data slot sent arguments
    with pytest.raises(batos.UnknownCommand):
        kernel._request("no_such_command", {}, lambda r: r)
    with pytest.raises(batos.Forbidden):
        kernel.set_slot("pLLM_obj", "mine", 1)
    with pytest.raises(batos.Unavailable):
        kernel.infer("hello")  # no model configured
    with pytest.raises(batos.BadRequest):
        kernel.search_memory("")
    # the connection goes on after errors
    assert obj.width == 3


def test_a_pipeline_keeps_order_per_object_and_each_reply_in_its_place(kernel: batos.Kernel) -> None:
    obj = kernel.new()
    with kernel.pipeline(window=64) as p:
        writes = [p.set_slot(obj, "n", i) for i in range(1000)]
        bad = p.get_slot(obj, "missing")
        read = p.send(obj, "n")
        spread = [p.set_slot(obj, f"k{i}", i) for i in range(300)]
    assert all(w.done and w.result() is None for w in writes + spread)
    assert read.result() == 999
    assert isinstance(bad.exception(), batos.NoSuchSlot)
    with pytest.raises(batos.NoSuchSlot):
        bad.result()
    assert kernel.get_slot(obj, "k299") == 299
    with pytest.raises(ValueError):
        kernel.pipeline(window=0)


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_kernel_is_a_timeout_not_a_hang() -> None:
    with batos.connect(f"tcp://127.0.0.1:{_unused_port()}", timeout=0.3) as nobody:
        with pytest.raises(batos.Timeout):
            nobody.ping()
        with pytest.raises(TimeoutError):  # the stdlib's, too
            nobody.ping()


def test_methods_in_python_install_from_functions_and_run(kernel: batos.Kernel) -> None:
    account = kernel.new(balance=10, history=[])

    @kernel.method(account)
    def deposit(self, amount):
        if amount <= 0:
            raise ValueError(f"bad amount {amount}")
        self.balance = self.balance + amount
        self.history.append(amount)
        return self.balance

    assert deposit.__name__ == "deposit"  # returned unchanged
    assert account.deposit(5) == 15
    assert account.history == [5]
    with pytest.raises(batos.MethodTrap) as trap:
        account.deposit(-1)
    assert trap.value.message == "ValueError: bad amount -1"
    assert account.balance == 15
    source = account.state()["methods"]["deposit_"][0]["source"]
    assert source["language"] == "python" and source["text"].startswith("def deposit(self, amount):")

    account.define("total", python="def total(self):\n    return sum(self.history)\n")
    assert account.total() == 5
    with pytest.raises(batos.CovenantViolation) as refused:

        @kernel.method(account)
        def sneaky(self):
            import os  # noqa: F401

    assert "import" in refused.value.message and "line 2" in refused.value.message
    with pytest.raises(TypeError):
        kernel.create_method(account, "x", python="def x(self):\n    pass\n", wat="(module)")
