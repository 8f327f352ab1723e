//! The object space over the in-memory image: activation, passivation,
//! methods in a message's transaction, and the `MethodWriter` tier.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use batos_actors::committer::NoEvents;
use batos_actors::space::{MethodCode, NoHooks};
use batos_actors::{ActorError, Candidate, MethodRequest, MethodWriter, ObjectSpace, SpaceConfig};
use batos_object::image::Image;
use batos_object::slot::{MethodSource, Provenance};
use batos_object::testing::MemoryImage;
use batos_object::value::Value;
use batos_sandbox::audit::{wat_to_wasm, AuditLimits};
use batos_sandbox::{CacheKey, SandboxLimits};
use futures::future::{BoxFuture, FutureExt};

fn config() -> SpaceConfig {
    SpaceConfig {
        arbiters: 2,
        passivate_after_ms: 60_000,
        passivate_check_ms: 10,
        sync: true,
        max_group: 64,
        sandbox: SandboxLimits::default(),
        audit: AuditLimits::default(),
        sandbox_threads: 2,
        cache_key: CacheKey::new([7; 32]),
        max_transaction_bytes: 64 << 20,
    }
}

/// Runs `test` in an actix system over a fresh in-memory image.
fn with_space<F, Fut>(config: SpaceConfig, test: F)
where
    F: FnOnce(ObjectSpace, Arc<MemoryImage>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    actix_rt::System::new().block_on(async move {
        let image = Arc::new(MemoryImage::new());
        let space = ObjectSpace::open(
            image.clone(),
            config,
            Arc::new(NoEvents),
            Arc::new(NoHooks),
            &prometheus::Registry::new(),
        )
        .await
        .expect("open");
        test(space.clone(), image).await;
        space.shutdown().await;
    });
}

/// Waits for `done` to hold, checking every few milliseconds, for at most
/// `limit` (passivation has no event to wait on).
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    done()
}

/// The counter example of `docs/method-abi.md` (the document's examples
/// are what people copy; here one runs in the runtime).
fn counter_wat() -> &'static str {
    const DOC: &str = include_str!("../../../docs/method-abi.md");
    let start = DOC.find(";; counter:").expect("the counter example");
    let end = start + DOC[start..].find("```").expect("the end of the example");
    &DOC[start..end]
}

/// A new object with the counter installed as `increment`.
async fn counter_object(space: &ObjectSpace) -> batos_object::value::Oid {
    let oid = space.create_object(vec![]).await.unwrap();
    space
        .create_method(
            oid,
            "increment".into(),
            MethodCode::Wat(counter_wat().into()),
        )
        .await
        .unwrap();
    oid
}

/// Writes `count` = 99, then traps.
const WRITE_THEN_TRAP: &str = r#"(module
  (import "uvm" "set_slot_i64" (func $set_slot_i64 (param i32 i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "count")
  (func (export "invoke")
    (drop (call $set_slot_i64 (i32.const 0) (i32.const 5) (i64.const 99)))
    unreachable))"#;

#[test]
fn objects_activate_on_demand_and_passivate_when_idle() {
    let mut config = config();
    config.passivate_after_ms = 30;
    with_space(config, |space, image| async move {
        let oid = space
            .create_object(vec![("name".into(), Value::from("ada"))])
            .await
            .unwrap();
        assert!(image.object_exists(oid).unwrap());
        assert_eq!(
            space.get_slot(oid, "name".into()).await.unwrap(),
            Value::from("ada")
        );
        assert!(space.live_objects() >= 1);
        assert!(
            eventually(Duration::from_secs(10), || space.live_objects() == 0).await,
            "idle objects passivate"
        );
        // Activated again, from the image.
        space
            .set_slot(oid, "age".into(), Value::from(36))
            .await
            .unwrap();
        assert_eq!(
            space.get_slot(oid, "age".into()).await.unwrap(),
            Value::from(36)
        );
        assert_eq!(
            space.get_slot(oid, "name".into()).await.unwrap(),
            Value::from("ada")
        );
        // Delegation reaches a passivated parent.
        let child = space
            .create_object(vec![(
                "parent*".into(),
                Value::Array(vec![batos_object::value::make_ref(oid)]),
            )])
            .await
            .unwrap();
        assert!(eventually(Duration::from_secs(10), || space.live_objects() == 0).await);
        let found = space.send(child, "name".into(), vec![]).await.unwrap();
        assert_eq!(found.value, Value::from("ada"));
    });
}

#[test]
fn a_missing_object_is_reported_and_not_kept_live() {
    with_space(config(), |space, _image| async move {
        let err = space.get_slot(424_242, "x".into()).await.unwrap_err();
        assert!(matches!(err, ActorError::NoSuchObject(_)), "{err}");
        assert!(eventually(Duration::from_secs(10), || space.live_objects() == 0).await);
    });
}

#[test]
fn a_method_commits_its_writes_and_a_trap_keeps_none() {
    with_space(config(), |space, image| async move {
        let oid = counter_object(&space).await;
        for expected in 1..=3 {
            let out = space.send(oid, "increment".into(), vec![]).await.unwrap();
            assert_eq!(out.value, Value::from(expected));
            assert!(!out.generated);
        }
        let committed = image.load_object(oid).unwrap().unwrap();
        assert!(committed
            .slots
            .iter()
            .any(|(n, s)| n == "count" && *s == batos_object::slot::Slot::Data(Value::from(3))));

        space
            .create_method(
                oid,
                "broken".into(),
                MethodCode::Wat(WRITE_THEN_TRAP.into()),
            )
            .await
            .unwrap();
        let err = space.send(oid, "broken".into(), vec![]).await.unwrap_err();
        assert!(matches!(err, ActorError::MethodTrap(_)), "{err}");
        assert_eq!(
            space.get_slot(oid, "count".into()).await.unwrap(),
            Value::from(3),
            "the trapped method's write was dropped"
        );
        // Rollback is a primitive run in the transaction.
        space
            .send(
                oid,
                "rollbackMethod_toVersion_".into(),
                vec![Value::from("increment"), Value::from(1)],
            )
            .await
            .unwrap();
        let history = space.full_state(oid).await.unwrap().methods;
        assert_eq!(history.len(), 2);
    });
}

#[test]
fn concurrent_senders_to_one_object_are_serialised() {
    with_space(config(), |space, _image| async move {
        let oid = counter_object(&space).await;
        let sends: Vec<_> = (0..50)
            .map(|_| space.send(oid, "increment".into(), vec![]))
            .collect();
        let mut results: Vec<i64> = futures::future::join_all(sends)
            .await
            .into_iter()
            .map(|r| r.unwrap().value.as_i64().unwrap())
            .collect();
        results.sort();
        assert_eq!(results, (1..=50).collect::<Vec<_>>());
    });
}

/// A writer that answers every request with the counter, and counts calls.
struct CounterWriter {
    asked: Mutex<Vec<(u64, String, usize)>>,
}

impl MethodWriter for CounterWriter {
    fn write(
        self: Arc<Self>,
        _space: ObjectSpace,
        request: MethodRequest,
    ) -> BoxFuture<'static, Result<Arc<Candidate>, ActorError>> {
        async move {
            self.asked.lock().unwrap().push((
                request.receiver,
                request.selector.clone(),
                request.args.len(),
            ));
            Ok(Arc::new(Candidate {
                wasm: wat_to_wasm(counter_wat()).map_err(ActorError::internal)?,
                provenance: Provenance::Model {
                    model: "test-writer".into(),
                    expert: None,
                    prompt_hash: "0".repeat(64),
                    attempts: 1,
                },
                source: Some(MethodSource::wat(counter_wat())),
            }))
        }
        .boxed()
    }
}

#[test]
fn does_not_understand_asks_the_writer_and_installs_its_method() {
    with_space(config(), |space, _image| async move {
        let oid = space.create_object(vec![]).await.unwrap();
        // Without a writer: a clear refusal.
        let err = space.send(oid, "tally".into(), vec![]).await.unwrap_err();
        assert!(matches!(err, ActorError::DoesNotUnderstand(_)), "{err}");

        let writer = Arc::new(CounterWriter {
            asked: Mutex::new(Vec::new()),
        });
        space.enable_generation(writer.clone());
        let out = space.send(oid, "tally".into(), vec![]).await.unwrap();
        assert!(out.generated);
        assert_eq!(out.value, Value::from(1));
        // Installed: the next send runs it without asking again.
        let out = space.send(oid, "tally".into(), vec![]).await.unwrap();
        assert!(!out.generated);
        assert_eq!(out.value, Value::from(2));
        assert_eq!(
            *writer.asked.lock().unwrap(),
            vec![(oid, "tally".to_string(), 0)]
        );
        let state = space.full_state(oid).await.unwrap();
        let (_, record) = state
            .methods
            .iter()
            .find(|(s, _)| s == "tally")
            .expect("history");
        assert!(matches!(record.provenance, Provenance::Model { .. }));
    });
}
