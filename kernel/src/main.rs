//! The `batos` binary: `batos run` starts the kernel; the other subcommands
//! are a client for people, speaking the Synaptic Bridge protocol.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use batos_kernel::cli::{self, ExitCode, Request};
use batos_kernel::config::{Config, Durability};
use batos_steward::{KernelFlags, StewardError, StewardOptions};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "batos",
    version,
    about = "BAT OS: a persistent, self-extending object system"
)]
struct Cli {
    /// Commands endpoint (ROUTER). For `run` it overrides the config file.
    #[arg(long, global = true, env = "BATOS_ENDPOINT")]
    endpoint: Option<String>,
    /// How long client subcommands wait for a reply.
    #[arg(long, global = true, default_value_t = 5000)]
    timeout_ms: i32,
    /// The kernel's CURVE public key file, for a kernel with keys (with `--key`).
    #[arg(long, global = true, requires = "key")]
    server_key: Option<PathBuf>,
    /// This client's CURVE key pair file (`batos keys new`), with `--server-key`.
    #[arg(long, global = true, requires = "server_key")]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the kernel.
    Run(RunArgs),
    /// Run the kernel under the steward: restart it when it dies, apply
    /// upgrades from the upgrade channel (docs/steward.md).
    Steward(StewardArgs),
    /// Check the kernel answers; print its version, uptime and object count.
    Ping,
    /// Show an object's slots, or the roots and object count.
    State {
        /// Oid or root name (e.g. genesis_obj).
        oid: Option<String>,
    },
    /// Print a slot's value (no delegation).
    Get { oid: String, slot: String },
    /// Set a slot to a JSON value.
    Set {
        oid: String,
        slot: String,
        json: String,
    },
    /// Send a message; arguments are JSON values.
    Send {
        oid: String,
        selector: String,
        args: Vec<String>,
    },
    /// Create an object from a JSON object of slots.
    New { slots: Option<String> },
    /// Clone an object (shallow).
    Clone { oid: String },
    /// Ingest text files into memory (each file's path is its source).
    Ingest {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Search memory (BM25; "phrases" and +required words).
    Search {
        query: String,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// At most this many hits (1..1000).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// List the persona experts with their tier and size.
    Experts,
    /// Generate with the model (needs a model: `batos run --model PATH`).
    Infer {
        prompt: String,
        /// Run with this persona expert.
        #[arg(long)]
        expert: Option<String>,
        /// Most tokens to generate.
        #[arg(long)]
        max_tokens: Option<u64>,
    },
    /// Start a cognitive cycle (`start KIND`) or show one (`get OID`).
    Cycle {
        #[command(subcommand)]
        action: CycleAction,
    },
    /// CURVE keys for the bridge: `new NAME` writes NAME.key (the pair,
    /// mode 0600) and NAME.pub (the public key to hand out).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Install a method from a file (Python, WAT text or a WebAssembly
    /// binary; `-` reads standard input).
    Method {
        /// Oid or root name.
        oid: String,
        selector: String,
        file: PathBuf,
        /// `python`, `wat` or `wasm` [default: the file's extension; `wat` for `-`].
        #[arg(long)]
        lang: Option<String>,
    },
    /// Print the source a method version was written in (default: the
    /// active version).
    Source {
        /// Oid or root name.
        oid: String,
        selector: String,
        #[arg(long)]
        version: Option<u64>,
    },
    /// The Memory Inspector: an interactive terminal UI on a running kernel.
    Inspect {
        /// Events endpoint (SUB) [default: the configured default].
        #[arg(long)]
        events: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Generate a key pair NAME in DIR (default: the current directory).
    New {
        name: String,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum CycleAction {
    /// Start a cycle of KIND (display_yourself).
    Start { kind: String },
    /// Show a cycle's state, history and results.
    Get { oid: String },
}

#[derive(Args)]
struct RunArgs {
    /// Configuration file (TOML); without it, built-in defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (the image lives in DIR/image).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Events endpoint (PUB).
    #[arg(long)]
    events: Option<String>,
    /// Prometheus endpoint HOST:PORT ("" disables).
    #[arg(long)]
    metrics: Option<String>,
    /// "sync" or "buffered".
    #[arg(long, value_parser = parse_durability)]
    durability: Option<Durability>,
    /// Do not start the display_yourself first conversation on a fresh image.
    #[arg(long)]
    no_first_conversation: bool,
    /// The language model: a GGUF file or a safetensors folder (never downloaded).
    #[arg(long)]
    model: Option<PathBuf>,
}

#[derive(Args)]
struct StewardArgs {
    /// The `batos run` flags, passed to every kernel the steward starts.
    #[command(flatten)]
    run: RunArgs,
    /// The kernel binary the steward runs and upgrades in place [default: this executable].
    #[arg(long)]
    kernel_binary: Option<PathBuf>,
    /// The upgrade channel folder (created if missing).
    #[arg(long, default_value = "upgrade_channel")]
    upgrade_channel: PathBuf,
    /// A folder replace_binary payloads may come from; repeatable [default: CHANNEL/payload].
    #[arg(long = "allow-source", value_name = "DIR")]
    allow_sources: Vec<PathBuf>,
    /// A command run_command may run, as NAME=PROGRAM [ARGS...] (split on whitespace); repeatable.
    #[arg(long = "allow-command", value_name = "NAME=PROGRAM [ARGS...]")]
    allow_commands: Vec<String>,
    /// Steward settings file (TOML): allowed_sources, [commands], command_timeout_s.
    #[arg(long)]
    steward_config: Option<PathBuf>,
    /// The steward's Prometheus endpoint HOST:PORT ("" disables it).
    #[arg(long, default_value = "127.0.0.1:9465")]
    steward_metrics: String,
    /// Serve the steward's metrics on a non-loopback address (they have no authentication).
    #[arg(long)]
    steward_metrics_allow_remote: bool,
    /// Unexpected kernel exits tolerated within the window; one more stops the steward (status 3).
    #[arg(long, default_value_t = 5)]
    max_restarts: u32,
    /// The crash-loop window, in seconds.
    #[arg(long, default_value_t = 60)]
    restart_window_s: u64,
    /// Seconds a kernel may take to exit after SIGTERM, before SIGKILL.
    #[arg(long, default_value_t = 30)]
    stop_timeout_s: u64,
    /// Seconds a kernel may take to print its ready line.
    #[arg(long, default_value_t = 30)]
    ready_timeout_s: u64,
}

/// `batos steward`: its exit status (0 clean, 1 error, 3 crash loop).
fn steward(endpoint: Option<String>, args: StewardArgs) -> i32 {
    init_tracing("info");
    match steward_options(endpoint, args).and_then(batos_steward::run) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("batos steward: {err}");
            err.exit_code()
        }
    }
}

fn steward_options(
    endpoint: Option<String>,
    args: StewardArgs,
) -> Result<StewardOptions, StewardError> {
    let run = args.run;
    let mut opts = StewardOptions {
        kernel: KernelFlags {
            config: run.config,
            data: run.data,
            endpoint,
            events: run.events,
            metrics: run.metrics,
            durability: run.durability,
            no_first_conversation: run.no_first_conversation,
            model: run.model,
        },
        kernel_binary: args.kernel_binary,
        channel: args.upgrade_channel,
        allowed_sources: args.allow_sources,
        metrics_listen: args.steward_metrics,
        metrics_allow_remote: args.steward_metrics_allow_remote,
        max_restarts: args.max_restarts,
        restart_window: Duration::from_secs(args.restart_window_s),
        stop_timeout: Duration::from_secs(args.stop_timeout_s),
        ready_timeout: Duration::from_secs(args.ready_timeout_s),
        ..StewardOptions::default()
    };
    if let Some(path) = &args.steward_config {
        opts.load_file(path)?;
    }
    for flag in &args.allow_commands {
        opts.allow_command(flag)?;
    }
    Ok(opts)
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "sync" => Ok(Durability::Sync),
        "buffered" => Ok(Durability::Buffered),
        other => Err(format!("expected sync or buffered, got {other:?}")),
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => match run(cli.endpoint, args) {
            Ok(()) => exit_after_clean_shutdown(),
            Err(err) => {
                eprintln!("batos: {err:#}");
                1
            }
        },
        Command::Steward(args) => steward(cli.endpoint, args),
        Command::Keys {
            action: KeysAction::New { name, dir },
        } => match batos_client::KeyPair::generate().and_then(|pair| {
            let (key, public) = pair.write(&dir, &name)?;
            Ok((pair, key, public))
        }) {
            Ok((pair, key, public)) => {
                println!(
                    "{}",
                    serde_json::json!({
                        "public": pair.public,
                        "key_file": key.display().to_string(),
                        "public_file": public.display().to_string(),
                    })
                );
                0
            }
            Err(err) => {
                eprintln!("batos keys: {err}");
                1
            }
        },
        Command::Inspect { events } => {
            let endpoint = cli
                .endpoint
                .unwrap_or_else(|| Config::default().bridge.endpoint);
            let events = events.unwrap_or_else(|| Config::default().bridge.events);
            match batos_inspect::run(&endpoint, &events, cli.timeout_ms) {
                Ok(()) => 0,
                Err(err) => {
                    eprintln!("batos inspect: {err:#}");
                    1
                }
            }
        }
        other => {
            let endpoint = cli
                .endpoint
                .unwrap_or_else(|| Config::default().bridge.endpoint);
            let request = match other {
                Command::Ping => Request::Ping,
                Command::State { oid } => Request::State(oid),
                Command::Get { oid, slot } => Request::Get(oid, slot),
                Command::Set { oid, slot, json } => Request::Set(oid, slot, json),
                Command::Send {
                    oid,
                    selector,
                    args,
                } => Request::Send(oid, selector, args),
                Command::New { slots } => Request::New(slots),
                Command::Clone { oid } => Request::Clone(oid),
                Command::Ingest { files } => Request::Ingest(files),
                Command::Search {
                    query,
                    source,
                    limit,
                } => Request::Search {
                    query,
                    source,
                    limit,
                },
                Command::Experts => Request::Experts,
                Command::Infer {
                    prompt,
                    expert,
                    max_tokens,
                } => Request::Infer {
                    prompt,
                    expert,
                    max_tokens,
                },
                Command::Cycle {
                    action: CycleAction::Start { kind },
                } => Request::CycleStart(kind),
                Command::Cycle {
                    action: CycleAction::Get { oid },
                } => Request::CycleGet(oid),
                Command::Method {
                    oid,
                    selector,
                    file,
                    lang,
                } => Request::Method {
                    oid,
                    selector,
                    file,
                    lang,
                },
                Command::Source {
                    oid,
                    selector,
                    version,
                } => Request::Source {
                    oid,
                    selector,
                    version,
                },
                Command::Run(_)
                | Command::Steward(_)
                | Command::Inspect { .. }
                | Command::Keys { .. } => {
                    unreachable!("handled above")
                }
            };
            let curve = match (&cli.server_key, &cli.key) {
                (Some(server), Some(key)) => match batos_client::Curve::load(server, key) {
                    Ok(curve) => Some(curve),
                    Err(err) => {
                        eprintln!("error: {err}");
                        std::process::exit(ExitCode::Usage as i32);
                    }
                },
                _ => None,
            };
            cli::run(&endpoint, cli.timeout_ms, curve.as_ref(), request) as i32
        }
    };
    std::process::exit(code);
}

fn run(endpoint: Option<String>, args: RunArgs) -> anyhow::Result<()> {
    let config_path = args
        .config
        .or_else(|| std::env::var_os("BATOS_CONFIG").map(PathBuf::from));
    let mut config = Config::load(config_path.as_deref())?;
    if let Some(data) = args.data {
        config.kernel.data_dir = data;
    }
    if let Some(endpoint) = endpoint {
        config.bridge.endpoint = endpoint;
    }
    if let Some(events) = args.events {
        config.bridge.events = events;
    }
    if let Some(metrics) = args.metrics {
        config.metrics.listen = metrics;
    }
    if let Some(durability) = args.durability {
        config.store.durability = durability;
    }
    if args.no_first_conversation {
        config.kernel.first_conversation = false;
    }
    if let Some(model) = args.model {
        config.inference.model = model;
    }
    init_tracing(&config.kernel.log);
    let system = actix::System::new();
    system
        .block_on(batos_kernel::server::run(config, shutdown_signal()))
        .context("kernel failed")?;
    Ok(())
}

/// Ends the process after the kernel stopped cleanly: the image is flushed,
/// synced and its background work stopped. Exiting through `_exit` skips C++
/// static destructors, which otherwise race with RocksDB threads that the
/// still-referenced database keeps (seen as `pthread lock: Invalid argument`).
fn exit_after_clean_shutdown() -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` only ends the process; every buffer that matters was
    // flushed above and the image was flushed and synced by the kernel.
    unsafe { libc::_exit(0) }
}

fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the kernel with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

// Keep ExitCode's numbering visible to readers of main.
const _: () = assert!(ExitCode::Unreachable as i32 == 3);
