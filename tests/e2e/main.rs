//! End-to-end tests of BAT OS: the real `batos` binary, real ZeroMQ sockets, a real image on disk.
//!
//! Build the kernel first (`cargo build --release -p batos-kernel`), then run
//! `cargo test --release -p batos-e2e`. The binary is found next to the test
//! executable's `deps/` directory, or at `$BATOS_BIN`. Each test starts its own
//! kernel on its own temporary image, so the tests run in parallel.

// Shared helpers: not every area file uses every one of them.
#[allow(dead_code)]
mod harness;

mod access;
mod cli;
mod clients;
mod cognitive;
mod commands;
mod curve;
mod cycles;
mod docs;
mod errors;
mod events;
mod heartbeat;
mod inspector;
mod lifecycle;
mod malformed;
mod memory;
mod methods;
mod metrics;
mod model;
mod observability;
mod persistence;
mod python_client;
mod python_methods;
mod reference;
mod remote_inference;
mod self_upgrade;
mod smollm2;
mod spans;
mod steward;
