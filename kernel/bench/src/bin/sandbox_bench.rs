//! In-process benchmark of the method sandbox: instantiate + invoke of a
//! trivial method, the cost of one scalar host call, the time to install
//! a method (WAT → audit → compile), and to compile modules of about the
//! audit's size limit. Prints a Markdown table.
//!
//!     cargo run --release -p batos-kernel --bin batos-sandbox-bench [-- ITERATIONS]

use std::sync::Arc;
use std::time::{Duration, Instant};

use batos_object::{Oid, Value};
use batos_sandbox::audit::{audit, wat_to_wasm, AuditLimits};
use batos_sandbox::{
    CacheKey, Invoke, LogBudget, MethodFault, MethodHost, Resolved, Sandbox, SandboxLimits,
};
use batos_store::{RocksImage, StoreOptions};
use parking_lot::Mutex;

/// A host with no transaction behind it: enough for methods that only use
/// arguments, return values and `arg_count`.
struct NullHost {
    sandbox: Arc<Sandbox>,
    log_budget: LogBudget,
}

impl MethodHost for NullHost {
    fn read_slot(&mut self, _oid: Oid, _name: &str) -> Result<Option<Value>, MethodFault> {
        Ok(None)
    }
    fn write_slot(&mut self, _oid: Oid, _name: &str, _value: Value) -> Result<i32, MethodFault> {
        Ok(0)
    }
    fn resolve(
        &mut self,
        _target: Oid,
        _selector: &str,
        _args: &[Value],
    ) -> Result<Resolved, MethodFault> {
        Ok(Resolved::Status(-6))
    }
    fn sandbox(&self) -> Arc<dyn Invoke> {
        self.sandbox.clone()
    }
    fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs(60)
    }
    fn log_budget(&mut self) -> &mut LogBudget {
        &mut self.log_budget
    }
}

const TRIVIAL_PY: &str = "def bench(self):\n    return 1\n";

/// A method of 30 lines, of the kind people write.
const METHOD_30_LINES: &str = r#"def bench(self, amount, items):
    if amount <= 0:
        raise ValueError(f"bad amount {amount}")
    total = 0
    count = 0
    names = []
    for item in items:
        if item["price"] > 1000:
            continue
        total += item["price"] * item.get("qty", 1)
        count += 1
        names.append(item["name"].upper())
    while total > amount:
        total = total - 10
        if total < 0:
            break
    summary = {"total": total, "count": count}
    summary["names"] = sorted(names)
    if count == 0:
        summary["average"] = 0
    else:
        summary["average"] = round(total / count, 2)
    label = "none"
    if total > 500:
        label = "large"
    elif total > 50:
        label = "medium"
    self.last = summary
    self.label = label
    return [summary, label, len(names)]
"#;

const TRIVIAL: &str = r#"(module (import "uvm" "return_i64" (func $r (param i64)))
  (memory (export "memory") 1) (func (export "invoke") (call $r (i64.const 1))))"#;

fn host_loop(calls: bool) -> String {
    let body = if calls {
        "(drop (call $n))"
    } else {
        "(drop (local.get $i))"
    };
    format!(
        r#"(module (import "uvm" "arg_count" (func $n (result i32)))
  (memory (export "memory") 1)
  (func (export "invoke") (local $i i32)
    (loop $l {body}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 100000))))))"#
    )
}

/// A module of `functions` functions of about `bytes` of code each, besides
/// `invoke`: straight-line additions to one local, or (`live`) additions
/// among 2,000 locals that all stay live, the register allocator's worst
/// case. `seed` changes a constant, so each module is a new compile.
fn heavy_module(functions: usize, bytes: usize, live: bool, seed: u64) -> String {
    let mut wat = String::from(
        r#"(module (import "uvm" "return_i64" (func $r (param i64)))
  (memory (export "memory") 1) (func (export "invoke") (call $r (i64.const 1)))"#,
    );
    const LOCALS: usize = 2_000;
    for f in 0..functions {
        wat.push_str(&format!("\n(func $f{f} (result i64)"));
        if live {
            for l in 0..LOCALS {
                wat.push_str(&format!(" (local $l{l} i64)"));
            }
            // About 9 bytes of code per statement.
            for i in 0..bytes / 9 {
                let (a, b) = (i % LOCALS, (i * 7 + 1) % LOCALS);
                wat.push_str(&format!(
                    " (local.set $l{a} (i64.add (local.get $l{a}) (local.get $l{b})))"
                ));
            }
            wat.push_str(" (local.get $l0)");
            for l in 1..LOCALS {
                wat.push_str(&format!(" (local.get $l{l}) (i64.add)"));
            }
        } else {
            wat.push_str(" (local $a i64)");
            for _ in 0..bytes / 8 {
                wat.push_str(&format!(
                    " (local.set $a (i64.add (local.get $a) (i64.const {seed})))"
                ));
            }
            wat.push_str(" (local.get $a)");
        }
        wat.push_str(&format!(" (i64.add (i64.const {seed})))"));
    }
    wat.push(')');
    wat
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn measure(iterations: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..iterations / 10 {
        f();
    }
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("batos-sandbox-bench-{}", std::process::id()));
    let image = Arc::new(
        RocksImage::open(
            &dir,
            &StoreOptions {
                block_cache_bytes: 8 << 20,
                keep_snapshots: 1,
            },
        )
        .expect("image"),
    );
    let registry = prometheus::Registry::new();
    let sandbox = Arc::new(
        Sandbox::new(
            image,
            SandboxLimits::default(),
            CacheKey::new([7; 32]),
            &registry,
        )
        .expect("sandbox"),
    );
    let host: Arc<Mutex<dyn MethodHost>> = Arc::new(Mutex::new(NullHost {
        sandbox: sandbox.clone(),
        log_budget: LogBudget::default(),
    }));
    let install = |wat: &str| {
        let wasm = wat_to_wasm(wat).expect("wat");
        audit(&wasm, &AuditLimits::default()).expect("audit");
        let hash = batos_sandbox::module_hash(&wasm);
        sandbox.prepare(&hash, &wasm).expect("prepare");
        hash
    };
    let call = |hash: &str| {
        let frame = batos_sandbox::frame(1, "bench", Vec::new(), 0);
        sandbox
            .invoke(&host, hash, frame, Instant::now() + Duration::from_secs(60))
            .expect("invoke")
    };

    let trivial = install(TRIVIAL);
    let (invoke_p50, invoke_p99) = measure(iterations, || {
        call(&trivial);
    });
    // The same method in Python: compiled by the kernel's compiler.
    let install_wasm = |wasm: &[u8]| {
        audit(wasm, &AuditLimits::default()).expect("audit");
        let hash = batos_sandbox::module_hash(wasm);
        sandbox.prepare(&hash, wasm).expect("prepare");
        hash
    };
    let trivial_py = install_wasm(&batos_python::compile(TRIVIAL_PY).expect("python").wasm);
    let (py_invoke_p50, py_invoke_p99) = measure(iterations, || {
        call(&trivial_py);
    });
    // Compiling a 30-line method: parse, generate, audit, compile to
    // native code (a new constant each time, so a real compile).
    let mut m = 0u64;
    let (py_compile_p50, py_compile_p99) = measure(200, || {
        m += 1;
        let source = METHOD_30_LINES.replace("1000", &m.to_string());
        install_wasm(&batos_python::compile(&source).expect("python").wasm);
    });

    let with_calls = install(&host_loop(true));
    let without = install(&host_loop(false));
    let runs = 50;
    let (loop_calls, _) = measure(runs, || {
        call(&with_calls);
    });
    let (loop_plain, _) = measure(runs, || {
        call(&without);
    });
    let per_call = loop_calls.saturating_sub(loop_plain).as_nanos() as f64 / 100_000.0;

    let mut n = 0u64;
    let (install_p50, install_p99) = measure(200, || {
        n += 1;
        // A different constant each time: a new hash, so a real compile.
        install(&TRIVIAL.replace("(i64.const 1)", &format!("(i64.const {n})")));
    });

    // Compile time of modules of about the audit's module size: one big
    // function (which `max_function_bytes` now refuses), and the same code
    // split into functions the audit allows.
    let mut seed = 1_000u64;
    let limits = AuditLimits {
        max_module_bytes: 2 << 20,
        max_function_bytes: usize::MAX,
        ..AuditLimits::default()
    };
    let mut compile = |functions: usize, bytes: usize, live: bool| {
        seed += 1;
        let wasm = wat_to_wasm(&heavy_module(functions, bytes, live, seed)).expect("wat");
        audit(&wasm, &limits).expect("audit");
        let hash = batos_sandbox::module_hash(&wasm);
        let t = Instant::now();
        sandbox.prepare(&hash, &wasm).expect("prepare");
        (wasm.len(), t.elapsed())
    };
    let shapes = [
        ("1 function, straight-line", 1, 900 << 10, false),
        ("7 functions of 128 KiB, straight-line", 7, 128 << 10, false),
        ("1 function, 2,000 live locals", 1, 900 << 10, true),
        (
            "7 functions of 128 KiB, 2,000 live locals",
            7,
            128 << 10,
            true,
        ),
    ];
    let compiles: Vec<(&str, usize, Duration)> = shapes
        .iter()
        .map(|&(what, functions, bytes, live)| {
            let (size, took) = compile(functions, bytes, live);
            (what, size, took)
        })
        .collect();

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "Machine: {} cores, {cpu}\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("| measurement | p50 | p99 | target |");
    println!("|---|---|---|---|");
    println!("| instantiate + invoke, trivial method ({iterations} calls) | {:.2} µs | {:.2} µs | ≤ 10 µs p50 |", us(invoke_p50), us(invoke_p99));
    println!("| one scalar host call (`arg_count`, from a 100k-call loop minus the same loop without it) | {per_call:.1} ns | | ≤ 50 ns |");
    println!("| install: WAT → audit → compile (+ compiled-module cache write) | {:.0} µs | {:.0} µs | |", us(install_p50), us(install_p99));
    println!("| instantiate + invoke, trivial method in Python ({iterations} calls) | {:.2} µs | {:.2} µs | ≤ 2× the WAT one |", us(py_invoke_p50), us(py_invoke_p99));
    println!("| install: a 30-line Python method → compile → audit → native code | {:.0} µs | {:.0} µs | ≤ 5 ms p50 |", us(py_compile_p50), us(py_compile_p99));
    for (what, size, took) in compiles {
        println!(
            "| compile: {what} ({} KiB module) | {:.0} ms | | |",
            size / 1024,
            took.as_secs_f64() * 1000.0
        );
    }
    drop(sandbox);
    let _ = std::fs::remove_dir_all(&dir);
}

fn us(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}
