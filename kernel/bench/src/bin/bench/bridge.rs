//! Bridge scenarios: one kernel per scenario, and the bare ZeroMQ floor.

use super::*;

pub(crate) struct Ctx {
    pub(crate) batos: PathBuf,
    pub(crate) zmq: zmq::Context,
    pub(crate) tmp: TempRoot,
    pub(crate) dirs: u32,
    pub(crate) keep_temp: bool,
    pub(crate) duration: Duration,
    pub(crate) reply_timeout: Duration,
    pub(crate) rust_log: String,
    pub(crate) kernel_version: Option<String>,
}

impl Ctx {
    /// A fresh directory for one scenario.
    pub(crate) fn scenario_dir(&mut self, name: &str) -> Result<PathBuf> {
        self.dirs += 1;
        let dir = self.tmp.path.join(format!("{:02}-{name}", self.dirs));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    pub(crate) fn finish_dir(&self, dir: &Path) {
        if !self.keep_temp {
            let _ = fs::remove_dir_all(dir);
        }
    }

    pub(crate) fn start_kernel(
        &self,
        dir: &Path,
        durability: Durability,
        endpoint: &str,
        env: &[(&str, String)],
    ) -> Result<Kernel> {
        let data = dir.join("data");
        fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        Kernel::start(
            &self.batos,
            &data,
            &dir.join("kernel.log"),
            durability,
            endpoint,
            &self.rust_log,
            env,
        )
    }

    pub(crate) fn note_version(&mut self, client: &mut Client) -> Result<()> {
        let pong = client.call("ping", vec![])?;
        if self.kernel_version.is_none() {
            self.kernel_version = pong["version"].as_str().map(str::to_string);
        }
        Ok(())
    }
}

pub(crate) fn run_bridge_scenario(ctx: &mut Ctx, sc: &Scenario) -> Result<Measured> {
    let dir = ctx.scenario_dir(&sc.name)?;
    let out = bridge_scenario_in(ctx, sc, &dir);
    if let Err(e) = &out {
        if !format!("{e:#}").contains("log tail") {
            eprintln!(
                "  kernel log tail ({}):\n{}",
                sc.name,
                log_tail(&dir.join("kernel.log"), 20)
            );
        }
    }
    ctx.finish_dir(&dir);
    out
}

/// Answers every request on a ROUTER socket with `{v: 1, id, status: "ok",
/// result: {}}` until `stop`; a thread with its own ZeroMQ context (its own
/// I/O thread), as a server process would have.
pub(crate) fn zmq_floor_server(stop: Arc<AtomicBool>) -> Result<(String, thread::JoinHandle<()>)> {
    let zctx = zmq::Context::new();
    let sock = zctx.socket(zmq::ROUTER)?;
    sock.set_linger(0)?;
    sock.set_rcvtimeo(50)?;
    sock.bind("tcp://127.0.0.1:*")?;
    let endpoint = sock
        .get_last_endpoint()?
        .map_err(|_| anyhow!("the endpoint is not UTF-8"))?;
    let handle = thread::spawn(move || {
        let _zctx = zctx;
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut frames) = sock.recv_multipart(0) else {
                continue;
            };
            let Some(body) = frames.pop() else { continue };
            let id = rmpv::decode::read_value(&mut body.as_slice())
                .ok()
                .and_then(|v| v["id"].as_u64());
            let reply = map(vec![
                ("v", Value::from(1)),
                ("id", id.map_or(Value::Nil, Value::from)),
                ("status", Value::from("ok")),
                ("result", map(vec![])),
            ]);
            let mut out = Vec::with_capacity(32);
            if rmpv::encode::write_value(&mut out, &reply).is_ok() {
                frames.push(out);
                let _ = sock.send_multipart(frames, 0);
            }
        }
    });
    Ok((endpoint, handle))
}

pub(crate) fn bridge_scenario_in(ctx: &mut Ctx, sc: &Scenario, dir: &Path) -> Result<Measured> {
    if sc.op == Op::ZmqFloor {
        let stop = Arc::new(AtomicBool::new(false));
        let (endpoint, server) = zmq_floor_server(stop.clone())?;
        let mut client = Client::connect(&ctx.zmq, &endpoint, ctx.reply_timeout, None)?;
        let measured = measure_op(&mut client, sc, ctx.duration);
        stop.store(true, Ordering::Relaxed);
        let _ = server.join();
        return measured;
    }
    let curve = if sc.curve {
        Some(curve_keys(dir)?)
    } else {
        None
    };
    let env = match &curve {
        Some((_, env)) => env.clone(),
        None => Vec::new(),
    };
    let mut kernel = ctx.start_kernel(dir, sc.op.durability(), "tcp://127.0.0.1:*", &env)?;
    let endpoint = kernel.wait_ready(READY_TIMEOUT)?.endpoint.clone();
    let client_keys = curve.as_ref().map(|(c, _)| c);
    let mut client = Client::connect(&ctx.zmq, &endpoint, ctx.reply_timeout, client_keys)?;
    client.server_pid = Some(kernel.pid());
    ctx.note_version(&mut client)?;
    let noise = (sc.op == Op::PingBesideLargeBodies)
        .then(|| large_bodies(ctx, &endpoint))
        .transpose()?;
    let measured = measure_op(&mut client, sc, ctx.duration);
    if let Some((stop, sender)) = noise {
        stop.store(true, Ordering::Relaxed);
        sender
            .join()
            .map_err(|_| anyhow!("the large-body sender panicked"))??;
    }
    drop(client);
    let notes = stop_notes(kernel.stop());
    let mut m = measured?;
    m.notes.extend(notes);
    Ok(m)
}

/// A connection that keeps four large bodies in flight until stopped:
/// `set_slot`s of an array of 1,000,000 integers (about 1 MiB, the most
/// values a body may hold) to an object that does not exist, so each costs
/// the kernel its decoding and little else, and is answered
/// `no_such_object`.
fn large_bodies(
    ctx: &Ctx,
    endpoint: &str,
) -> Result<(Arc<AtomicBool>, thread::JoinHandle<Result<()>>)> {
    let mut client = Client::connect(&ctx.zmq, endpoint, ctx.reply_timeout, None)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let values = Value::Array((0..1_000_000u64).map(|i| Value::from(i % 100)).collect());
    let sender = thread::spawn(move || -> Result<()> {
        let set = || {
            Req::new(
                "set_slot",
                vec![
                    ("oid", Value::from(u64::MAX >> 1)),
                    ("slot", Value::from("large")),
                    ("value", values.clone()),
                ],
            )
        };
        let mut in_flight = 0;
        while !stopped.load(Ordering::Relaxed) || in_flight > 0 {
            while in_flight < 4 && !stopped.load(Ordering::Relaxed) {
                client.send(set())?;
                in_flight += 1;
            }
            let reply = client.recv()?.context("no reply to a large body in time")?;
            match reply.result {
                Err(e) if e.starts_with("no_such_object") => {}
                other => bail!("a large body got {other:?}, expected no_such_object"),
            }
            in_flight -= 1;
        }
        Ok(())
    });
    Ok((stop, sender))
}

/// Keys for a CURVE scenario in `dir`: the client's credentials, and the
/// environment that gives the kernel its key pair and the client (as admin).
fn curve_keys(dir: &Path) -> Result<(Curve, Vec<(&'static str, String)>)> {
    let keys = dir.join("keys");
    let admins = keys.join("clients").join("admin");
    fs::create_dir_all(&admins).with_context(|| format!("creating {}", admins.display()))?;
    let kernel = KeyPair::generate()?;
    let client = KeyPair::generate()?;
    let (kernel_key, _) = kernel.write(&keys, "kernel")?;
    let (_, client_public) = client.write(&keys, "bench")?;
    fs::copy(&client_public, admins.join("bench.pub"))
        .with_context(|| format!("allowing {}", client_public.display()))?;
    let env = vec![
        ("BATOS_BRIDGE_CURVE_KEY", kernel_key.display().to_string()),
        (
            "BATOS_BRIDGE_CURVE_CLIENTS",
            keys.join("clients").display().to_string(),
        ),
    ];
    let curve = Curve {
        server: kernel.public,
        pair: client,
    };
    Ok((curve, env))
}

pub(crate) fn measure_op(
    client: &mut Client,
    sc: &Scenario,
    duration: Duration,
) -> Result<Measured> {
    let k = sc.in_flight;
    match sc.op {
        Op::SetSlot(_) => {
            let (oids, _) = create_objects(
                client,
                SPREAD as u64,
                16,
                |_| map(vec![("x", Value::from(0))]),
                None,
            )?;
            // The last value sent to each object: it must be what the object
            // holds at the end (same-object order is kept, all were acked).
            let mut last: Vec<u64> = vec![0; SPREAD];
            let mut make = |s: u64| {
                let i = pick(s, SPREAD);
                last[i] = s;
                Req::new(
                    "set_slot",
                    vec![
                        ("oid", Value::from(oids[i])),
                        ("slot", Value::from("x")),
                        ("value", Value::from(s)),
                    ],
                )
            };
            let mut check = |_s: u64, _v: Value| Ok(());
            let mut m = warm_then_measure(client, k, duration, &mut make, &mut check)?;
            for (i, &oid) in oids.iter().enumerate() {
                let got = client.call(
                    "get_slot",
                    vec![("oid", Value::from(oid)), ("slot", Value::from("x"))],
                )?;
                if got.as_u64() != Some(last[i]) {
                    m.error(format!("object {oid} holds {got} after the run; the last acknowledged set_slot wrote {}", last[i]));
                }
            }
            Ok(m)
        }
        Op::Ping | Op::ZmqFloor | Op::PingBesideLargeBodies => {
            let mut make = |_s: u64| Req::new("ping", vec![]);
            let mut check = |_s: u64, v: Value| match v.as_map() {
                Some(_) => Ok(()),
                None => Err(format!("ping gave {v}, expected a map")),
            };
            warm_then_measure(client, k, duration, &mut make, &mut check)
        }
        Op::GetSlot => {
            let (oids, _) = create_objects(
                client,
                SPREAD as u64,
                16,
                |i| map(vec![("x", Value::from(i))]),
                None,
            )?;
            let mut make = |s: u64| {
                Req::new(
                    "get_slot",
                    vec![
                        ("oid", Value::from(oids[pick(s, SPREAD)])),
                        ("slot", Value::from("x")),
                    ],
                )
            };
            let mut check = |s: u64, v: Value| {
                let want = pick(s, SPREAD) as u64;
                if v.as_u64() == Some(want) {
                    Ok(())
                } else {
                    Err(format!("get_slot gave {v}, expected {want}"))
                }
            };
            warm_then_measure(client, k, duration, &mut make, &mut check)
        }
        Op::Send { depth } => {
            // base (holds x) <- c1 <- ... <- c(depth-1) <- leaf_j, j < SPREAD:
            // every leaf finds x `depth` hops up its parent* chain.
            let base = client.call(
                "create_object",
                vec![("slots", map(vec![("x", Value::from(DELEGATED_VALUE))]))],
            )?;
            let mut top = oid_of(&base)?;
            for _ in 1..depth {
                let r = client.call(
                    "create_object",
                    vec![(
                        "slots",
                        map(vec![("parent*", Value::Array(vec![oid_ref(top)]))]),
                    )],
                )?;
                top = oid_of(&r)?;
            }
            let (leaves, _) = create_objects(
                client,
                SPREAD as u64,
                16,
                |_| map(vec![("parent*", Value::Array(vec![oid_ref(top)]))]),
                None,
            )?;
            let first = client.call(
                "send",
                vec![
                    ("oid", Value::from(leaves[0])),
                    ("selector", Value::from("x")),
                ],
            )?;
            if first["value"].as_i64() != Some(DELEGATED_VALUE) {
                bail!("`send x` to a leaf at depth {depth} gave {first}, expected value {DELEGATED_VALUE}");
            }
            let mut make = |s: u64| {
                Req::new(
                    "send",
                    vec![
                        ("oid", Value::from(leaves[pick(s, SPREAD)])),
                        ("selector", Value::from("x")),
                    ],
                )
            };
            let mut check = |_s: u64, v: Value| {
                if v["value"].as_i64() == Some(DELEGATED_VALUE)
                    && v["generated"].as_bool() == Some(false)
                {
                    Ok(())
                } else {
                    Err(format!("send x gave {v}, expected value {DELEGATED_VALUE} found by delegation, generated false"))
                }
            };
            warm_then_measure(client, k, duration, &mut make, &mut check)
        }
        Op::Counter { python } => {
            let base = client.call("create_object", vec![])?;
            let base = oid_of(&base)?;
            let code = if python {
                ("python", Value::from(COUNTER_PY))
            } else {
                ("wat", Value::from(COUNTER_WAT))
            };
            // The Python counter reads `count`: every object starts with one.
            client.call(
                "set_slot",
                vec![
                    ("oid", Value::from(base)),
                    ("slot", Value::from("count")),
                    ("value", Value::from(0)),
                ],
            )?;
            client.call(
                "create_method",
                vec![
                    ("oid", Value::from(base)),
                    ("selector", Value::from("increment")),
                    code,
                ],
            )?;
            let (leaves, _) = create_objects(
                client,
                SPREAD as u64,
                16,
                |_| map(vec![("parent*", Value::Array(vec![oid_ref(base)]))]),
                None,
            )?;
            let mut make = |s: u64| {
                Req::new(
                    "send",
                    vec![
                        ("oid", Value::from(leaves[pick(s, SPREAD)])),
                        ("selector", Value::from("increment")),
                    ],
                )
            };
            let mut check = |_s: u64, v: Value| match v["value"].as_i64() {
                Some(n) if n > 0 => Ok(()),
                _ => Err(format!(
                    "send increment gave {v}, expected a positive count"
                )),
            };
            warm_then_measure(client, k, duration, &mut make, &mut check)
        }
        Op::CreateObject => {
            let mut make = |s: u64| {
                Req::new(
                    "create_object",
                    vec![("slots", map(vec![("n", Value::from(s))]))],
                )
            };
            let mut check = |_s: u64, v: Value| match v["oid"].as_u64() {
                Some(_) => Ok(()),
                None => Err(format!("create_object result without an integer oid: {v}")),
            };
            warm_then_measure(client, k, duration, &mut make, &mut check)
        }
    }
}
