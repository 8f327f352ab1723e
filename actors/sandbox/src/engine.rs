//! The engine: one wasmtime `Engine` and one
//! `Linker`, an `InstancePre` cached per module, the pooling allocator, and
//! per call a fresh instance with fuel, an epoch deadline (wall clock) and a
//! memory cap. Compiled modules are cached in the image, so a restart does
//! not recompile.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use sha2::Sha256;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, Store, StoreLimitsBuilder, Trap,
};

use batos_object::image::Image;
use batos_object::value::Value;

use crate::host::{self, Frame, Guest, Invoke, MethodFault, MethodHost};
use crate::host_py;

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
    /// Compiled modules kept linked in memory; past this the longest
    /// loaded is let go (a later call loads it again from the image's
    /// compiled cache).
    pub max_loaded_modules: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            fuel_per_call: 50_000_000,
            max_memory_bytes: 16 * 1024 * 1024,
            wall_clock_ms: 2_000,
            max_send_depth: 32,
            max_instances: 256,
            max_loaded_modules: 4096,
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
    compile: Histogram,
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
                    "Module lookups by source: memory (InstancePre cached), image (compiled module cache hit), \
                     compiled, rejected (a cached module whose seal did not verify: recompiled)",
                ),
                &["source"],
            )?,
            compile: Histogram::with_opts(
                HistogramOpts::new(
                    "batos_sandbox_compile_seconds",
                    "Compiling one audited module to native code",
                )
                .buckets(prometheus::exponential_buckets(0.000_1, 2.0, 16)?),
            )?,
        };
        // Known label values start at zero, so dashboards have the series.
        for outcome in ["ok", "trap"] {
            m.calls.with_label_values(&[outcome]);
        }
        for source in ["memory", "image", "compiled", "rejected"] {
            m.modules.with_label_values(&[source]);
        }
        registry.register(Box::new(m.compile.clone()))?;
        registry.register(Box::new(m.calls.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.fuel.clone()))?;
        registry.register(Box::new(m.modules.clone()))?;
        Ok(m)
    }
}

/// The key that seals compiled modules in the image's cache (HMAC-SHA256):
/// a module is deserialized (native code) only if this kernel sealed it.
/// Kept outside the image, so a copied, restored or planted image carries
/// no module the kernel will load without compiling it again.
#[derive(Clone)]
pub struct CacheKey([u8; 32]);

/// Bytes of the MAC in front of each sealed module.
const TAG_BYTES: usize = 32;

impl CacheKey {
    /// A key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> CacheKey {
        CacheKey(bytes)
    }

    fn mac(&self, key: &[u8], bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any size");
        mac.update(&(key.len() as u64).to_be_bytes());
        mac.update(key);
        mac.update(bytes);
        mac
    }

    /// `bytes` with the MAC over (`key`, `bytes`) in front.
    fn seal(&self, key: &[u8], bytes: &[u8]) -> Vec<u8> {
        let tag = self.mac(key, bytes).finalize().into_bytes();
        let mut sealed = Vec::with_capacity(TAG_BYTES + bytes.len());
        sealed.extend_from_slice(&tag);
        sealed.extend_from_slice(bytes);
        sealed
    }

    /// The bytes of a sealed module, if its MAC verifies (in constant time).
    fn open<'a>(&self, key: &[u8], sealed: &'a [u8]) -> Option<&'a [u8]> {
        if sealed.len() < TAG_BYTES {
            return None;
        }
        let (tag, bytes) = sealed.split_at(TAG_BYTES);
        self.mac(key, bytes).verify_slice(tag).ok().map(|()| bytes)
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

/// Linked modules ready to instantiate, at most `cap`: past it the one
/// loaded longest ago is let go, so memory stays bounded however many
/// methods the image holds.
struct Loaded {
    by_hash: HashMap<String, InstancePre<Guest>>,
    order: VecDeque<String>,
    cap: usize,
}

impl Loaded {
    fn new(cap: usize) -> Loaded {
        Loaded {
            by_hash: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    fn get(&self, hash: &str) -> Option<InstancePre<Guest>> {
        self.by_hash.get(hash).cloned()
    }

    fn insert(&mut self, hash: &str, pre: InstancePre<Guest>) {
        if self.by_hash.insert(hash.to_string(), pre).is_none() {
            self.order.push_back(hash.to_string());
        }
        while self.order.len() > self.cap {
            if let Some(oldest) = self.order.pop_front() {
                self.by_hash.remove(&oldest);
            }
        }
    }
}

/// The method sandbox.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<Guest>,
    modules: Mutex<Loaded>,
    image: Arc<dyn Image>,
    engine_key: [u8; 8],
    cache_key: CacheKey,
    limits: SandboxLimits,
    metrics: SandboxMetrics,
    stop_ticker: Arc<AtomicBool>,
}

impl Sandbox {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn new(
        image: Arc<dyn Image>,
        limits: SandboxLimits,
        cache_key: CacheKey,
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
        host_py::define(&mut linker).map_err(fault)?;
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
        // What another engine compiled (before an upgrade) is never loaded
        // again: drop it, so the cache holds one entry per module.
        match image.retain_compiled(&engine_key) {
            Ok(0) => {}
            Ok(dropped) => {
                tracing::info!(dropped, "dropped modules compiled by another engine")
            }
            Err(err) => tracing::warn!(error = %err, "pruning the compiled-module cache failed"),
        }
        let metrics = SandboxMetrics::new(registry).map_err(|e| MethodFault(e.to_string()))?;
        Ok(Sandbox {
            engine,
            linker,
            modules: Mutex::new(Loaded::new(limits.max_loaded_modules)),
            image,
            engine_key,
            cache_key,
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
        if self.modules.lock().get(hash).is_some() {
            return Ok(());
        }
        let module = match self.cached_module(hash)? {
            Some(module) => module,
            None => self.compile(hash, wasm)?,
        };
        self.link(hash, &module)
    }

    fn compile(&self, hash: &str, wasm: &[u8]) -> Result<Module, MethodFault> {
        let started = Instant::now();
        let module = Module::new(&self.engine, wasm)
            .map_err(|e| MethodFault(format!("compiling: {e:#}")))?;
        self.metrics
            .compile
            .observe(started.elapsed().as_secs_f64());
        self.metrics.modules.with_label_values(&["compiled"]).inc();
        match module.serialize() {
            Ok(bytes) => {
                let key = self.cache_key(hash);
                let sealed = self.cache_key.seal(&key, &bytes);
                if let Err(err) = self.image.store_compiled(&key, &sealed) {
                    tracing::warn!(error = %err, hash, "caching a compiled module failed");
                }
            }
            Err(err) => tracing::warn!(error = %err, hash, "serializing a compiled module failed"),
        }
        Ok(module)
    }

    fn cached_module(&self, hash: &str) -> Result<Option<Module>, MethodFault> {
        let key = self.cache_key(hash);
        let Some(sealed) = self
            .image
            .load_compiled(&key)
            .map_err(|e| MethodFault(e.to_string()))?
        else {
            return Ok(None);
        };
        let Some(bytes) = self.cache_key.open(&key, &sealed) else {
            self.metrics.modules.with_label_values(&["rejected"]).inc();
            tracing::warn!(
                hash,
                "a cached compiled module is not sealed with this kernel's key; recompiling"
            );
            return Ok(None);
        };
        // SAFETY: `Module::deserialize` runs native code, so only bytes this
        // kernel wrote are given to it: they carry a MAC under the kernel's
        // own key (kept outside the image, so a copied or planted image
        // cannot forge one) over the cache key (engine compatibility hash
        // and module hash) and the bytes; wasmtime re-checks the header.
        match unsafe { Module::deserialize(&self.engine, bytes) } {
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
        self.modules.lock().insert(hash, pre);
        Ok(())
    }

    fn instance_pre(&self, hash: &str) -> Result<InstancePre<Guest>, MethodFault> {
        if let Some(pre) = self.modules.lock().get(hash) {
            self.metrics.modules.with_label_values(&["memory"]).inc();
            return Ok(pre);
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
        self.modules
            .lock()
            .get(hash)
            .ok_or_else(|| MethodFault(format!("module {hash} was let go as it was linked")))
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

#[cfg(test)]
mod tests {
    use super::*;
    use batos_object::image::module_hash;
    use batos_object::testing::MemoryImage;

    const MODULE: &str = r#"(module (memory (export "memory") 1) (func (export "invoke")))"#;

    fn sandbox(image: &Arc<MemoryImage>, key: u8) -> (Sandbox, Registry) {
        let registry = Registry::new();
        let sandbox = Sandbox::new(
            image.clone(),
            SandboxLimits::default(),
            CacheKey::new([key; 32]),
            &registry,
        )
        .expect("sandbox");
        (sandbox, registry)
    }

    fn loads(registry: &Registry, source: &str) -> u64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == "batos_sandbox_module_loads_total")
            .flat_map(|f| f.get_metric())
            .filter(|m| m.get_label().iter().any(|l| l.value() == source))
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    #[test]
    fn only_modules_sealed_with_this_kernels_key_are_loaded_from_the_cache() {
        let image = Arc::new(MemoryImage::new());
        let wasm = crate::audit::wat_to_wasm(MODULE).unwrap();
        let hash = module_hash(&wasm);
        let (first, r) = sandbox(&image, 1);
        first.prepare(&hash, &wasm).unwrap();
        assert_eq!(loads(&r, "compiled"), 1);

        // The same key: loaded from the image, not compiled.
        let (same, r) = sandbox(&image, 1);
        same.prepare(&hash, &wasm).unwrap();
        assert_eq!((loads(&r, "image"), loads(&r, "compiled")), (1, 0));

        // Another key (an image copied to another kernel): recompiled.
        let (other, r) = sandbox(&image, 2);
        other.prepare(&hash, &wasm).unwrap();
        assert_eq!((loads(&r, "rejected"), loads(&r, "compiled")), (1, 1));

        // Planted bytes under the right cache key, with a forged or no tag:
        // never deserialized.
        let key = other.cache_key(&hash);
        let mut planted = image.load_compiled(&key).unwrap().unwrap();
        let last = planted.len() - 1;
        planted[last] ^= 1;
        image.store_compiled(&key, &planted).unwrap();
        let (victim, r) = sandbox(&image, 2);
        victim.prepare(&hash, &wasm).unwrap();
        assert_eq!((loads(&r, "rejected"), loads(&r, "compiled")), (1, 1));
        image.store_compiled(&key, b"short").unwrap();
        let (victim, r) = sandbox(&image, 2);
        victim.prepare(&hash, &wasm).unwrap();
        assert_eq!(loads(&r, "rejected"), 1);
    }

    #[test]
    fn modules_another_engine_compiled_are_dropped_at_start() {
        let image = Arc::new(MemoryImage::new());
        image
            .store_compiled(b"\0\0\0\0\0\0\0\0stale", b"x")
            .unwrap();
        let wasm = crate::audit::wat_to_wasm(MODULE).unwrap();
        let hash = module_hash(&wasm);
        let (first, _) = sandbox(&image, 1);
        first.prepare(&hash, &wasm).unwrap();
        let (_second, _) = sandbox(&image, 1);
        assert!(image
            .load_compiled(b"\0\0\0\0\0\0\0\0stale")
            .unwrap()
            .is_none());
        assert!(image
            .load_compiled(&first.cache_key(&hash))
            .unwrap()
            .is_some());
    }

    #[test]
    fn modules_past_the_cap_are_let_go_and_reload_from_the_image() {
        let image = Arc::new(MemoryImage::new());
        let registry = Registry::new();
        let sandbox = Sandbox::new(
            image.clone(),
            SandboxLimits {
                max_loaded_modules: 2,
                ..SandboxLimits::default()
            },
            CacheKey::new([1; 32]),
            &registry,
        )
        .expect("sandbox");
        let hashes: Vec<String> = (0..3)
            .map(|n| {
                let wat = MODULE.replacen(
                    "(module",
                    &format!("(module (global i32 (i32.const {n}))"),
                    1,
                );
                let wasm = crate::audit::wat_to_wasm(&wat).unwrap();
                let hash = module_hash(&wasm);
                sandbox.prepare(&hash, &wasm).unwrap();
                hash
            })
            .collect();
        assert_eq!(loads(&registry, "compiled"), 3);
        assert_eq!(sandbox.modules.lock().by_hash.len(), 2);
        // The first was let go: it comes back from the compiled cache.
        sandbox.instance_pre(&hashes[0]).unwrap();
        assert_eq!(loads(&registry, "image"), 1);
        sandbox.instance_pre(&hashes[2]).unwrap();
        assert_eq!(loads(&registry, "memory"), 1);
    }
}
