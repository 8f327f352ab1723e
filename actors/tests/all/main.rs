//! The runtime tested in-crate against the in-memory image: the committer
//! (group commit, conflicts, the leader path), activation and passivation,
//! and methods running in a message's transaction. No RocksDB, no ZeroMQ.

mod committer;
mod space;
