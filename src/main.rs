//! The `concur-sync` binary: parses the command line, sets up logging, loads the configuration
//! and calls into the library. Exit codes: 0 ok, 1 fatal, 2 some records rejected or failed,
//! 3 held by a safety guard.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use concur_sync::commands;
use concur_sync::config::{Config, LogFormat, log_filter};
use concur_sync::error::EXIT_FATAL;

#[derive(Parser)]
#[command(
    name = "concur-sync",
    version,
    about = "Keeps SAP Concur users in step with your HR source"
)]
struct Cli {
    /// Configuration file (default /etc/concur-sync/config.toml).
    #[arg(long, global = true, env = "CONCUR_SYNC_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// No progress bar (`sync`, `baseline`, `reconcile` and `plan` show one on a terminal).
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one sync cycle now and exit (0 ok, 1 fatal, 2 some records rejected or failed, 3 held).
    Sync {
        /// Read a SCIM source in full (every user, so deletions are seen); other sources
        /// always read in full.
        #[arg(long)]
        full: bool,
        /// The state key file is lost: start a new key. Stored passwords become unknown (none is
        /// sent until the source changes it) and a new refresh token is requested.
        #[arg(long)]
        new_key: bool,
    },
    /// Show what a cycle would do; writes nothing to Concur and does not advance the snapshot.
    Plan {
        #[arg(long)]
        json: bool,
        /// Also save the plan (canonical JSON, with the source's digest and the snapshot
        /// generation) for `apply`.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Apply exactly a plan saved with `plan --out` (exit 1 and nothing sent if the source or
    /// the snapshot changed since).
    Apply {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Everything the state database knows about one user, newest first (exit 1 if unknown).
    Explain {
        /// An employee id, or a login.
        #[arg(value_name = "EMPLOYEE_ID")]
        user: String,
        #[arg(long)]
        json: bool,
        /// Read this state database instead of the configured one (no config file needed).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
    /// List the failed records with Concur's reasons, and the parked ones.
    Failed {
        #[arg(long)]
        json: bool,
        /// Read this state database instead of the configured one (no config file needed).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
    /// Plan failed or parked records again from the next cycle on (`sync` runs one now).
    Retry {
        #[arg(
            value_name = "EMPLOYEE_ID",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        employee_id: Option<String>,
        /// Every failed and parked record.
        #[arg(long)]
        all: bool,
    },
    /// Park a failed record: no longer counted as failed, not planned until its source row
    /// changes (or `retry`).
    Skip {
        #[arg(value_name = "EMPLOYEE_ID")]
        employee_id: String,
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Show managed users, the last cycle, failures and rejections.
    Status {
        #[arg(long)]
        json: bool,
        /// Read this state database instead of the configured one (no config file needed).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
    /// Serve the bundled Concur simulator.
    Simulate(Box<concur_sync::simulator::SimulateArgs>),
    /// Self-contained tour against the bundled simulator.
    Demo {
        /// The API the tour provisions through: "v4" (the User Provisioning Service) or "v1"
        /// (User v1, for legacy tenants).
        #[arg(long, default_value = "v4", value_parser = parse_api)]
        api: concur_sync::config::ConcurApi,
    },
    /// Run as a service: cycles on the schedule and when files land in the drop folder.
    Run {
        /// The state key file is lost: start a new key (see `sync --new-key`).
        #[arg(long)]
        new_key: bool,
    },
    /// Release a held plan (its deactivations and identity changes are sent) if the source has
    /// not changed since.
    Approve {
        #[arg(value_name = "CYCLE_ID")]
        cycle: i64,
    },
    /// Drop a held plan: nobody in it is deactivated or changed.
    Reject {
        #[arg(value_name = "CYCLE_ID")]
        cycle: i64,
    },
    /// Check the configuration, the connection and the company's required fields (non-zero
    /// exit on any problem).
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Read Concur back now: adopt existing users and repair drift.
    Reconcile,
    /// Record every valid source user as already present in Concur, sending nothing.
    Baseline {
        /// Overwrite users the snapshot already knows.
        #[arg(long)]
        force: bool,
    },
    /// Set passwords from a CSV of login_id,password (`-` reads stdin); stores only an audit record.
    Passwords {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Check the local admin endpoint for container probes: exit 0 if it answers 2xx, else 1.
    Probe {
        /// Default: /readyz on admin.listen from the configuration (loopback when it listens on
        /// every interface).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
        timeout: f64,
    },
}

/// Sets up logging; `RUST_LOG` (when set) wins over `level`. A filter that does not parse is a
/// configuration error naming `RUST_LOG` or `log.level`.
fn init_logging(
    format: LogFormat,
    level: Option<&str>,
    default: &str,
) -> Result<(), concur_sync::config::ConfigError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => log_filter("RUST_LOG", &v)?,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(concur_sync::config::ConfigError::Invalid {
                key: "RUST_LOG".into(),
                message: "is not valid UTF-8".into(),
            });
        }
        _ => log_filter("log.level", level.unwrap_or(default))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(|| concur_sync::terminal::LogWriter);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        // Every field value escaped: a file name or a message from Concur cannot forge a line
        // or send terminal escapes.
        LogFormat::Text => {
            use tracing_subscriber::field::MakeExt;
            let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                let v = format!("{value:?}");
                let v = concur_sync::escape::escape(&v);
                if field.name() == "message" {
                    write!(w, "{v}")
                } else {
                    write!(w, "{field}={v}")
                }
            })
            .delimited(" ");
            builder.fmt_fields(fields).try_init()
        }
    };
    Ok(())
}

/// [`init_logging`], or the exit code of a configuration error.
fn start_logging(format: LogFormat, level: Option<&str>, default: &str) -> Result<(), ExitCode> {
    init_logging(format, level, default).map_err(|e| {
        eprintln!("concur-sync: {e}");
        ExitCode::from(EXIT_FATAL)
    })
}

/// `--api v4` or `--api v1`.
fn parse_api(value: &str) -> Result<concur_sync::config::ConcurApi, String> {
    match value {
        "v4" => Ok(concur_sync::config::ConcurApi::V4),
        "v1" => Ok(concur_sync::config::ConcurApi::V1),
        _ => Err("expected v4 or v1".to_string()),
    }
}

/// The state database a command that only reads it uses: `--state`, or the configured one;
/// logs warnings only.
fn read_only_state(state: Option<PathBuf>, config: Option<PathBuf>) -> Result<PathBuf, ExitCode> {
    let state = match state {
        Some(s) => s,
        None => load_config(config)?.state.path,
    };
    start_logging(LogFormat::Text, None, "warn")?;
    Ok(state)
}

fn load_config(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    let path = commands::config_path(path);
    Config::load(&path).map_err(|e| {
        let _ = init_logging(LogFormat::Text, None, "info");
        eprintln!("concur-sync: {e}");
        ExitCode::from(EXIT_FATAL)
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The one cancellation token of the process: SIGTERM or SIGINT fires it.
fn cancel_on_signal() -> CancellationToken {
    let cancel = CancellationToken::new();
    let fire = cancel.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::warn!("stop requested (SIGTERM/SIGINT): no further request is sent to Concur");
        fire.cancel();
    });
    cancel
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<u8> = match cli.command {
        Command::Simulate(args) => {
            if let Err(code) = start_logging(LogFormat::Text, None, "info") {
                return code;
            }
            concur_sync::simulator::run_cli(*args, shutdown_signal())
                .await
                .map(|()| 0)
        }
        Command::Demo { api } => {
            if let Err(code) = start_logging(LogFormat::Text, None, "warn") {
                return code;
            }
            concur_sync::demo::run(api).await
        }
        Command::Status { json, state } => {
            let state = match read_only_state(state, cli.config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            commands::status(&state, json).map_err(Into::into)
        }
        Command::Explain { user, json, state } => {
            let state = match read_only_state(state, cli.config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            commands::explain(&state, &user, json).map_err(Into::into)
        }
        Command::Failed { json, state } => {
            let state = match read_only_state(state, cli.config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            commands::failed(&state, json).map_err(Into::into)
        }
        Command::Probe { url, timeout } => {
            let url = match url {
                Some(u) => u,
                None => match load_config(cli.config) {
                    Ok(c) => concur_sync::service::probe::default_url(&c),
                    Err(code) => return code,
                },
            };
            let timeout = std::time::Duration::try_from_secs_f64(timeout)
                .unwrap_or(std::time::Duration::from_secs(3));
            Ok(concur_sync::service::probe::run(&url, timeout).await)
        }
        command => {
            let cfg = match load_config(cli.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Err(code) = start_logging(cfg.log.format, cfg.log.level.as_deref(), "info") {
                return code;
            }
            if !cli.quiet
                && matches!(
                    command,
                    Command::Sync { .. }
                        | Command::Baseline { .. }
                        | Command::Reconcile
                        | Command::Plan { .. }
                )
            {
                concur_sync::terminal::start();
            }
            if let Command::Sync { new_key: true, .. } | Command::Run { new_key: true } = command
                && let Err(e) = commands::new_key(&cfg)
            {
                eprintln!("concur-sync: {e}");
                return ExitCode::from(EXIT_FATAL);
            }
            match command {
                Command::Sync { full, .. } => commands::sync(&cfg, &cancel_on_signal(), full)
                    .await
                    .map_err(Into::into),
                Command::Plan { json, out } => commands::plan(&cfg, json, out.as_deref())
                    .await
                    .map_err(Into::into),
                Command::Apply { file } => commands::apply(&cfg, &file, &cancel_on_signal())
                    .await
                    .map_err(Into::into),
                Command::Retry { employee_id, .. } => {
                    commands::retry(&cfg, employee_id.as_deref()).map_err(Into::into)
                }
                Command::Skip {
                    employee_id,
                    reason,
                } => commands::skip(&cfg, &employee_id, &reason).map_err(Into::into),
                Command::Baseline { force } => {
                    commands::baseline(&cfg, force).await.map_err(Into::into)
                }
                Command::Run { .. } => {
                    let cancel = cancel_on_signal();
                    concur_sync::service::daemon::run_until(
                        cfg,
                        cancel.clone().cancelled_owned(),
                        cancel,
                    )
                    .await
                }
                Command::Approve { cycle } => {
                    commands::approve(&cfg, cycle).await.map_err(Into::into)
                }
                Command::Reject { cycle } => commands::reject(&cfg, cycle).map_err(Into::into),
                Command::Check { json } => Ok(commands::check(&cfg, json).await),
                Command::Reconcile => commands::reconcile(&cfg).await.map_err(Into::into),
                Command::Passwords { file } => concur_sync::passwords::run(&cfg, &file)
                    .await
                    .map_err(Into::into),
                Command::Simulate(_)
                | Command::Demo { .. }
                | Command::Status { .. }
                | Command::Explain { .. }
                | Command::Failed { .. }
                | Command::Probe { .. } => Ok(0),
            }
        }
    };
    concur_sync::terminal::finish();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = %e, "fatal");
            eprintln!(
                "concur-sync: {}",
                concur_sync::escape::escape(&e.to_string())
            );
            ExitCode::from(EXIT_FATAL)
        }
    }
}
