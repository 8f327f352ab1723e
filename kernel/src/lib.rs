//! The BAT OS kernel: the image on RocksDB ([`store`]), the Synaptic Bridge
//! over ZeroMQ ([`bridge`], [`protocol`], [`cmd`]), metrics, configuration,
//! and the lifecycle that ties them to the object space ([`server::run`]).

pub mod bridge;
pub mod cli;
pub mod client;
pub mod cmd;
pub mod cognitive;
pub mod config;
pub mod error;
pub mod heartbeat;
pub mod inspect;
pub mod metrics;
pub mod self_docs;
pub use batos_protocol as protocol;
pub mod server;
pub mod steward;
pub mod store;
pub mod tiny_model;

pub use config::Config;
pub use error::KernelError;
