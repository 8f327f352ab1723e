//! The contract between the object model and a store: what every
//! [`Image`] must do, as checks a store's tests run with
//! [`run`]`(|| a fresh, empty image)`.
//!
//! Each check panics with what the image did wrong.

use crate::image::{module_hash, CommitGroup, Image};
use crate::slot::{MethodRef, Primitive, Provenance, Slot, SourceRef};
use crate::txn::{Install, Transaction};
use crate::value::{make_ref, Oid, Value};

/// One check of the contract, on a fresh image.
type Check = fn(&dyn Image);

/// Runs every check, each on a fresh image from `fresh`.
pub fn run(fresh: impl Fn() -> Box<dyn Image>) {
    let checks: [(&str, Check); 10] = [
        ("a fresh image is empty", a_fresh_image_is_empty),
        ("a commit is visible with its counters", a_commit_is_visible),
        ("later writes win and removals remove", later_writes_win),
        (
            "objects do not see their neighbours' slots",
            objects_are_separate,
        ),
        ("a group is one ordered commit", a_group_is_ordered),
        (
            "installs keep history, modules and blobs",
            installs_keep_history,
        ),
        ("the compiled cache round-trips", compiled_cache_round_trips),
        (
            "compiled modules of another engine are dropped",
            compiled_modules_of_another_engine_are_dropped,
        ),
        ("checkpoints have distinct ids", checkpoints_are_distinct),
        ("every slot kind round-trips", every_slot_kind_round_trips),
    ];
    for (name, check) in checks {
        let image = fresh();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&*image)));
        if let Err(panic) = outcome {
            let why = crate::error::panic_message(&*panic);
            panic!("image conformance: {name}: {why}");
        }
    }
}

fn data(v: impl Into<Value>) -> Slot {
    Slot::Data(v.into())
}

fn commit(image: &dyn Image, transactions: &[(u64, &Transaction)], next_oid: Oid, objects: u64) {
    image
        .commit(
            &CommitGroup {
                transactions: transactions.to_vec(),
                next_oid,
                objects,
            },
            true,
        )
        .expect("commit");
}

fn slots(image: &dyn Image, oid: Oid) -> Vec<(String, Slot)> {
    image
        .load_object(oid)
        .expect("load")
        .unwrap_or_else(|| panic!("object {oid} is missing"))
        .slots
}

fn a_fresh_image_is_empty(image: &dyn Image) {
    let meta = image.meta().expect("meta");
    assert_eq!((meta.next_oid, meta.objects, meta.last_tx), (0, 0, 0));
    assert_eq!(meta.roots, None);
    assert!(image.load_object(1).expect("load").is_none());
    assert!(!image.object_exists(1).expect("exists"));
    assert!(image.method_history(1).expect("history").is_empty());
    assert!(image.load_module("00").expect("module").is_none());
}

fn a_commit_is_visible(image: &dyn Image) {
    let mut tx = Transaction::new();
    tx.create(7, vec![("x".into(), data(42)), ("a".into(), data("first"))]);
    tx.set_roots(vec![("traits_obj".into(), 7)]);
    commit(image, &[(1, &tx)], 8, 1);
    let meta = image.meta().expect("meta");
    assert_eq!((meta.next_oid, meta.objects, meta.last_tx), (8, 1, 1));
    assert_eq!(meta.roots, Some(vec![("traits_obj".to_string(), 7)]));
    assert!(image.object_exists(7).expect("exists"));
    // Slots come back in name order.
    assert_eq!(
        slots(image, 7),
        vec![
            ("a".to_string(), data("first")),
            ("x".to_string(), data(42))
        ]
    );
    assert!(image.load_object(8).expect("load").is_none());
    assert!(!image.object_exists(8).expect("exists"));
}

fn later_writes_win(image: &dyn Image) {
    let mut create = Transaction::new();
    create.create(3, vec![("keep".into(), data(1)), ("drop".into(), data(2))]);
    commit(image, &[(1, &create)], 4, 1);
    let mut change = Transaction::new();
    change.set(3, "keep".into(), data(10));
    change.remove(3, "drop".into());
    change.set(3, "new".into(), data(true));
    commit(image, &[(2, &change)], 4, 1);
    assert_eq!(
        slots(image, 3),
        vec![
            ("keep".to_string(), data(10)),
            ("new".to_string(), data(true))
        ]
    );
    assert_eq!(image.meta().expect("meta").last_tx, 2);
}

fn objects_are_separate(image: &dyn Image) {
    // Neighbouring oids, and oids whose big-endian bytes share a prefix.
    let oids: [Oid; 4] = [255, 256, 257, 1 << 40];
    let mut tx = Transaction::new();
    for oid in oids {
        tx.create(oid, vec![("me".into(), data(oid))]);
    }
    commit(image, &[(1, &tx)], (1 << 40) + 1, 4);
    for oid in oids {
        assert_eq!(slots(image, oid), vec![("me".to_string(), data(oid))]);
    }
}

fn a_group_is_ordered(image: &dyn Image) {
    let mut first = Transaction::new();
    first.create(1, vec![("v".into(), data("first"))]);
    let mut second = Transaction::new();
    second.set(1, "v".into(), data("second"));
    second.create(
        2,
        vec![("parent*".into(), data(Value::Array(vec![make_ref(1)])))],
    );
    commit(image, &[(5, &first), (6, &second)], 3, 2);
    let meta = image.meta().expect("meta");
    assert_eq!((meta.next_oid, meta.objects, meta.last_tx), (3, 2, 6));
    assert_eq!(slots(image, 1), vec![("v".to_string(), data("second"))]);
    assert!(image.object_exists(2).expect("exists"));
}

fn install(oid: Oid, selector: &str, version: u32, wasm: &[u8]) -> Install {
    Install {
        oid,
        selector: selector.into(),
        method: MethodRef {
            version,
            hash: module_hash(wasm),
        },
        provenance: Provenance::Client,
        wasm: wasm.to_vec(),
        source: None,
    }
}

fn installs_keep_history(image: &dyn Image) {
    let mut create = Transaction::new();
    create.create(4, vec![]);
    create.create(5, vec![]);
    commit(image, &[(1, &create)], 6, 2);
    let mut tx = Transaction::new();
    tx.install(install(4, "run", 1, b"one"));
    tx.install(install(5, "other", 1, b"elsewhere"));
    let blob = tx_blob(&mut tx, b"weights");
    commit(image, &[(2, &tx)], 6, 2);
    let mut tx = Transaction::new();
    // Version 2 keeps the text it was compiled from, a blob of its own.
    let source = SourceRef {
        language: "wat".into(),
        hash: tx_blob(&mut tx, b"(module)"),
    };
    tx.install(Install {
        source: Some(source.clone()),
        ..install(4, "run", 2, b"two")
    });
    tx.install(install(4, "go", 1, b"three"));
    commit(image, &[(3, &tx)], 6, 2);

    // The slot points at the active version.
    assert!(slots(image, 4).contains(&(
        "run".to_string(),
        Slot::Method(MethodRef {
            version: 2,
            hash: module_hash(b"two"),
        })
    )));
    // History: every version, each selector's versions together and in
    // order, with the transaction that installed it; nothing of object 5.
    let history = image.method_history(4).expect("history");
    let run: Vec<(u32, u64)> = history
        .iter()
        .filter(|(s, _)| s == "run")
        .map(|(_, r)| (r.version, r.tx))
        .collect();
    assert_eq!(run, vec![(1, 2), (2, 3)]);
    assert_eq!(history.len(), 3, "{history:?}");
    let selectors: Vec<&str> = history.iter().map(|(s, _)| s.as_str()).collect();
    let first_run = selectors.iter().position(|s| *s == "run").expect("run");
    assert_eq!(
        selectors[first_run + 1],
        "run",
        "versions of one selector are together"
    );
    assert!(history
        .iter()
        .all(|(_, r)| r.provenance == Provenance::Client));
    let sources: Vec<Option<&SourceRef>> = history
        .iter()
        .filter(|(s, _)| s == "run")
        .map(|(_, r)| r.source.as_ref())
        .collect();
    assert_eq!(sources, vec![None, Some(&source)]);
    assert_eq!(
        image.load_module(&source.hash).expect("source").as_deref(),
        Some(&b"(module)"[..])
    );
    assert_eq!(image.method_history(5).expect("history").len(), 1);
    // Modules and blobs by hash.
    for wasm in [&b"one"[..], b"two", b"three", b"elsewhere"] {
        assert_eq!(
            image
                .load_module(&module_hash(wasm))
                .expect("module")
                .as_deref(),
            Some(wasm)
        );
    }
    assert_eq!(
        image.load_module(&blob).expect("blob").as_deref(),
        Some(&b"weights"[..])
    );
}

fn tx_blob(tx: &mut Transaction, bytes: &[u8]) -> String {
    let hash = module_hash(bytes);
    tx.store_blob(hash.clone(), bytes.to_vec());
    hash
}

fn compiled_cache_round_trips(image: &dyn Image) {
    assert!(image.load_compiled(b"key").expect("load").is_none());
    image.store_compiled(b"key", b"native").expect("store");
    assert_eq!(
        image.load_compiled(b"key").expect("load").as_deref(),
        Some(&b"native"[..])
    );
    image.store_compiled(b"key", b"again").expect("store");
    assert_eq!(
        image.load_compiled(b"key").expect("load").as_deref(),
        Some(&b"again"[..])
    );
}

fn compiled_modules_of_another_engine_are_dropped(image: &dyn Image) {
    image.store_compiled(b"new:a", b"native").expect("store");
    image.store_compiled(b"old:a", b"stale").expect("store");
    image.store_compiled(b"old:b", b"stale").expect("store");
    assert_eq!(image.retain_compiled(b"new:").expect("retain"), 2);
    assert!(image.load_compiled(b"old:a").expect("load").is_none());
    assert!(image.load_compiled(b"old:b").expect("load").is_none());
    assert!(image.load_compiled(b"new:a").expect("load").is_some());
    assert_eq!(image.retain_compiled(b"new:").expect("retain"), 0);
}

fn checkpoints_are_distinct(image: &dyn Image) {
    let mut tx = Transaction::new();
    tx.create(1, vec![("a".into(), data("b"))]);
    commit(image, &[(1, &tx)], 2, 1);
    let first = image.checkpoint().expect("checkpoint");
    let second = image.checkpoint().expect("checkpoint");
    assert_ne!(first, second);
    assert!(!first.is_empty());
    // A checkpoint leaves the image as it was.
    assert_eq!(slots(image, 1), vec![("a".to_string(), data("b"))]);
}

fn every_slot_kind_round_trips(image: &dyn Image) {
    let nested = Value::Map(vec![
        (
            Value::from("list"),
            Value::Array(vec![Value::from(-1), Value::F64(0.5)]),
        ),
        (Value::from("bin"), Value::Binary(vec![0, 255])),
        (Value::from("ref"), make_ref(9)),
        (Value::from("nil"), Value::Nil),
    ]);
    let method = Slot::Method(MethodRef {
        version: 3,
        hash: module_hash(b"m"),
    });
    let mut tx = Transaction::new();
    tx.create(
        9,
        vec![
            ("clone".into(), Slot::Primitive(Primitive::Clone)),
            ("data".into(), Slot::Data(nested.clone())),
            ("m".into(), method.clone()),
            ("ünïcode".into(), data("ok")),
        ],
    );
    commit(image, &[(1, &tx)], 10, 1);
    assert_eq!(
        slots(image, 9),
        vec![
            ("clone".to_string(), Slot::Primitive(Primitive::Clone)),
            ("data".to_string(), Slot::Data(nested)),
            ("m".to_string(), method),
            ("ünïcode".to_string(), data("ok")),
        ]
    );
}
