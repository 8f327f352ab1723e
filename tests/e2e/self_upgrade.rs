//! The self-directed upgrade path: a message to `orchestrator_obj` asks the
//! steward for an upgrade; the instruction reaches the upgrade channel only
//! once the message has committed, and invalid ones are refused.

use crate::harness::*;

fn instruction(version: u64, id: &str) -> Value {
    map(&[
        ("version", Value::from(version)),
        ("id", s(id)),
        (
            "actions",
            Value::Array(vec![map(&[
                ("action", s("set_config")),
                ("key", s("heartbeat.interval_ms")),
                ("value", Value::from(5000)),
            ])]),
        ),
    ])
}

#[test]
fn request_upgrade_submits_an_instruction_to_the_channel() {
    let root = new_image_dir();
    let channel = root.path().join("channel");
    let config = format!(
        "[kernel]\nupgrade_channel = {:?}\n",
        channel.display().to_string()
    );
    let k = Kernel::start_on(root.clone(), Options::config(&config));
    let c = k.dealer();
    let r = c
        .send(
            "orchestrator_obj",
            "requestUpgrade_",
            vec![instruction(1, "self-1")],
        )
        .unwrap();
    assert_eq!(must(&r, "value").as_str(), Some("self-1"));
    // The reply comes after the commit, and the file is written right after
    // the commit, before the reply: it is there now.
    let written = std::fs::read(channel.join("self-1.json")).expect("the instruction file");
    let json: serde_json::Value = serde_json::from_slice(&written).unwrap();
    assert_eq!(json["id"], "self-1");
    assert_eq!(json["actions"][0]["key"], "heartbeat.interval_ms");
    // Refused: wrong format version; nothing is written.
    let (code, _) = c
        .send(
            "orchestrator_obj",
            "requestUpgrade_",
            vec![instruction(9, "self-2")],
        )
        .unwrap_err();
    assert_eq!(code, "bad_request");
    assert!(!channel.join("self-2.json").exists());
    // Only the orchestrator carries the primitive: elsewhere nothing
    // answers it (no `requestUpgrade` slot, so synthesis writes no setter).
    let (code, _) = c
        .send(
            "genesis_obj",
            "requestUpgrade_",
            vec![instruction(1, "self-3")],
        )
        .unwrap_err();
    assert_eq!(code, "does_not_understand");
    assert!(!channel.join("self-3.json").exists());
}

/// A request that could not be written to the channel is reported, never
/// acknowledged with an id: here the channel's path is a file.
#[test]
fn request_upgrade_reports_an_instruction_it_could_not_submit() {
    let root = new_image_dir();
    let channel = root.path().join("channel");
    std::fs::write(&channel, b"a file, not a folder").expect("write the file");
    let config = format!(
        "[kernel]\nupgrade_channel = {:?}\n",
        channel.display().to_string()
    );
    let k = Kernel::start_on(root.clone(), Options::config(&config));
    let c = k.dealer();
    let (code, message) = c
        .send(
            "orchestrator_obj",
            "requestUpgrade_",
            vec![instruction(1, "self-4")],
        )
        .unwrap_err();
    assert_eq!(code, "unavailable", "{message}");
    assert!(message.contains("not submitted"), "{message}");
}
