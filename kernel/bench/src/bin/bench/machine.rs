//! The machine the figures were measured on.

use super::*;

pub(crate) fn first_field(path: &str, key: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.split(':').next().map(str::trim) == Some(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

pub(crate) fn os_pretty_name() -> Option<String> {
    let text = fs::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
}

/// The filesystem holding `path`: mount point, type and device (longest mount-point prefix).
pub(crate) fn filesystem_of(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, mnt, fstype) = (f.next()?, f.next()?, f.next()?);
            let mnt = mnt.replace("\\040", " ");
            path.starts_with(&mnt)
                .then(|| (mnt, fstype.to_string(), dev.to_string()))
        })
        .max_by_key(|(mnt, _, _)| mnt.len())
        .map(|(mnt, fstype, dev)| format!("{fstype} on {mnt} ({dev})"))
}

pub(crate) fn machine_info(
    ctx: &Ctx,
    redis: &Result<RedisTools, String>,
) -> Vec<(&'static str, String)> {
    let unknown = || "unknown".to_string();
    let nproc = thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| unknown());
    let cpu = first_field("/proc/cpuinfo", "model name").unwrap_or_else(unknown);
    let mem = first_field("/proc/meminfo", "MemTotal")
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| format!("{:.1} GiB", kb as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(unknown);
    let os = format!(
        "{} (Linux {})",
        os_pretty_name().unwrap_or_else(unknown),
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| unknown())
    );
    let tmp = std::env::temp_dir();
    let fs_desc = format!(
        "{} — {}",
        tmp.display(),
        filesystem_of(&tmp).unwrap_or_else(unknown)
    );
    let batos_mtime = fs::metadata(&ctx.batos)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| utc_datetime(d.as_secs()))
        .unwrap_or_else(unknown);
    let redis_desc = match redis {
        Ok(t) => format!("{} ({})", t.version, t.server.display()),
        Err(e) => e.clone(),
    };
    vec![
        ("CPU", cpu),
        ("logical CPUs (nproc)", nproc),
        ("memory", mem),
        ("OS", os),
        ("data directories", fs_desc),
        (
            "batos",
            format!(
                "{} ({}, built {batos_mtime})",
                ctx.kernel_version.clone().unwrap_or_else(unknown),
                ctx.batos.display()
            ),
        ),
        ("Redis", redis_desc),
    ]
}

/// `YYYY-MM-DD HH:MM UTC` from Unix seconds (civil-from-days).
pub(crate) fn utc_datetime(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}
