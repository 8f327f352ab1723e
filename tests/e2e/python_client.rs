//! The Python client (`clients/python`), installed with pip as a user
//! installs it, its pytest suite run against this build's kernel by
//! `scripts/python-tests.sh` (pinned pyzmq, msgpack and pytest from PyPI).

use std::path::PathBuf;
use std::process::Command;

use crate::harness::batos_bin;

#[test]
fn the_python_client_passes_its_tests_against_the_real_kernel() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("scripts/python-tests.sh"))
        .arg("-q")
        .env("BATOS_BIN", batos_bin())
        .output()
        .expect("run scripts/python-tests.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Python client's tests failed (it needs python3 with venv, and PyPI):\n{stdout}\n{stderr}"
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains(" passed") && !summary.contains("skipped") && !summary.contains("failed"),
        "every Python test ran and passed: {summary}"
    );
}
