//! The scenarios: operations, durability, in-flight depth and their targets.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    Buffered,
    Sync,
}

impl Durability {
    pub(crate) fn flag(self) -> &'static str {
        match self {
            Durability::Buffered => "buffered",
            Durability::Sync => "sync",
        }
    }

    /// The Redis AOF policy that matches this durability.
    pub(crate) fn redis_fsync(self) -> &'static str {
        match self {
            Durability::Buffered => "everysec",
            Durability::Sync => "always",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// A bare ZeroMQ ROUTER on one thread of this process answering each
    /// request with an empty ok: the floor of any ZeroMQ server, no kernel.
    ZmqFloor,
    /// `ping`: the bridge alone (ZeroMQ, decode, encode), no object.
    Ping,
    SetSlot(Durability),
    GetSlot,
    Send {
        depth: usize,
    },
    CreateObject,
    /// `send increment`: a counter method inherited from a shared parent,
    /// written in WAT (`false`) or in Python (`true`).
    Counter {
        python: bool,
    },
    /// `ping` while another connection keeps four bodies of 1,000,000
    /// values in flight: what one client's large bodies cost everyone else.
    PingBesideLargeBodies,
}

impl Op {
    pub(crate) fn durability(self) -> Durability {
        match self {
            Op::SetSlot(d) => d,
            _ => Durability::Buffered,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    pub(crate) name: String,
    pub(crate) group: &'static str,
    pub(crate) label: String,
    pub(crate) op: Op,
    pub(crate) in_flight: usize,
    /// The kernel has CURVE keys and the client authenticates.
    pub(crate) curve: bool,
}

/// The counter in Python.
pub(crate) const COUNTER_PY: &str =
    "def increment(self):\n    self.count = self.count + 1\n    return self.count\n";

/// The counter method of docs/method-abi.md.
pub(crate) const COUNTER_WAT: &str = r#"(module
  (import "uvm" "slot_i64" (func $slot_i64 (param i32 i32 i32) (result i32)))
  (import "uvm" "set_slot_i64" (func $set_slot_i64 (param i32 i32 i64) (result i32)))
  (import "uvm" "return_i64" (func $return_i64 (param i64)))
  (memory (export "memory") 1)
  (data (i32.const 0) "count")
  (func (export "invoke")
    (local $n i64)
    (if (i32.eqz (call $slot_i64 (i32.const 0) (i32.const 5) (i32.const 16)))
      (then (local.set $n (i64.load (i32.const 16)))))
    (local.set $n (i64.add (local.get $n) (i64.const 1)))
    (drop (call $set_slot_i64 (i32.const 0) (i32.const 5) (local.get $n)))
    (call $return_i64 (local.get $n))))"#;

pub(crate) fn scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    for k in [1, 64] {
        out.push(Scenario {
            name: format!("zmq_floor_{k}"),
            group: "ping",
            label: format!("bare ZeroMQ ROUTER (no kernel), {k} in flight"),
            op: Op::ZmqFloor,
            in_flight: k,
            curve: false,
        });
        out.push(Scenario {
            name: format!("ping_{k}"),
            group: "ping",
            label: format!("`ping` (the bridge alone), {k} in flight"),
            op: Op::Ping,
            in_flight: k,
            curve: false,
        });
    }
    for d in [Durability::Buffered, Durability::Sync] {
        for k in [1, 64] {
            out.push(Scenario {
                name: format!("set_slot_{}_{k}", d.flag()),
                group: "set_slot",
                label: format!("`set_slot` {}, {k} in flight", d.flag()),
                op: Op::SetSlot(d),
                in_flight: k,
                curve: false,
            });
        }
    }
    for k in [1, 64] {
        out.push(Scenario {
            name: format!("set_slot_buffered_curve_{k}"),
            group: "curve",
            label: format!("`set_slot` buffered over CURVE, {k} in flight"),
            op: Op::SetSlot(Durability::Buffered),
            in_flight: k,
            curve: true,
        });
    }
    for k in [1, 64] {
        out.push(Scenario {
            name: format!("get_slot_{k}"),
            group: "get_slot",
            label: format!("`get_slot`, {k} in flight"),
            op: Op::GetSlot,
            in_flight: k,
            curve: false,
        });
    }
    for depth in [1, 4, 16] {
        for k in [1, 64] {
            out.push(Scenario {
                name: format!("send_depth_{depth}_{k}"),
                group: "send",
                label: format!("`send` data slot, delegation depth {depth}, {k} in flight"),
                op: Op::Send { depth },
                in_flight: k,
                curve: false,
            });
        }
    }
    for k in [1, 64] {
        out.push(Scenario {
            name: format!("method_counter_{k}"),
            group: "method",
            label: format!("`send` of a WASM counter method (buffered), {k} in flight"),
            op: Op::Counter { python: false },
            in_flight: k,
            curve: false,
        });
        out.push(Scenario {
            name: format!("method_counter_python_{k}"),
            group: "method",
            label: format!("`send` of the counter written in Python (buffered), {k} in flight"),
            op: Op::Counter { python: true },
            in_flight: k,
            curve: false,
        });
    }
    out.push(Scenario {
        name: "ping_1_beside_large_bodies".to_string(),
        group: "large",
        label: "`ping`, 1 in flight, while another connection sends bodies of 1M values"
            .to_string(),
        op: Op::PingBesideLargeBodies,
        in_flight: 1,
        curve: false,
    });
    for k in [1, 64] {
        out.push(Scenario {
            name: format!("create_object_{k}"),
            group: "create_object",
            label: format!("`create_object`, {k} in flight"),
            op: Op::CreateObject,
            in_flight: k,
            curve: false,
        });
    }
    out
}

/// What a row is held to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    /// ops/s at least this fraction of Redis's in the same run.
    RedisRatio(f64),
    /// p50 latency at most this many microseconds.
    P50AtMostUs(f64),
    /// ops/s and p50 within this fraction of the depth-1 row with the same in-flight count.
    WithinOfDepth1(f64),
}

pub(crate) fn target_for(sc: &Scenario) -> Option<Target> {
    if sc.curve {
        return None;
    }
    match (sc.op, sc.in_flight) {
        (Op::SetSlot(Durability::Buffered), 64) => Some(Target::RedisRatio(0.5)),
        (Op::SetSlot(Durability::Sync), 64) => Some(Target::RedisRatio(0.8)),
        (Op::SetSlot(Durability::Buffered), 1) => Some(Target::P50AtMostUs(100.0)),
        (Op::Send { depth: 16 }, _) => Some(Target::WithinOfDepth1(0.2)),
        _ => None,
    }
}
