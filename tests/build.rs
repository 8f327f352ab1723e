//! Builds the guest SDK's example methods to WebAssembly (with Debian's
//! rustc, see wasm-guest-sdk/README.md) so the end-to-end tests can install
//! them through the bridge. Their directory reaches the tests as
//! `BATOS_GUEST_EXAMPLES`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("guest-examples");
    for watched in [
        "wasm-guest-sdk/src",
        "wasm-guest-sdk/examples",
        "scripts/build-guest-examples.sh",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=GUEST_RUSTC");
    let status = Command::new("bash")
        .arg(root.join("scripts/build-guest-examples.sh"))
        .arg(&out)
        .status()
        .expect("running scripts/build-guest-examples.sh");
    assert!(
        status.success(),
        "building the guest SDK examples failed; install Debian's wasm32 compiler: \
         apt-get install -y rustc libstd-rust-dev-wasm32 lld-14"
    );
    println!("cargo:rustc-env=BATOS_GUEST_EXAMPLES={}", out.display());
}
