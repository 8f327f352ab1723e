//! End-to-end test support crate (the tests live in `e2e/`).
