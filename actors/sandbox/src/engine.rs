//! The engine: one wasmtime `Engine` and one
//! `Linker`, an `InstancePre` cached per module, the pooling allocator, and
//! per call a fresh instance with fuel, an epoch deadline (wall clock) and a
//! memory cap. Compiled modules are cached in the image, so a restart does
//! not recompile.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, Store, StoreLimitsBuilder, Trap,
};

use batos_object::image::Image;
use batos_object::value::Value;

use crate::host::{self, Frame, Guest, Invoke, MethodFault, MethodHost};

/// How often the wall-clock ticker advances the engine's epoch.
const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Limits of every method call.
#[derive(Clone, Debug)]
pub struct SandboxLimits {
    /// Fuel (roughly, wasm instructions) per call.
    pub fuel_per_call: u64,
    /// Linear memory a call may use.
    pub max_memory_bytes: usize,
    /// Wall-clock time for a whole message (all nested calls).
    pub wall_clock_ms: u64,
    /// Deepest chain of nested sends.
    pub max_send_depth: u32,
    /// Instances live at once (pool threads × (depth + 1) is enough).
    pub max_instances: u32,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            fuel_per_call: 50_000_000,
            max_memory_bytes: 16 * 1024 * 1024,
            wall_clock_ms: 2_000,
            max_send_depth: 32,
            max_instances: 256,
        }
    }
}

/// Sandbox metrics.
#[derive(Clone)]
struct SandboxMetrics {
    calls: IntCounterVec,
    duration: Histogram,
    fuel: Histogram,
    modules: IntCounterVec,
}

impl SandboxMetrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = SandboxMetrics {
            calls: IntCounterVec::new(
                Opts::new("batos_sandbox_method_calls_total", "Method calls by outcome (ok, trap)"),
                &["outcome"],
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new("batos_sandbox_method_duration_seconds", "Instantiate + invoke of one method call")
                    .buckets(prometheus::exponential_buckets(0.000_001, 2.0, 24)?),
            )?,
            fuel: Histogram::with_opts(
                HistogramOpts::new("batos_sandbox_fuel_used", "Fuel consumed by one method call")
                    .buckets(prometheus::exponential_buckets(10.0, 4.0, 14)?),
            )?,
            modules: IntCounterVec::new(
                Opts::new(
                    "batos_sandbox_module_loads_total",
                    "Module lookups by source: memory (InstancePre cached), image (compiled module cache hit), compiled",
                ),
                &["source"],
            )?,
        };
        registry.register(Box::new(m.calls.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.fuel.clone()))?;
        registry.register(Box::new(m.modules.clone()))?;
        Ok(m)
    }
}

/// The method sandbox.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<Guest>,
    modules: Mutex<HashMap<String, InstancePre<Guest>>>,
    image: Arc<dyn Image>,
    engine_key: [u8; 8],
    limits: SandboxLimits,
    metrics: SandboxMetrics,
    stop_ticker: Arc<AtomicBool>,
}

impl Sandbox {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn new(
        image: Arc<dyn Image>,
        limits: SandboxLimits,
        registry: &Registry,
    ) -> Result<Sandbox, MethodFault> {
        let fault = |e: wasmtime::Error| MethodFault(format!("starting the sandbox: {e:#}"));
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(limits.max_instances)
            .total_memories(limits.max_instances)
            .total_tables(limits.max_instances)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .table_elements(10_000)
            .max_memory_size(limits.max_memory_bytes);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(256 * 1024)
            .memory_reservation(limits.max_memory_bytes as u64)
            .memory_guard_size(64 * 1024)
            .memory_reservation_for_growth(0)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(fault)?;
        let mut linker = Linker::new(&engine);
        host::define(&mut linker).map_err(fault)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hasher.finish().to_be_bytes();
        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let (engine, stop) = (engine.clone(), stop_ticker.clone());
            std::thread::Builder::new()
                .name("batos-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| MethodFault(format!("starting the epoch ticker: {e}")))?;
        }
        let metrics = SandboxMetrics::new(registry).map_err(|e| MethodFault(e.to_string()))?;
        Ok(Sandbox {
            engine,
            linker,
            modules: Mutex::new(HashMap::new()),
            image,
            engine_key,
            limits,
            metrics,
            stop_ticker,
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    fn cache_key(&self, hash: &str) -> Vec<u8> {
        let mut key = self.engine_key.to_vec();
        key.extend_from_slice(hash.as_bytes());
        key
    }

    /// Compiles an audited module (or loads it from the image's compiled
    /// cache) and keeps it ready to instantiate. Call before installing.
    pub fn prepare(&self, hash: &str, wasm: &[u8]) -> Result<(), MethodFault> {
        if self.modules.lock().contains_key(hash) {
            return Ok(());
        }
        let module = match self.cached_module(hash)? {
            Some(module) => module,
            None => self.compile(hash, wasm)?,
        };
        self.link(hash, &module)
    }

    fn compile(&self, hash: &str, wasm: &[u8]) -> Result<Module, MethodFault> {
        let module = Module::new(&self.engine, wasm)
            .map_err(|e| MethodFault(format!("compiling: {e:#}")))?;
        self.metrics.modules.with_label_values(&["compiled"]).inc();
        match module.serialize() {
            Ok(bytes) => {
                if let Err(err) = self.image.store_compiled(&self.cache_key(hash), &bytes) {
                    tracing::warn!(error = %err, hash, "caching a compiled module failed");
                }
            }
            Err(err) => tracing::warn!(error = %err, hash, "serializing a compiled module failed"),
        }
        Ok(module)
    }

    fn cached_module(&self, hash: &str) -> Result<Option<Module>, MethodFault> {
        let Some(bytes) = self
            .image
            .load_compiled(&self.cache_key(hash))
            .map_err(|e| MethodFault(e.to_string()))?
        else {
            return Ok(None);
        };
        // SAFETY: these bytes were produced by `Module::serialize` of an
        // engine with the same compatibility hash (it is part of the key)
        // and stored in our own image; wasmtime re-checks the header. Anyone
        // able to write the image can already change every object.
        match unsafe { Module::deserialize(&self.engine, &bytes) } {
            Ok(module) => {
                self.metrics.modules.with_label_values(&["image"]).inc();
                Ok(Some(module))
            }
            Err(err) => {
                tracing::warn!(error = %err, hash, "cached module unusable; recompiling");
                Ok(None)
            }
        }
    }

    fn link(&self, hash: &str, module: &Module) -> Result<(), MethodFault> {
        let pre = self
            .linker
            .instantiate_pre(module)
            .map_err(|e| MethodFault(format!("linking: {e:#}")))?;
        self.modules.lock().insert(hash.to_string(), pre);
        Ok(())
    }

    fn instance_pre(&self, hash: &str) -> Result<InstancePre<Guest>, MethodFault> {
        if let Some(pre) = self.modules.lock().get(hash) {
            self.metrics.modules.with_label_values(&["memory"]).inc();
            return Ok(pre.clone());
        }
        let module = match self.cached_module(hash)? {
            Some(module) => module,
            None => {
                let wasm = self
                    .image
                    .load_module(hash)
                    .map_err(|e| MethodFault(e.to_string()))?
                    .ok_or_else(|| {
                        MethodFault(format!("module {hash} is missing from the image"))
                    })?;
                self.compile(hash, &wasm)?
            }
        };
        self.link(hash, &module)?;
        Ok(self.modules.lock().get(hash).cloned().expect("just linked"))
    }

    fn explain(&self, err: wasmtime::Error, frame: &Frame) -> MethodFault {
        if let Some(fault) = err.downcast_ref::<MethodFault>() {
            return fault.clone();
        }
        let what = match err.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => format!(
                "ran out of fuel (limit {} per call)",
                self.limits.fuel_per_call
            ),
            Some(Trap::Interrupt) => format!(
                "exceeded the wall-clock limit ({} ms)",
                self.limits.wall_clock_ms
            ),
            Some(Trap::StackOverflow) => "stack overflow (call depth too deep)".to_string(),
            Some(trap) => format!("trapped: {trap}"),
            None => {
                let text = format!("{err:#}");
                if text.contains("forcing trap when growing memory")
                    || text.contains("memory minimum size")
                {
                    format!(
                        "exceeded the memory limit ({} bytes)",
                        self.limits.max_memory_bytes
                    )
                } else {
                    text
                }
            }
        };
        MethodFault(format!(
            "method {:?} on object {}: {what}",
            frame.selector, frame.self_oid
        ))
    }
}

impl Invoke for Sandbox {
    /// Runs a method: a fresh instance, `invoke`, the value it returned.
    /// `deadline` bounds the whole message; nested sends come back through
    /// `host` and run here again one level deeper.
    fn invoke(
        &self,
        host: &Arc<Mutex<dyn MethodHost>>,
        hash: &str,
        frame: Frame,
        deadline: Instant,
    ) -> Result<Value, MethodFault> {
        if frame.depth > self.limits.max_send_depth {
            return Err(MethodFault(format!(
                "send depth limit ({}) exceeded: runaway recursion stopped",
                self.limits.max_send_depth
            )));
        }
        let started = Instant::now();
        let pre = self.instance_pre(hash)?;
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.max_memory_bytes)
            .table_elements(10_000)
            .instances(1)
            .memories(1)
            .tables(1)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, Guest::new(host.clone(), frame, limits));
        store.limiter(Guest::limits);
        store
            .set_fuel(self.limits.fuel_per_call)
            .map_err(|e| MethodFault(e.to_string()))?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        store.set_epoch_deadline(
            (remaining.as_millis() as u64 / EPOCH_TICK.as_millis() as u64).max(1),
        );
        store.epoch_deadline_trap();
        let outcome = pre
            .instantiate(&mut store)
            .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "invoke"))
            .and_then(|invoke| invoke.call(&mut store, ()));
        let fuel_used = self
            .limits
            .fuel_per_call
            .saturating_sub(store.get_fuel().unwrap_or(0));
        self.metrics.fuel.observe(fuel_used as f64);
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(()) => {
                self.metrics.calls.with_label_values(&["ok"]).inc();
                Ok(store.into_data().into_result().unwrap_or(Value::Nil))
            }
            Err(err) => {
                self.metrics.calls.with_label_values(&["trap"]).inc();
                Err(self.explain(err, store.data().frame()))
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}
