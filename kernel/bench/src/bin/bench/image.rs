//! The large image: time to first `ping` and RSS after touching objects.

use super::*;

#[derive(Default)]
pub(crate) struct ImageOutcome {
    pub(crate) objects: u64,
    pub(crate) build: Option<Measured>,
    pub(crate) build_shutdown: Option<Duration>,
    pub(crate) disk_bytes: u64,
    /// `objects` as reported by the first `ping` after reopening.
    pub(crate) ping_objects: Option<u64>,
    pub(crate) first_ping: Option<Duration>,
    pub(crate) ready_line: Option<Duration>,
    pub(crate) rss_open: Option<u64>,
    pub(crate) touched: u64,
    pub(crate) touch: Option<Measured>,
    pub(crate) rss_touched: Option<u64>,
    /// `rss_touched` split: anonymous memory, and file pages (the binary's code).
    pub(crate) rss_touched_anon: Option<u64>,
    pub(crate) rss_touched_file: Option<u64>,
    pub(crate) rss_peak: Option<u64>,
    pub(crate) errors: Vec<String>,
    pub(crate) notes: Vec<String>,
}

/// A `/proc/PID/status` field in bytes (the kernel reports kB).
pub(crate) fn proc_status_bytes(pid: u32, key: &str) -> Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("no {key} in /proc/{pid}/status"))?;
    let kb: u64 = line[key.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unparsable line {line:?}"))?;
    Ok(kb * 1024)
}

pub(crate) fn run_image(ctx: &mut Ctx, objects: u64, touch: u64) -> Result<ImageOutcome> {
    let dir = ctx.scenario_dir("image")?;
    let mut out = ImageOutcome {
        objects,
        ..ImageOutcome::default()
    };
    let r = image_in(ctx, &dir, &mut out, touch);
    if r.as_ref()
        .is_err_and(|e| !format!("{e:#}").contains("log tail"))
    {
        eprintln!(
            "  kernel log tail (image):\n{}",
            log_tail(&dir.join("kernel.log"), 20)
        );
    }
    ctx.finish_dir(&dir);
    r.map(|()| out)
}

pub(crate) fn image_in(
    ctx: &mut Ctx,
    dir: &Path,
    out: &mut ImageOutcome,
    touch: u64,
) -> Result<()> {
    let n = out.objects;
    // 1. Build the image in bulk, then stop the kernel cleanly.
    let mut kernel = ctx.start_kernel(dir, Durability::Buffered, "tcp://127.0.0.1:*", &[])?;
    let endpoint = kernel.wait_ready(READY_TIMEOUT)?.endpoint.clone();
    let mut client = Client::connect(&ctx.zmq, &endpoint, ctx.reply_timeout, None)?;
    ctx.note_version(&mut client)?;
    eprintln!(
        "  building an image of {} objects ({BULK_IN_FLIGHT} create_object in flight)",
        thousands(n)
    );
    let (oids, build) = create_objects(
        &mut client,
        n,
        BULK_IN_FLIGHT,
        |i| map(vec![("n", Value::from(i))]),
        Some("created"),
    )?;
    out.build = Some(build);
    drop(client);
    let stopped = kernel
        .stop()
        .context("stopping the kernel after the build")?;
    if stopped.already_exited || !stopped.status.success() {
        out.notes
            .push(format!("the build kernel stopped with {}", stopped.status));
    }
    out.build_shutdown = Some(stopped.took);
    drop(kernel);
    out.disk_bytes = dir_size(&dir.join("data"));

    // 2. Reopen on a known port; time spawn -> first answered ping. The DEALER
    // connects at once and retries every millisecond until the kernel binds.
    let port = free_port()?;
    let endpoint = format!("tcp://127.0.0.1:{port}");
    eprintln!(
        "  reopening the image ({}) and pinging",
        fmt_mb(out.disk_bytes)
    );
    let mut kernel = ctx.start_kernel(dir, Durability::Buffered, &endpoint, &[])?;
    let t0 = kernel.spawned_at;
    let probe = Connect::new(&endpoint)
        .context(&ctx.zmq)
        .timeout(Duration::from_millis(2))
        .reconnect_every(Duration::from_millis(1))
        .open()?;
    let mut ping_id: u64 = 0;
    let mut last_send: Option<Instant> = None;
    let (first_ping, pong) = loop {
        if t0.elapsed() > FIRST_PING_TIMEOUT {
            bail!("the reopened image answered no ping within {FIRST_PING_TIMEOUT:?}");
        }
        if let Some(status) = kernel.proc_.exited() {
            bail!(
                "the kernel exited ({status}) while opening the image; log tail:\n{}",
                log_tail(&kernel.log, 30)
            );
        }
        if last_send.is_none_or(|t| t.elapsed() >= Duration::from_millis(20)) {
            ping_id += 1;
            probe.send(encode_request(ping_id, Req::new("ping", vec![])))?;
            last_send = Some(Instant::now());
        }
        match probe.recv() {
            Ok(frames) => {
                let at = t0.elapsed();
                let Some(body) = frames.last() else { continue };
                let reply = Reply::decode(body)?;
                match reply.result {
                    Ok(v) => break (at, v),
                    // e.g. `overloaded` while loading: keep polling
                    Err(e) => {
                        if out.notes.len() < 5 {
                            out.notes.push(format!(
                                "ping answered `{e}` {} after start, while opening",
                                fmt_secs(at)
                            ));
                        }
                    }
                }
            }
            Err(batos_client::ClientError::Timeout { .. }) => {}
            Err(e) => return Err(anyhow!(e).context("receiving the first ping")),
        }
    };
    out.first_ping = Some(first_ping);
    out.rss_open = Some(proc_status_bytes(kernel.pid(), "VmRSS:")?);
    drop(probe);
    out.ping_objects = pong["objects"].as_u64();
    match out.ping_objects {
        Some(seen) if seen >= n => {}
        seen => out.errors.push(format!(
            "after reopening, ping reports {seen:?} objects; {n} were created"
        )),
    }
    let ready = kernel.wait_ready(READY_TIMEOUT)?;
    out.ready_line = Some(ready.at.saturating_duration_since(t0));

    // 3. Touch distinct objects (`send` of their own data slot activates each).
    let touch = touch.min(n);
    let mut client = Client::connect(&ctx.zmq, &endpoint, ctx.reply_timeout, None)?;
    let mut rng = StdRng::seed_from_u64(0xBA70_5EED);
    let chosen = rand::seq::index::sample(&mut rng, oids.len(), usize::try_from(touch)?).into_vec();
    let mut make = |s: u64| {
        Req::new(
            "send",
            vec![
                ("oid", Value::from(oids[chosen[s as usize]])),
                ("selector", Value::from("n")),
            ],
        )
    };
    let mut check = |s: u64, v: Value| {
        let want = chosen[s as usize] as u64;
        if v["value"].as_u64() == Some(want) {
            Ok(())
        } else {
            Err(format!("send n gave {v}, expected {want}"))
        }
    };
    let mut seq = 0;
    let touched = drive(
        &mut client,
        64,
        Until::Ops(touch),
        None,
        &mut seq,
        &mut make,
        &mut check,
    )?;
    out.touched = touch;
    out.rss_touched = Some(proc_status_bytes(kernel.pid(), "VmRSS:")?);
    out.rss_touched_anon = proc_status_bytes(kernel.pid(), "RssAnon:").ok();
    out.rss_touched_file = proc_status_bytes(kernel.pid(), "RssFile:").ok();
    out.rss_peak = proc_status_bytes(kernel.pid(), "VmHWM:").ok();
    if touched.errors > 0 {
        out.errors
            .extend(touched.error_samples.iter().map(|e| format!("touch: {e}")));
        if touched.errors > touched.error_samples.len() as u64 {
            out.errors
                .push(format!("touch: {} errors in all", touched.errors));
        }
    }
    out.touch = Some(touched);
    drop(client);
    out.notes.extend(stop_notes(kernel.stop()));
    Ok(())
}
