//! `docs/observability/`, checked: the Grafana dashboard is valid JSON whose
//! every expression is PromQL that Prometheus's own `promtool` parses and
//! whose every metric a real kernel (with the small model, so the model's
//! metrics are there too) exposes; the scrape configuration passes
//! `promtool check config`, the alerts `promtool test rules`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::harness::*;

fn observability(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/observability")
        .join(file)
}

/// The dashboard's PromQL expressions.
fn dashboard_expressions() -> Vec<String> {
    let text = std::fs::read_to_string(observability("grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().expect("a panel id")),
            "ids are unique"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(x + w <= 24, "{} fits the grid", panel["title"]);
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("a panel has targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        exprs.extend(
            targets
                .iter()
                .map(|t| t["expr"].as_str().expect("expr").to_owned()),
        );
    }
    assert!(
        exprs.len() >= 20,
        "the dashboard covers the kernel: {}",
        exprs.len()
    );
    exprs
}

/// Metric names (`batos_...`) in PromQL text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("batos_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let word_start =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if word_start {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool (Debian package prometheus) is installed by .ci/run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn every_dashboard_expression_is_promql() {
    // Grafana's variables, as Grafana substitutes them.
    let rules: String = dashboard_expressions()
        .iter()
        .enumerate()
        .map(|(i, expr)| {
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*");
            format!(
                "      - record: dashboard:expr{i}\n        expr: {}\n",
                serde_json::to_string(&expr).unwrap()
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(
        &file,
        format!("groups:\n  - name: dashboard\n    rules:\n{rules}"),
    )
    .unwrap();
    promtool(&["check", "rules", file.to_str().unwrap()]);
}

#[test]
fn the_scrape_config_and_the_alerts_pass_promtool() {
    let out = promtool(&[
        "check",
        "config",
        observability("prometheus.yml").to_str().unwrap(),
    ]);
    assert!(out.contains("1 rule files found"), "{out}");
    let out = Command::new("promtool")
        .args(["test", "rules", "alerts-test.yml"])
        .current_dir(observability(""))
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_metric_the_dashboard_and_alerts_use_is_exposed_by_a_real_kernel() {
    let config = format!(
        // The heartbeat (on by default, off in tests unless configured)
        // registers its own metrics.
        "[inference]\nmodel = {:?}\ntimeout_ms = 120000\n[heartbeat]\ninterval_ms = 60000\n",
        crate::smollm2::model().display().to_string()
    );
    let k = Kernel::start_with(Options::config(&config));
    let c = k.dealer();
    c.ping(); // a command's series of the labelled request metrics
    let scraped = k.scrape();
    let alerts = std::fs::read_to_string(observability("alerts.yml")).unwrap();
    let mut used = metric_names(&alerts);
    for expr in dashboard_expressions() {
        used.extend(metric_names(&expr));
    }
    assert!(used.len() >= 30, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|name| !scraped.has(name)).collect();
    assert!(
        missing.is_empty(),
        "not in the kernel's /metrics: {missing:?}"
    );
}
