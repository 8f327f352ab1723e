//! Integration tests of the `batos` binary's command line (the end-to-end
//! suite over ZeroMQ lives in the workspace's `tests/` crate). Having this
//! target also makes `cargo test` build the `batos` binary the end-to-end
//! tests drive.

use std::process::Command;

fn batos() -> Command {
    Command::new(env!("CARGO_BIN_EXE_batos"))
}

#[test]
fn version_names_the_package_version() {
    let out = batos().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let out = batos()
        .args(["run", "--config", "/nonexistent/batos.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/batos.toml"), "{err}");
}

#[test]
fn an_unknown_subcommand_is_a_usage_error() {
    let out = batos().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
