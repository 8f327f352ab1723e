//! The Memory Inspector (`batos inspect`) used as a person would: in a real
//! terminal (a detached tmux session on a private tmux server), typing keys
//! and reading the screen. Waiting is polling the screen until the expected
//! text shows, bounded by a timeout that fails with the last screen.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// How long any one expected screen may take to show up.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the screen is read while waiting.
const POLL: Duration = Duration::from_millis(50);

/// Quotes a word for `sh`.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A detached tmux session running one command, on a tmux server of its
/// own (so parallel tests and a user's tmux never meet). The server is
/// killed on drop.
struct Tmux {
    /// Holds the socket; removed after the server is killed.
    _dir: tempfile::TempDir,
    socket: PathBuf,
    name: String,
}

impl Tmux {
    /// Starts `command` (an `sh` command line) in a `width`×`height` session.
    fn start(name: &str, width: u16, height: u16, command: &str) -> Tmux {
        let dir = tempfile::Builder::new()
            .prefix("batos-tmux-")
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("tmux.sock");
        let tmux = Tmux {
            _dir: dir,
            socket,
            name: name.to_string(),
        };
        let (w, h) = (width.to_string(), height.to_string());
        // With arguments after the command, tmux runs it directly (no
        // default-shell), so the command line is always `sh`'s.
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &w,
            "-y",
            &h,
            "sh",
            "-c",
            command,
        ]);
        tmux
    }

    fn command(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-u")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux (is it installed?): {e}"))
    }

    /// Runs a tmux command that must succeed.
    #[track_caller]
    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args);
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types text literally.
    #[track_caller]
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", &self.name, "-l", text]);
    }

    /// Presses a named key (`Enter`, `Tab`, `Down`, `BSpace`...).
    #[track_caller]
    fn press(&self, key: &str) {
        self.run(&["send-keys", "-t", &self.name, key]);
    }

    /// The screen as text, or `None` once the session is gone.
    fn screen(&self) -> Option<String> {
        let out = self.command(&["capture-pane", "-p", "-t", &self.name]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command(&["kill-server"]);
    }
}

/// The inspector running in tmux, with its stderr and exit status kept in
/// files for failure messages.
struct Inspector {
    tmux: Tmux,
    stderr: PathBuf,
    status: PathBuf,
    /// Holds `stderr` and `status`; dropped after the session.
    _files: tempfile::TempDir,
}

impl Inspector {
    fn start(k: &Kernel, name: &str) -> Inspector {
        Inspector::launch(name, (160, 48), &k.endpoint, &k.events, 5000)
    }

    /// `batos inspect` on `endpoint` and `events` in a `size` (columns, rows)
    /// tmux session.
    fn launch(
        name: &str,
        size: (u16, u16),
        endpoint: &str,
        events: &str,
        timeout_ms: u64,
    ) -> Inspector {
        let files = tempfile::Builder::new()
            .prefix("batos-inspect-")
            .tempdir()
            .expect("temp dir");
        let stderr = files.path().join("stderr.txt");
        let status = files.path().join("status.txt");
        let command = format!(
            "{} inspect --endpoint {} --events {} --timeout-ms {timeout_ms} 2>{}; echo $? >{}",
            sh_quote(&batos_bin().display().to_string()),
            sh_quote(endpoint),
            sh_quote(events),
            sh_quote(&stderr.display().to_string()),
            sh_quote(&status.display().to_string()),
        );
        Inspector {
            tmux: Tmux::start(name, size.0, size.1, &command),
            stderr,
            status,
            _files: files,
        }
    }

    fn diagnostics(&self, screen: &str) -> String {
        format!(
            "--- last screen ---\n{screen}\n--- inspector stderr ---\n{}\n--- exit status ---\n{}",
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
            std::fs::read_to_string(&self.status).unwrap_or_else(|_| "(still running)".into()),
        )
    }

    /// Polls the screen until `ok` holds for it; returns that screen.
    #[track_caller]
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        let mut last = String::new();
        loop {
            match self.tmux.screen() {
                Some(screen) if ok(&screen) => return screen,
                Some(screen) => last = screen,
                None => panic!(
                    "the inspector's session ended while waiting for {what}\n{}",
                    self.diagnostics(&last)
                ),
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {SCREEN_TIMEOUT:?} waiting for {what}\n{}",
                self.diagnostics(&last)
            );
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the screen shows every one of `texts`.
    #[track_caller]
    fn wait_for_all(&self, texts: &[&str]) -> String {
        self.wait_for(&format!("{texts:?}"), |screen| {
            texts.iter().all(|t| screen.contains(t))
        })
    }

    /// Polls the screen for up to `within`: true as soon as it shows `text`.
    fn shows_within(&self, text: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.tmux.screen().is_some_and(|s| s.contains(text)) {
                return true;
            }
            std::thread::sleep(POLL);
        }
        false
    }

    /// Waits for the inspector to exit; returns its exit status text.
    #[track_caller]
    fn wait_exit(&self) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.status) {
                if !text.trim().is_empty() {
                    return text.trim().to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "the inspector did not exit within {SCREEN_TIMEOUT:?}\n{}",
                self.diagnostics(&self.tmux.screen().unwrap_or_default())
            );
            std::thread::sleep(POLL);
        }
    }
}

/// A method with a line the object pane must show.
const ANSWER_WAT: &str = r#"(module
  ;; inspector-source-marker
  (import "uvm" "return_i64" (func $r (param i64)))
  (memory (export "memory") 1)
  (func (export "invoke") (call $r (i64.const 42))))"#;

fn doc(source: &str, text: &str) -> Value {
    map(&[("source", s(source)), ("text", s(text))])
}

/// Whitespace collapsed, match markers removed: a snippet as the hit list
/// draws it.
fn plain_snippet(snippet: &str) -> String {
    snippet
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("**", "")
}

/// A `ui_code` of our own, with a pane kind the inspector does not know.
fn ui_code() -> Value {
    map(&[
        ("version", Value::from(1)),
        ("title", s("Inspector E2E Title")),
        ("about", s("An inspector driven by a test.")),
        (
            "panes",
            Value::Array(vec![
                map(&[
                    ("kind", s("memory_search")),
                    ("title", s("Recall")),
                    ("limit", Value::from(5)),
                    ("help", s("Search the two test documents.")),
                ]),
                map(&[("kind", s("sparkline")), ("title", s("Ignored"))]),
                map(&[
                    ("kind", s("object_browser")),
                    ("title", s("Objects")),
                    ("start", s("genesis_obj")),
                    ("help", s("Browse genesis and friends.")),
                ]),
                map(&[
                    ("kind", s("events")),
                    ("title", s("Live")),
                    (
                        "topics",
                        Value::Array(vec![s("uvm_state_update"), s("cycle_update")]),
                    ),
                    ("help", s("Everything that commits.")),
                ]),
            ]),
        ),
        ("provenance", map(&[("written_by", s("test"))])),
    ])
}

const ZOO: &str = "The zebra grazes at dawn. Its stripes confuse the flies.\n\n\
                   A striped horse is not a zebra, the keeper says.";
const KITCHEN: &str = "Knead the dough for ten minutes. Let it rise twice.\n\n\
                       Bake the loaf until the crust sings.";

#[test]
fn inspector_searches_browses_and_follows_events_in_a_terminal() {
    let k = Kernel::start();
    let c = k.dealer();
    let roots = c.roots();
    let genesis = roots["genesis_obj"];
    let pllm = roots["pLLM_obj"];
    c.set("genesis_obj", "ui_code", ui_code());
    c.set("genesis_obj", "inspector_marker", s("marker-7f3a"));
    // A method whose source the object pane shows when its slot is selected.
    c.ok(
        "create_method",
        &[
            ("oid", s("genesis_obj")),
            ("selector", s("answer")),
            ("wat", s(ANSWER_WAT)),
        ],
    );
    c.ok(
        "ingest",
        &[(
            "documents",
            Value::Array(vec![doc("zoo.txt", ZOO), doc("kitchen.txt", KITCHEN)]),
        )],
    );
    // What the hit list must show, as the kernel answers it.
    let hits = must(
        &c.ok(
            "search_memory",
            &[("query", s("zebra stripes")), ("limit", Value::from(5))],
        ),
        "hits",
    )
    .as_array()
    .expect("hits")
    .clone();
    let best = hits.first().expect("the zoo document matches");
    assert_eq!(must(best, "source").as_str(), Some("zoo.txt"), "{best}");
    let snippet = plain_snippet(must(best, "snippet").as_str().expect("snippet"));
    // An ASCII stretch of it, so nothing depends on how tmux stores other characters.
    let snippet_start: String = snippet
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take_while(char::is_ascii)
        .take(30)
        .collect();
    assert!(snippet_start.len() >= 5, "snippet {snippet:?}");

    let name = format!("batos-inspect-{}", std::process::id());
    let ui = Inspector::start(&k, &name);

    // The spec comes from genesis_obj.ui_code; the unknown pane is ignored.
    let screen = ui.wait_for_all(&[
        "Inspector E2E Title",
        "ui: from genesis_obj.ui_code",
        "Recall",
    ]);
    assert!(
        !screen.contains("Ignored"),
        "unknown pane kinds are ignored\n{screen}"
    );

    // Memory: type a query, Enter, see the hit's source and snippet.
    ui.tmux.type_text("zebra stripes");
    ui.tmux.press("Enter");
    ui.wait_for_all(&["zoo.txt", snippet_start.as_str()]);

    // Objects: genesis_obj's own slots, as the object browser's start.
    ui.tmux.press("Tab");
    let genesis_title = format!("genesis_obj @{genesis}");
    ui.wait_for_all(&[
        genesis_title.as_str(),
        "inspector_marker",
        "marker-7f3a",
        "parent*",
        "ui_code",
    ]);

    // Selecting a method's slot shows the source its active version kept.
    let mut slot_names = keys(&c.slots("genesis_obj"));
    slot_names.sort();
    let answer_index = slot_names
        .iter()
        .position(|n| n == "answer")
        .expect("genesis_obj has answer");
    for _ in 0..answer_index {
        ui.tmux.press("Down");
    }
    ui.wait_for_all(&["Source: answer v1 (wat)", "inspector-source-marker"]);
    for _ in 0..answer_index {
        ui.tmux.press("Up");
    }

    // Enter on parent* follows its first reference; Backspace comes back.
    let parent_index = slot_names
        .iter()
        .position(|n| n == "parent*")
        .expect("genesis_obj has parent*");
    for _ in 0..parent_index {
        ui.tmux.press("Down");
    }
    ui.tmux.press("Enter");
    let pllm_title = format!("pLLM_obj @{pllm}");
    ui.wait_for_all(&[pllm_title.as_str()]);
    ui.tmux.press("BSpace");
    ui.wait_for_all(&[genesis_title.as_str(), "marker-7f3a"]);

    // Events: a slot set over the bridge shows up in the event pane. The
    // feed may join late (ZeroMQ's slow joiner), so write until it shows.
    ui.tmux.press("Tab");
    ui.wait_for_all(&["Live: "]);
    let scratch = c.create(&[]);
    let probe_line = format!("@{scratch}");
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    let mut n: u64 = 0;
    loop {
        n += 1;
        c.set(scratch, "inspector_probe", Value::from(n));
        if ui.shows_within("set inspector_probe", Duration::from_millis(500)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no event line for inspector_probe within {SCREEN_TIMEOUT:?}\n{}",
            ui.diagnostics(&ui.tmux.screen().unwrap_or_default())
        );
    }
    ui.wait_for_all(&[
        "uvm_state_update",
        probe_line.as_str(),
        "set inspector_probe",
    ]);

    // q quits (the event pane has no input) and the process exits 0.
    ui.tmux.press("q");
    let status = ui.wait_exit();
    assert_eq!(status, "0", "{}", ui.diagnostics(""));
}

#[test]
fn inspector_reports_an_unreachable_kernel_and_still_quits() {
    // Nothing listens on these ports: every request times out, the UI stays
    // responsive, says so in the status line, and Ctrl-C still quits.
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let events = format!("tcp://127.0.0.1:{}", free_port());
    let name = format!("batos-inspect-down-{}", std::process::id());
    let ui = Inspector::launch(&name, (120, 30), &endpoint, &events, 300);
    ui.wait_for_all(&["ui: built-in default", "no reply"]);
    ui.tmux.press("C-c");
    assert_eq!(ui.wait_exit(), "0", "Ctrl-C is a clean quit");
}
