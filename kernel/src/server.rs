//! The kernel's lifecycle: open the image, start the object space, bind the
//! bridge and metrics, serve until shutdown, then drain and flush.

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use batos_actors::{ObjectSpace, Role, SpaceConfig};
use batos_cognition::inference::for_memory::{ModelCounter, ModelSummarizer};
use batos_cognition::orchestration::{Orchestrator, OrchestratorConfig};
use batos_memory::summary::{Extractive, Summarizer};
use batos_memory::tokens::{ApproxCounter, SharedCounter};
use batos_memory::{Catalog, CatalogConfig};
use batos_sandbox::audit::AuditLimits;
use batos_sandbox::SandboxLimits;
use prometheus::Registry;
use tokio::sync::watch;

use crate::bridge::{self, events::QueueSink, BridgeMetrics, Limits};
use crate::cmd::Context;
use crate::config::{Config, Durability};
use crate::error::KernelError;
use batos_client::ReadyLine;
use batos_store::{RocksImage, StoreOptions};

/// Runs the kernel until `shutdown` resolves. Prints one line to stdout
/// once serving: `batos ready endpoint=... events=... metrics=...`.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), KernelError> {
    let started = Instant::now();
    // Refuse bad endpoints before touching the image.
    if config.bridge.curve_key.is_empty() {
        bridge::endpoint::check_local(&config.bridge.endpoint)?;
        bridge::endpoint::check_local(&config.bridge.events)?;
    }
    let anonymous_role = Role::parse(&config.bridge.anonymous_role).ok_or_else(|| {
        KernelError::Config(format!(
            "bridge.anonymous_role is {:?}; one of read, write, admin",
            config.bridge.anonymous_role
        ))
    })?;
    crate::metrics::check_listen(&config.metrics.listen, config.metrics.allow_remote)?;
    let registry = Registry::new();
    let data_dir = config.kernel.data_dir.clone();
    let store = StoreOptions {
        block_cache_bytes: config.store.block_cache_bytes,
        keep_snapshots: config.store.keep_snapshots,
    };
    let image = tokio::task::spawn_blocking(move || RocksImage::open(&data_dir, &store))
        .await
        .map_err(|e| KernelError::Config(format!("opening the image: {e}")))??;
    let cache_key = crate::cache_key::load_or_create(&config.kernel.data_dir)?;
    let bridge_metrics =
        BridgeMetrics::new(&registry).map_err(|e| KernelError::Config(e.to_string()))?;
    let dropped = prometheus::IntCounter::new(
        "batos_bridge_events_dropped_total",
        "State events dropped because the queue was full",
    )
    .map_err(|e| KernelError::Config(e.to_string()))?;
    registry
        .register(Box::new(dropped.clone()))
        .map_err(|e| KernelError::Config(e.to_string()))?;
    let (sink, events) = QueueSink::new(config.bridge.event_queue, dropped);
    let sink = Arc::new(sink);
    let arbiters = match config.actors.arbiters {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let space = ObjectSpace::open(
        Arc::new(image),
        SpaceConfig {
            arbiters,
            passivate_after_ms: config.actors.passivate_after_ms,
            passivate_check_ms: config.actors.passivate_check_ms,
            sync: config.store.durability == Durability::Sync,
            max_group: config.store.max_group_commit,
            sandbox: SandboxLimits {
                fuel_per_call: config.sandbox.fuel_per_call,
                max_memory_bytes: config.sandbox.max_memory_bytes,
                wall_clock_ms: config.sandbox.wall_clock_ms,
                max_send_depth: config.sandbox.max_send_depth,
                max_instances: (config.sandbox.threads.max(1) as u32)
                    * (config.sandbox.max_send_depth + 2),
                max_loaded_modules: config.sandbox.max_loaded_modules,
            },
            audit: AuditLimits {
                max_module_bytes: config.sandbox.max_module_bytes,
                max_memory_pages: config.sandbox.max_memory_pages,
                max_table_elements: config.sandbox.max_table_elements,
                max_functions: config.sandbox.max_functions,
                max_function_bytes: config.sandbox.max_function_bytes,
            },
            sandbox_threads: config.sandbox.threads,
            cache_key,
            max_transaction_bytes: config.sandbox.max_transaction_bytes,
        },
        sink.clone(),
        Arc::new(crate::upgrade::ChannelHooks::new(
            config.kernel.upgrade_channel.clone(),
        )),
        &registry,
    )
    .await?;
    let core = crate::cognitive::start(
        &space,
        &config.inference,
        &config.kernel.data_dir,
        &registry,
    )
    .await?;
    let (counter, summarizer): (SharedCounter, Arc<dyn Summarizer>) = match &core.cognition {
        Some(c) => (
            Arc::new(ModelCounter::new(c.service.clone())),
            Arc::new(ModelSummarizer::new(c.service.clone())),
        ),
        None => (
            Arc::new(ApproxCounter),
            Arc::new(Extractive::new(ApproxCounter)),
        ),
    };
    let catalog = Catalog::open(
        space.clone(),
        CatalogConfig {
            index_dir: config.kernel.data_dir.join("memory-index"),
            chunk_tokens: config.memory.chunk_tokens.max(1),
            summary_fanout: config.memory.summary_fanout.max(2),
            summary_tokens: config.memory.summary_tokens.max(1),
            max_batch_documents: config.memory.max_batch_documents.max(1),
            max_queue: config.memory.max_queue.max(1),
            background_summaries: config.memory.background_summaries,
        },
        counter,
        summarizer,
        &registry,
    )
    .await?;
    if let Some(tier) = &core.tier {
        tier.set_memory(catalog.clone());
    }
    let orchestrator = Orchestrator::new(
        space.clone(),
        catalog.clone(),
        core.cognition.clone(),
        sink.clone(),
        crate::self_docs::documents(),
        OrchestratorConfig {
            step_pause: std::time::Duration::from_millis(config.orchestrator.step_pause_ms),
            max_running: config.orchestrator.max_running.max(1),
            max_running_per_client: config.orchestrator.max_running_per_client.max(1),
        },
    )?;
    let sockets = bridge::bind(&config.bridge, &bridge_metrics)?;
    let metrics_task = if config.metrics.listen.is_empty() {
        None
    } else {
        let listener = crate::metrics::bind(&config.metrics.listen).await?;
        let addr = crate::metrics::local_addr(&listener);
        Some((
            actix::spawn(crate::metrics::serve(
                listener,
                registry.clone(),
                crate::metrics::ServeLimits {
                    max_connections: config.metrics.max_connections,
                    header_timeout: Duration::from_millis(config.metrics.header_timeout_ms),
                },
            )),
            addr,
        ))
    };
    let metrics_addr = metrics_task
        .as_ref()
        .and_then(|(_, a)| a.map(|a| a.to_string()))
        .unwrap_or_else(|| "off".into());
    tracing::info!(
        endpoint = %sockets.endpoint,
        events = %sockets.events,
        metrics = %metrics_addr,
        objects = space.object_count(),
        durability = ?config.store.durability,
        startup_ms = started.elapsed().as_millis() as u64,
        "kernel serving"
    );
    {
        let mut out = std::io::stdout().lock();
        let ready = ReadyLine {
            endpoint: sockets.endpoint.clone(),
            events: sockets.events.clone(),
            metrics: metrics_addr.clone(),
        };
        writeln!(out, "{ready}")?;
        out.flush()?;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Arc::new(Context {
        space: space.clone(),
        client_spaces: Role::CLIENT.map(|role| space.for_client(role)),
        started,
        catalog: catalog.clone(),
        orchestrator: orchestrator.clone(),
        cognition: core.cognition.clone(),
        experts: core.experts.clone(),
    });
    // Cycles interrupted by a crash or stop go on; a fresh image holds its
    // first conversation. Both run in the background, never blocking requests.
    let resumed = orchestrator.resume().await?;
    if resumed > 0 {
        tracing::info!(resumed, "resumed cognitive cycles");
    }
    if config.kernel.first_conversation {
        match orchestrator.first_conversation().await {
            Ok(Some(cycle)) => {
                tracing::info!(cycle, "first conversation (display_yourself) started")
            }
            Ok(None) => {}
            Err(err) => tracing::error!(error = %err, "could not start the first conversation"),
        }
    }
    let limits = Limits {
        max_request_bytes: config.bridge.max_request_bytes,
        max_inflight: config.bridge.max_inflight.max(1),
        max_inflight_per_peer: config.bridge.max_inflight_per_peer.max(1),
        anonymous_role,
    };
    let heartbeat = actix::spawn(crate::heartbeat::run(
        space.clone(),
        catalog.clone(),
        config.heartbeat.clone(),
        config.kernel.data_dir.clone(),
        registry.clone(),
        stop_rx.clone(),
    ));
    let serving = actix::spawn(bridge::serve(
        sockets,
        ctx,
        limits,
        bridge_metrics,
        events,
        stop_rx,
    ));
    shutdown.await;
    tracing::info!("shutdown requested");
    let _ = stop_tx.send(true);
    let _ = serving.await;
    let _ = heartbeat.await;
    space.shutdown().await;
    if let Some((task, _)) = metrics_task {
        task.abort();
    }
    tracing::info!("image flushed; kernel stopped");
    Ok(())
}
