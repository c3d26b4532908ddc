//! The `concur-sync` binary: parses the command line, sets up logging, loads the configuration
//! and calls into the library. Exit codes: 0 ok, 1 fatal, 2 some records rejected or failed,
//! 3 held by a safety guard.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use concur_sync::commands::{self, EXIT_FATAL};
use concur_sync::config::{Config, LogFormat};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one sync cycle now and exit (0 ok, 1 fatal, 2 some records rejected or failed, 3 held).
    Sync {
        /// The state key file is lost: start a new key. Stored passwords become unknown (none is
        /// sent until the source changes it) and a new refresh token is requested.
        #[arg(long)]
        new_key: bool,
    },
    /// Show what a cycle would do; writes nothing to Concur and does not advance the snapshot.
    Plan {
        #[arg(long)]
        json: bool,
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
    Demo,
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
}

fn init_logging(format: LogFormat, level: Option<&str>, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level.unwrap_or(default)))
        .unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn load_config(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    let path = commands::config_path(path);
    Config::load(&path).map_err(|e| {
        init_logging(LogFormat::Text, None, "info");
        eprintln!("concur-sync: {e}");
        ExitCode::from(EXIT_FATAL)
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<u8> = match cli.command {
        Command::Simulate(args) => {
            init_logging(LogFormat::Text, None, "info");
            concur_sync::simulator::run_cli(*args, shutdown_signal())
                .await
                .map(|()| 0)
        }
        Command::Demo => {
            init_logging(LogFormat::Text, None, "warn");
            concur_sync::demo::run().await
        }
        Command::Status { json, state } => {
            let (state, key) = match state {
                Some(s) => (s, None),
                None => match load_config(cli.config) {
                    Ok(c) => (c.state.path, c.state.key_file),
                    Err(code) => return code,
                },
            };
            init_logging(LogFormat::Text, None, "warn");
            commands::status(&state, key.as_deref(), json).map_err(Into::into)
        }
        command => {
            let cfg = match load_config(cli.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(cfg.log.format, cfg.log.level.as_deref(), "info");
            if let Command::Sync { new_key: true } | Command::Run { new_key: true } = command
                && let Err(e) = commands::new_key(&cfg)
            {
                eprintln!("concur-sync: {e}");
                return ExitCode::from(EXIT_FATAL);
            }
            match command {
                Command::Sync { .. } => commands::sync(&cfg).await.map_err(Into::into),
                Command::Plan { json } => commands::plan(&cfg, json).await.map_err(Into::into),
                Command::Baseline { force } => {
                    commands::baseline(&cfg, force).await.map_err(Into::into)
                }
                Command::Run { .. } => {
                    concur_sync::service::daemon::run(cfg, shutdown_signal()).await
                }
                Command::Approve { cycle } => {
                    commands::approve(&cfg, cycle).await.map_err(Into::into)
                }
                Command::Reject { cycle } => commands::reject(&cfg, cycle).map_err(Into::into),
                Command::Check { json } => {
                    Ok(concur_sync::readback::command_check(&cfg, json).await)
                }
                Command::Reconcile => concur_sync::readback::command_reconcile(&cfg)
                    .await
                    .map_err(Into::into),
                Command::Passwords { file } => concur_sync::passwords::run(&cfg, &file)
                    .await
                    .map_err(Into::into),
                Command::Simulate(_) | Command::Demo | Command::Status { .. } => Ok(0),
            }
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!(error = %e, "fatal");
            eprintln!("concur-sync: {e}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}
