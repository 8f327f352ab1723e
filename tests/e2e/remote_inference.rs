//! The remote inference backend (`engine = "openai"`) against a real
//! OpenAI-compatible server this project did not write: llama.cpp's, from
//! PyPI's `llama-cpp-python[server]` (`scripts/llama-server.sh`), serving the
//! default small model on loopback.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use batos_cognition::tiny_model::write_lora_adapter;

use crate::harness::*;

/// How long the server may take to load the model and listen.
const SERVER_READY: Duration = Duration::from_secs(120);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/llama-server.sh")
}

/// llama.cpp's server on `port`, serving the small model as `smollm2`.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// `None` (said on stderr) only when the package cannot be installed.
    fn start_on(port: u16) -> Option<Server> {
        let install = Command::new(script())
            .arg("--install-only")
            .output()
            .expect("run scripts/llama-server.sh");
        if !install.status.success() {
            eprintln!(
                "SKIPPED: llama-cpp-python[server] could not be installed here:\n{}",
                String::from_utf8_lossy(&install.stderr)
            );
            return None;
        }
        let model = crate::smollm2::model();
        let mut cmd = Command::new(script());
        cmd.args(["--model", &model.display().to_string()])
            .args(["--model_alias", "smollm2", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--n_ctx", "2048"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        kill_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("start the llama.cpp server");
        let stderr = child.stderr.take().expect("piped stderr");
        let (ready, listening) = mpsc::channel();
        std::thread::spawn(move || {
            let mut log = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Uvicorn running on") {
                    let _ = ready.send(Ok(()));
                }
                log.push(line);
                log.drain(..log.len().saturating_sub(20));
            }
            let _ = ready.send(Err(log.join("\n")));
        });
        match listening.recv_timeout(SERVER_READY) {
            Ok(Ok(())) => {}
            Ok(Err(log)) => panic!("the llama.cpp server exited:\n{log}"),
            Err(_) => panic!("the llama.cpp server did not listen within {SERVER_READY:?}"),
        }
        Some(Server {
            child,
            url: format!("http://127.0.0.1:{port}/v1"),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kernel on the remote server at `url`, configured as the README's
/// example does it (environment variables), the rest in its file.
fn remote_kernel(url: &str, extra: &str) -> Kernel {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let line = readme
        .lines()
        .find(|l| l.trim_start().starts_with("BATOS_INFERENCE_ENGINE=openai"))
        .expect("the README's remote-server example");
    let env: Vec<(String, String)> = line
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| {
            let v = if k == "BATOS_INFERENCE_REMOTE_URL" {
                url
            } else {
                v
            };
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert_eq!(env.len(), 2, "{line}");
    let root = new_image_dir();
    let adapters = root.path().join("adapters");
    write_lora_adapter(&adapters.join("BRICK"), 3, 8);
    write_lora_adapter(&adapters.join("ROBIN"), 4, 8);
    let config = format!(
        "[inference]\nadapters_dir = {:?}\nremote_retries = 3\nremote_retry_backoff_ms = 100\n{extra}\n",
        adapters.display().to_string()
    );
    Kernel::start_on(
        root,
        Options {
            env,
            ..Options::config(&config)
        },
    )
}

fn capital(c: &Client, expert: Option<&str>) -> Result<Value, (String, String)> {
    let mut fields = vec![
        (
            "prompt",
            s("What is the capital of France? Answer in one sentence."),
        ),
        ("max_tokens", Value::from(24)),
    ];
    if let Some(expert) = expert {
        fields.push(("expert", s(expert)));
    }
    c.call("infer", &fields)
}

#[test]
fn infer_experts_and_an_outage_go_through_a_real_openai_compatible_server() {
    let port = free_port();
    let Some(server) = Server::start_on(port) else {
        return;
    };
    // The served model is discovered (remote_model is empty); experts map
    // to the server's names for their adapters: BRICK to the base model
    // (llama.cpp's server has no per-request adapters), ROBIN to none.
    let k = remote_kernel(&server.url, "remote_experts = { BRICK = \"smollm2\" }");
    let c = k.dealer();

    let out = capital(&c, None).expect("infer through the remote server");
    let text = must(&out, "text").as_str().unwrap();
    assert!(
        text.contains("Paris"),
        "greedy SmolLM2 knows this: {text:?}"
    );
    assert_eq!(must(&out, "model").as_str(), Some("smollm2"));
    let tokens = uint(must(&out, "tokens"));
    assert!((1..=24).contains(&tokens), "{out}");

    let brick = capital(&c, Some("BRICK")).expect("a mapped expert answers");
    assert_eq!(must(&brick, "expert").as_str(), Some("BRICK"));
    assert_eq!(
        must(&brick, "text"),
        must(&out, "text"),
        "the same greedy model"
    );
    let (code, message) = capital(&c, Some("ROBIN")).unwrap_err();
    assert_eq!(code, "unavailable", "{message}");
    assert!(message.contains("remote_experts"), "{message}");

    // The server goes away: a clear error, and the kernel goes on.
    drop(server);
    let (code, message) = capital(&c, None).unwrap_err();
    assert_eq!(code, "unavailable", "{message}");
    assert!(c.ping().as_map().is_some());
    // It comes back on the same port: the next request is answered.
    let server = Server::start_on(port).expect("installed above");
    let again = capital(&c, None).expect("the server is back");
    assert_eq!(must(&again, "text"), must(&out, "text"));
    let m = k.scrape();
    assert_eq!(
        m.count("batos_inference_requests_total", &[("outcome", "ok")]),
        3.0
    );
    assert_eq!(
        m.count("batos_inference_requests_total", &[("outcome", "error")]),
        1.0
    );
    drop(server);
}

#[test]
fn what_a_remote_model_writes_for_does_not_understand_still_passes_the_audit() {
    let port = free_port();
    let Some(server) = Server::start_on(port) else {
        return;
    };
    let k = remote_kernel(
        &server.url,
        "remote_model = \"smollm2\"\ndnu_attempts = 2\ndnu_max_tokens = 160",
    );
    let c = k.dealer();
    let obj = c.create(&[("base", Value::from(40))]);
    // The small model writes WAT with no grammar to hold it (llama.cpp's
    // server takes GBNF only): it is installed only if the audit and the
    // compiler accept it, and recorded as the model's.
    // Generation takes seconds per attempt on this CPU: wait past the
    // harness's usual reply timeout.
    c.send_request(
        "send",
        &c.fresh_id(),
        &[("oid", Value::from(obj)), ("selector", s("answer"))],
    );
    let reply = c
        .try_recv_reply(Duration::from_secs(180))
        .expect("doesNotUnderstand answers within its attempts");
    match reply.outcome {
        Ok(reply) => {
            assert_eq!(must(&reply, "generated").as_bool(), Some(true), "{reply}");
            let full = c.ok("get_full_state", &[("oid", Value::from(obj))]);
            let versions = must(must(&full, "methods"), "answer").as_array().unwrap();
            let provenance = must(&versions[0], "provenance");
            assert_eq!(must(provenance, "kind").as_str(), Some("model"), "{full}");
            assert!(provenance.to_string().contains("smollm2"), "{full}");
        }
        Err((code, message)) => {
            assert_eq!(code, "does_not_understand", "{message}");
            let full = c.ok("get_full_state", &[("oid", Value::from(obj))]);
            assert!(
                field(&full, "methods").is_none_or(|m| field(m, "answer").is_none()),
                "nothing was installed: {full}"
            );
        }
    }
    let m = k.scrape();
    let generations: f64 = ["installed", "refused", "gave_up", "error"]
        .iter()
        .map(|o| m.count("batos_dnu_generations_total", &[("outcome", o)]))
        .sum();
    assert!(generations >= 1.0, "the remote model was asked");
    assert!(m.count("batos_inference_requests_total", &[("outcome", "ok")]) >= 1.0);
    drop(server);
}
