//! The inference actor's engine room: a bounded queue in front of a model
//! backend, run on its own threads (never an actor or I/O thread), with
//! per-request timeouts, cancellation and metrics.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::sync::oneshot;

use super::engine::{CallControl, Constraint, Engine, EngineError, EngineRequest};
use batos_object::error::ActorError;

/// Settings of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Requests waiting beyond this are refused (`overloaded`).
    pub max_queue: usize,
    /// Threads generating at once (a CPU model wants one).
    pub threads: usize,
    /// Longest a generation may take, queueing excluded.
    pub timeout: Duration,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
    /// The most `max_tokens` a request may ask.
    pub max_tokens_limit: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_queue: 64,
            threads: 1,
            timeout: Duration::from_secs(120),
            default_max_tokens: 128,
            max_tokens_limit: 4096,
        }
    }
}

/// One request to the model.
#[derive(Debug, Clone, Default)]
pub struct Inference {
    /// The prompt (a user message; the chat template is applied).
    pub prompt: String,
    /// The expert to run with, exactly; `None` for the base model.
    pub expert: Option<String>,
    /// Most tokens to generate (`None`: the configured default).
    pub max_tokens: Option<usize>,
    /// Output grammar.
    pub constraint: Option<Constraint>,
}

/// What the model answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Inferred {
    /// The text.
    pub text: String,
    /// The expert that was active.
    pub expert: Option<String>,
    /// Tokens generated.
    pub tokens: usize,
    /// The model's name.
    pub model: String,
}

#[derive(Clone)]
struct ServiceMetrics {
    requests: IntCounterVec,
    tokens: IntCounter,
    tokens_per_second: prometheus::Gauge,
    queue: IntGauge,
    first_token: Histogram,
    duration: Histogram,
}

impl ServiceMetrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = ServiceMetrics {
            requests: IntCounterVec::new(
                Opts::new("batos_inference_requests_total", "Generations by outcome"),
                &["outcome"],
            )?,
            tokens: IntCounter::new("batos_inference_tokens_total", "Tokens generated")?,
            tokens_per_second: prometheus::Gauge::new(
                "batos_inference_tokens_per_second",
                "Generation speed of the last request",
            )?,
            queue: IntGauge::new(
                "batos_inference_queue_depth",
                "Generations waiting or running",
            )?,
            first_token: Histogram::with_opts(
                HistogramOpts::new(
                    "batos_inference_time_to_first_token_seconds",
                    "Time from the start of a generation to its first token",
                )
                .buckets(prometheus::exponential_buckets(0.005, 2.0, 14)?),
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "batos_inference_seconds",
                    "Generation time, queueing excluded",
                )
                .buckets(prometheus::exponential_buckets(0.005, 2.0, 16)?),
            )?,
        };
        // Known label values start at zero, so dashboards have the series.
        for outcome in ["ok", "timeout", "invalid", "error", "overloaded"] {
            m.requests.with_label_values(&[outcome]);
        }
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.tokens.clone()))?;
        registry.register(Box::new(m.tokens_per_second.clone()))?;
        registry.register(Box::new(m.queue.clone()))?;
        registry.register(Box::new(m.first_token.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        Ok(m)
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Handle to the service; cheap to clone.
#[derive(Clone)]
pub struct InferenceService {
    engine: Arc<dyn Engine>,
    jobs: Sender<Job>,
    config: ServiceConfig,
    waiting: Arc<AtomicUsize>,
    metrics: ServiceMetrics,
}

/// Dropping the guard cancels the call it watches (the client went away or
/// the caller stopped waiting).
struct CancelOnDrop(CallControl);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl InferenceService {
    /// Starts the service's threads over `engine`.
    pub fn start(
        engine: Arc<dyn Engine>,
        config: ServiceConfig,
        registry: &Registry,
    ) -> Result<InferenceService, ActorError> {
        let metrics = ServiceMetrics::new(registry).map_err(ActorError::internal)?;
        let (jobs, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..config.threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("batos-inference-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
                .map_err(ActorError::internal)?;
        }
        Ok(InferenceService {
            engine,
            jobs,
            config,
            waiting: Arc::new(AtomicUsize::new(0)),
            metrics,
        })
    }

    /// The model's name.
    pub fn model_name(&self) -> String {
        self.engine.model_name()
    }

    /// The backend (the memory manager loads and unloads adapters through it).
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Runs one generation: `overloaded` when the queue is full,
    /// `unavailable` when it times out, `bad_request` for a bad request.
    pub async fn infer(&self, request: Inference) -> Result<Inferred, ActorError> {
        let max_tokens = request.max_tokens.unwrap_or(self.config.default_max_tokens);
        if max_tokens == 0 || max_tokens > self.config.max_tokens_limit {
            return Err(ActorError::BadRequest(format!(
                "`max_tokens` must be 1..={}",
                self.config.max_tokens_limit
            )));
        }
        let depth = self.waiting.fetch_add(1, Ordering::AcqRel) + 1;
        if depth > self.config.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.metrics
                .requests
                .with_label_values(&["overloaded"])
                .inc();
            return Err(ActorError::Overloaded(format!(
                "{} generations are queued; retry later",
                depth - 1
            )));
        }
        self.metrics.queue.set(depth as i64);
        let control = CallControl::new(self.config.timeout);
        let guard = CancelOnDrop(control.clone());
        let (tx, rx) = oneshot::channel();
        let engine = self.engine.clone();
        let waiting = self.waiting.clone();
        let metrics = self.metrics.clone();
        let timeout = self.config.timeout;
        let expert = request.expert.clone();
        let job: Job = Box::new(move || {
            // The deadline counts from when generation starts, not from queueing.
            let control = control.restarted(timeout);
            let started = Instant::now();
            let result = if control.stop_reason().is_some() {
                Err(EngineError::Cancelled("the caller stopped waiting".into()))
            } else {
                engine.generate(
                    &EngineRequest {
                        prompt: request.prompt,
                        expert: request.expert,
                        max_tokens,
                        constraint: request.constraint,
                        temperature: None,
                    },
                    &control,
                )
            };
            let elapsed = started.elapsed();
            let depth = waiting.fetch_sub(1, Ordering::AcqRel) - 1;
            metrics.queue.set(depth as i64);
            metrics.duration.observe(elapsed.as_secs_f64());
            if let Ok(out) = &result {
                metrics.tokens.inc_by(out.tokens as u64);
                if elapsed.as_secs_f64() > 0.0 {
                    metrics
                        .tokens_per_second
                        .set(out.tokens as f64 / elapsed.as_secs_f64());
                }
                if let Some(ttft) = out.first_token {
                    metrics.first_token.observe(ttft.as_secs_f64());
                }
            }
            let _ = tx.send(result);
        });
        if self.jobs.send(job).is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(ActorError::Unavailable(
                "the inference threads are gone".into(),
            ));
        }
        let result = rx
            .await
            .map_err(|_| ActorError::internal("an inference thread dropped its job"))?;
        drop(guard);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(EngineError::Cancelled(_)) => "timeout",
            Err(EngineError::Invalid(_)) => "invalid",
            Err(EngineError::Backend(_) | EngineError::Unreachable(_)) => "error",
        };
        self.metrics.requests.with_label_values(&[outcome]).inc();
        let out = result.map_err(|e| match e {
            EngineError::Invalid(m) => ActorError::BadRequest(m),
            EngineError::Cancelled(m) => {
                ActorError::Unavailable(format!("generation did not finish: {m}"))
            }
            EngineError::Backend(m) => ActorError::Internal(format!("inference backend: {m}")),
            EngineError::Unreachable(m) => {
                ActorError::Unavailable(format!("inference backend unreachable: {m}"))
            }
        })?;
        Ok(Inferred {
            text: out.text,
            expert,
            tokens: out.tokens,
            model: self.engine.model_name(),
        })
    }

    /// Tokens in `text` by the model's tokenizer.
    pub fn count_tokens(&self, text: &str) -> Option<usize> {
        self.engine.count_tokens(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::super::engine::EngineOutput;
    use super::*;

    /// Blocks each generation until the test lets it go; reports each
    /// generation it stopped early, with the reason.
    struct Gate {
        release: parking_lot::Mutex<mpsc::Receiver<()>>,
        started: parking_lot::Mutex<mpsc::Sender<()>>,
        stopped: parking_lot::Mutex<mpsc::Sender<&'static str>>,
    }

    impl Engine for Gate {
        fn model_name(&self) -> String {
            "gate".into()
        }
        fn generate(
            &self,
            request: &EngineRequest,
            control: &CallControl,
        ) -> Result<EngineOutput, EngineError> {
            let _ = self.started.lock().send(());
            loop {
                if let Some(reason) = control.stop_reason() {
                    let _ = self.stopped.lock().send(reason);
                    return Err(EngineError::Cancelled(reason.into()));
                }
                if self
                    .release
                    .lock()
                    .recv_timeout(Duration::from_millis(5))
                    .is_ok()
                {
                    return Ok(EngineOutput {
                        text: request.prompt.clone(),
                        tokens: 1,
                        first_token: None,
                    });
                }
            }
        }
        fn load_adapter(&self, _: &super::super::engine::AdapterSpec) -> Result<(), EngineError> {
            Ok(())
        }
        fn unload_adapter(&self, _: &str) -> Result<(), EngineError> {
            Ok(())
        }
        fn count_tokens(&self, text: &str) -> Result<usize, EngineError> {
            Ok(text.len())
        }
    }

    /// The service, the gate's release, and its start and stop reports.
    struct Harness {
        service: InferenceService,
        release: mpsc::Sender<()>,
        started: mpsc::Receiver<()>,
        stopped: mpsc::Receiver<&'static str>,
    }

    fn service(max_queue: usize, timeout: Duration) -> Harness {
        let (release, release_rx) = mpsc::channel();
        let (started_tx, started) = mpsc::channel();
        let (stopped_tx, stopped) = mpsc::channel();
        let engine = Arc::new(Gate {
            release: parking_lot::Mutex::new(release_rx),
            started: parking_lot::Mutex::new(started_tx),
            stopped: parking_lot::Mutex::new(stopped_tx),
        });
        let config = ServiceConfig {
            max_queue,
            timeout,
            ..ServiceConfig::default()
        };
        Harness {
            service: InferenceService::start(engine, config, &Registry::new()).unwrap(),
            release,
            started,
            stopped,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn request(prompt: &str) -> Inference {
        Inference {
            prompt: prompt.into(),
            ..Inference::default()
        }
    }

    #[test]
    fn past_the_queue_bound_requests_are_overloaded() {
        let Harness {
            service, release, ..
        } = service(2, Duration::from_secs(30));
        let rt = runtime();
        rt.block_on(async {
            let first = tokio::spawn({
                let s = service.clone();
                async move { s.infer(request("a")).await }
            });
            let second = tokio::spawn({
                let s = service.clone();
                async move { s.infer(request("b")).await }
            });
            while service.waiting.load(Ordering::Acquire) < 2 {
                tokio::task::yield_now().await;
            }
            let third = service.infer(request("c")).await;
            assert!(matches!(third, Err(ActorError::Overloaded(_))), "{third:?}");
            release.send(()).unwrap();
            release.send(()).unwrap();
            assert_eq!(first.await.unwrap().unwrap().text, "a");
            assert_eq!(second.await.unwrap().unwrap().text, "b");
        });
    }

    #[test]
    fn a_generation_past_its_deadline_is_unavailable() {
        let Harness {
            service, stopped, ..
        } = service(4, Duration::from_millis(30));
        let rt = runtime();
        let out = rt.block_on(service.infer(request("slow")));
        assert!(matches!(out, Err(ActorError::Unavailable(_))), "{out:?}");
        assert_eq!(stopped.recv().unwrap(), "deadline passed");
        let bad = rt.block_on(service.infer(Inference {
            max_tokens: Some(0),
            ..request("x")
        }));
        assert!(matches!(bad, Err(ActorError::BadRequest(_))), "{bad:?}");
    }

    #[test]
    fn a_caller_that_stops_waiting_cancels_its_generation() {
        let h = service(4, Duration::from_secs(60));
        let rt = runtime();
        rt.block_on(async {
            let call = tokio::spawn({
                let s = h.service.clone();
                async move { s.infer(request("abandoned")).await }
            });
            // Wait (without blocking the runtime) until generation runs.
            while h.started.try_recv().is_err() {
                tokio::task::yield_now().await;
            }
            call.abort();
            assert!(call.await.unwrap_err().is_cancelled());
        });
        let reason = h
            .stopped
            .recv_timeout(Duration::from_secs(30))
            .expect("the engine saw the cancellation long before its deadline");
        assert_eq!(reason, "cancelled");
        // The slot it held is free again: the next call runs and answers.
        h.release.send(()).unwrap();
        let next = rt.block_on(h.service.infer(request("next"))).unwrap();
        assert_eq!(next.text, "next");
        assert_eq!(h.service.waiting.load(Ordering::Acquire), 0);
    }
}
