//! The BAT OS kernel: the Synaptic Bridge over ZeroMQ ([`bridge`],
//! [`protocol`], [`cmd`]), metrics, configuration, and the lifecycle that
//! ties the object space to its image on RocksDB (`batos-store`)
//! ([`server::run`]).

pub mod bridge;
pub mod cache_key;
pub mod cli;
pub mod cmd;
pub mod cognitive;
pub use batos_config as config;
pub mod error;
pub mod heartbeat;
pub mod metrics;
pub mod self_docs;
pub use batos_protocol as protocol;
pub mod server;
pub mod upgrade;

pub use config::Config;
pub use error::KernelError;
