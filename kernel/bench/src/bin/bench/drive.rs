//! Load driving and statistics: pipelined requests, latencies, rates.

use super::*;

#[derive(Default)]
pub(crate) struct Measured {
    pub(crate) ops: u64,
    pub(crate) elapsed: Duration,
    /// Per-request latency in nanoseconds, sorted by `finish`.
    pub(crate) lat_ns: Vec<u64>,
    pub(crate) errors: u64,
    pub(crate) error_samples: Vec<String>,
    pub(crate) notes: Vec<String>,
    /// CPU time the server process spent per operation while measured
    /// (user + system, all threads), when the server is a process we know.
    pub(crate) server_cpu_us_per_op: Option<f64>,
}

impl Measured {
    pub(crate) fn error(&mut self, e: impl Into<String>) {
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(e.into());
        }
    }

    pub(crate) fn absorb_errors(&mut self, other: Measured) {
        for e in other.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(e);
            }
        }
        self.errors += other.errors;
    }

    pub(crate) fn ops_per_s(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.ops as f64 / self.elapsed.as_secs_f64()
        }
    }

    pub(crate) fn pct_ns(&self, p: f64) -> Option<f64> {
        let n = self.lat_ns.len();
        if n == 0 {
            return None;
        }
        // Nearest rank.
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
        Some(self.lat_ns[rank - 1] as f64)
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Until {
    Elapsed(Duration),
    Ops(u64),
}

/// Keep `in_flight` requests outstanding until `until`, then drain. Every
/// reply is matched to its request by id; its latency is recorded and its
/// result passed to `check` (with the request's sequence number).
#[allow(clippy::too_many_arguments)]
pub(crate) fn drive<M, C>(
    client: &mut Client,
    in_flight: usize,
    until: Until,
    progress: Option<&str>,
    seq: &mut u64,
    make: &mut M,
    check: &mut C,
) -> Result<Measured>
where
    M: FnMut(u64) -> Req,
    C: FnMut(u64, Value) -> Result<(), String>,
{
    let in_flight = in_flight.max(1);
    let mut pending: HashMap<u64, (u64, Instant)> = HashMap::with_capacity(in_flight * 2);
    let mut m = Measured::default();
    if let Until::Ops(n) = until {
        m.lat_ns.reserve(usize::try_from(n).unwrap_or(0));
    }
    let start = Instant::now();
    let mut last_done = start;
    let mut sent: u64 = 0;
    let progress_step = match until {
        Until::Ops(n) => (n / 10).max(1),
        Until::Elapsed(_) => u64::MAX,
    };
    let mut next_progress = progress_step;
    loop {
        while pending.len() < in_flight {
            let more = match until {
                Until::Elapsed(d) => start.elapsed() < d,
                Until::Ops(n) => sent < n,
            };
            if !more {
                break;
            }
            let s = *seq;
            *seq += 1;
            sent += 1;
            let req = make(s);
            let t = Instant::now();
            let id = client.send(req)?;
            pending.insert(id, (s, t));
        }
        if pending.is_empty() {
            break;
        }
        let Some(reply) = client.recv()? else {
            bail!(
                "no reply within {:?} ({} requests outstanding)",
                client.timeout(),
                pending.len()
            );
        };
        let now = Instant::now();
        let Some((s, t)) = reply.id.and_then(|id| pending.remove(&id)) else {
            m.error(format!(
                "a reply whose id matches no outstanding request ({:?})",
                reply.id
            ));
            continue;
        };
        m.ops += 1;
        m.lat_ns
            .push(u64::try_from((now - t).as_nanos()).unwrap_or(u64::MAX));
        last_done = now;
        match reply.result {
            Ok(v) => {
                if let Err(e) = check(s, v) {
                    m.error(e);
                }
            }
            Err(e) => m.error(e),
        }
        if let (Some(label), Until::Ops(n)) = (progress, until) {
            if m.ops >= next_progress {
                next_progress += progress_step;
                let secs = start.elapsed().as_secs_f64().max(1e-9);
                eprintln!(
                    "  {label}: {}/{} ({}/s)",
                    thousands(m.ops),
                    thousands(n),
                    fmt_rate(m.ops as f64 / secs)
                );
            }
        }
    }
    m.elapsed = last_done - start;
    m.lat_ns.sort_unstable();
    Ok(m)
}

/// A warm-up phase (not recorded, errors kept), then the measured phase.
pub(crate) fn warm_then_measure<M, C>(
    client: &mut Client,
    in_flight: usize,
    duration: Duration,
    make: &mut M,
    check: &mut C,
) -> Result<Measured>
where
    M: FnMut(u64) -> Req,
    C: FnMut(u64, Value) -> Result<(), String>,
{
    let warmup = (duration / 10).max(Duration::from_millis(100));
    let mut seq = 0;
    let warm = drive(
        client,
        in_flight,
        Until::Elapsed(warmup),
        None,
        &mut seq,
        make,
        check,
    )?;
    let cpu_before = client.server_pid.and_then(process_cpu);
    let mut m = drive(
        client,
        in_flight,
        Until::Elapsed(duration),
        None,
        &mut seq,
        make,
        check,
    )?;
    let cpu_after = client.server_pid.and_then(process_cpu);
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        if m.ops > 0 {
            m.server_cpu_us_per_op = Some((after - before).as_secs_f64() * 1e6 / m.ops as f64);
        }
    }
    m.absorb_errors(warm);
    Ok(m)
}

/// CPU time process `pid` has used (user + system, every thread, living
/// or gone), from `/proc/PID/stat`, in clock ticks of 10 ms.
pub(crate) fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its
    // closing parenthesis are space-separated: utime is 14th, stime 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

/// Create `n` objects, `in_flight` at a time; returns their oids in order.
pub(crate) fn create_objects<F>(
    client: &mut Client,
    n: u64,
    in_flight: usize,
    mut slots: F,
    progress: Option<&str>,
) -> Result<(Vec<u64>, Measured)>
where
    F: FnMut(u64) -> Value,
{
    let mut oids = vec![0u64; usize::try_from(n).context("object count")?];
    let mut make = |s: u64| Req::new("create_object", vec![("slots", slots(s))]);
    let mut check = |s: u64, v: Value| -> Result<(), String> {
        match v["oid"].as_u64() {
            Some(oid) => {
                oids[s as usize] = oid;
                Ok(())
            }
            None => Err(format!("create_object result without an integer oid: {v}")),
        }
    };
    let mut seq = 0;
    let m = drive(
        client,
        in_flight,
        Until::Ops(n),
        progress,
        &mut seq,
        &mut make,
        &mut check,
    )?;
    if m.errors > 0 {
        bail!(
            "creating {n} objects: {} errors, e.g. {}",
            m.errors,
            m.error_samples.join("; ")
        );
    }
    Ok((oids, m))
}

/// A deterministic, well-mixed pick of one of `n` objects for request `s`
/// (splitmix64), so the checker can recompute what the request targeted.
pub(crate) fn pick(s: u64, n: usize) -> usize {
    let mut z = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % n as u64) as usize
}
