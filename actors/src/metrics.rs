//! Prometheus collectors of the object model (actors, commits, the image).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};

/// Collectors the object model updates; registered into the kernel's registry.
#[derive(Clone)]
pub struct Metrics {
    /// Live object actors.
    pub actors_live: IntGauge,
    /// Objects activated from the image.
    pub activations: IntCounter,
    /// Objects passivated when idle.
    pub passivations: IntCounter,
    /// Objects in the image.
    pub image_objects: IntGauge,
    /// Duration of one group commit (validation, write, apply).
    pub commit_seconds: Histogram,
    /// Transactions per group commit.
    pub commit_group_size: Histogram,
    /// Transactions refused at commit because an object they read changed.
    pub commit_conflicts: IntCounter,
}

impl Metrics {
    /// Creates the collectors and registers them.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Metrics {
            actors_live: IntGauge::new("batos_actors_live", "Live object actors")?,
            activations: IntCounter::new(
                "batos_actors_activations_total",
                "Objects activated from the image",
            )?,
            passivations: IntCounter::new(
                "batos_actors_passivations_total",
                "Idle objects passivated",
            )?,
            image_objects: IntGauge::new(
                "batos_image_objects",
                "Objects in the image, roots included",
            )?,
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "batos_store_commit_duration_seconds",
                    "Time to make one group commit durable",
                )
                .buckets(prometheus::exponential_buckets(0.000_01, 2.0, 18)?),
            )?,
            commit_group_size: Histogram::with_opts(
                HistogramOpts::new(
                    "batos_store_commit_group_transactions",
                    "Transactions per group commit",
                )
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 11)?),
            )?,
            commit_conflicts: IntCounter::with_opts(Opts::new(
                "batos_store_commit_conflicts_total",
                "Transactions re-run because an object they read changed first",
            ))?,
        };
        registry.register(Box::new(m.actors_live.clone()))?;
        registry.register(Box::new(m.activations.clone()))?;
        registry.register(Box::new(m.passivations.clone()))?;
        registry.register(Box::new(m.image_objects.clone()))?;
        registry.register(Box::new(m.commit_seconds.clone()))?;
        registry.register(Box::new(m.commit_group_size.clone()))?;
        registry.register(Box::new(m.commit_conflicts.clone()))?;
        Ok(m)
    }
}
