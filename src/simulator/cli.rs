//! `concur-sync simulate`: the simulator as a server, configured by flags.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::v4::{DEFAULT_COMPANY_UUID, EmployeeNumberFilter, V4Settings};
use super::{DEFAULT_REQUIRED_FIELDS, Dialect, Faults, RetryAfterMode, SimConfig, start};

fn parse_share(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("not a number: {s}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("a share must be between 0 and 1, got {v}"))
    }
}

/// `concur-sync simulate`: run the simulator as a server.
#[derive(clap::Args, Clone)]
pub struct SimulateArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long)]
    pub listen: SocketAddr,
    /// JSON state file: loaded at start if present, saved after every change.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Accept only this OAuth client id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Accept only this OAuth client secret.
    #[arg(long)]
    pub client_secret: Option<String>,
    /// Accept only this company id (token `username` with credtype=authtoken).
    #[arg(long)]
    pub company_id: Option<String>,
    /// Accept only this company request token (token `password` with credtype=authtoken).
    #[arg(long)]
    pub request_token: Option<String>,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl_seconds: u64,
    /// Elements required for new users (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_REQUIRED_FIELDS.map(String::from))]
    pub required_fields: Vec<String>,
    /// Spelling of the User v1 batch response.
    #[arg(long, value_enum, default_value_t = Dialect::Wire)]
    pub dialect: Dialect,
    /// Share of API requests answered 429 (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub fault_429: f64,
    /// Retry-After on 429: seconds:N (or N), date:N, 0, absent.
    #[arg(long, default_value = "seconds:1")]
    pub retry_after: RetryAfterMode,
    /// Share of API requests answered 500/502/503/504 (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub fault_5xx: f64,
    /// Latency added to every API request, in ms.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of API requests whose connection is closed without a response (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub fault_drop: f64,
    /// Share of API writes applied, then the connection closed without a response (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub fault_lost_response: f64,
    /// Also inject faults on the token endpoint.
    #[arg(long)]
    pub fault_token_endpoint: bool,
    /// Seed for the fault RNG (deterministic fault sequence).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Company name reported by Bulk User v3.1 and Profile.
    #[arg(long, default_value = "Simulated Company")]
    pub company_name: String,
    /// The company UUID (v4 enterprise `companyId`).
    #[arg(long, default_value = DEFAULT_COMPANY_UUID)]
    pub company_uuid: String,
    /// v4: how long after submission a provision's work is done, in ms.
    #[arg(long, default_value_t = 0)]
    pub provision_delay_ms: u64,
    /// v4: a provision pending this long is marked failed, in seconds.
    #[arg(long, default_value_t = 7200)]
    pub provision_timeout_seconds: u64,
    /// v4: writes younger than this are invisible to `.search` and the v4.1 list, in ms.
    #[arg(long, default_value_t = 0)]
    pub search_lag_ms: u64,
    /// v4: the search lag also applies to Identity v4 `filter` look-ups.
    #[arg(long)]
    pub lag_applies_to_v4_filter: bool,
    /// v4: the scopes company tokens hold (comma-separated); all when absent.
    #[arg(long, value_delimiter = ',')]
    pub scopes: Option<Vec<String>>,
    /// v4: accepted spellings of employeeNumber in Identity filters.
    #[arg(long, value_enum, default_value_t = EmployeeNumberFilter::Both)]
    pub employee_number_filter: EmployeeNumberFilter,
    /// v4: honour a Bulk's failOnErrors.
    #[arg(long)]
    pub honour_fail_on_errors: bool,
    /// v4: accept DELETE operations inside /Bulk.
    #[arg(long)]
    pub bulk_delete: bool,
    /// v4: resolve `bulkId:X` references inside a Bulk.
    #[arg(long)]
    pub bulk_id_references: bool,
    /// v4: a PATCH replace whose value filter matches nothing is 400 noTarget.
    #[arg(long)]
    pub strict_patch_targets: bool,
    /// v4: share of operations whose spend User extension fails once, transiently (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub fault_spend_failure: f64,
    /// v4: share of provisions stuck pending until the provision timeout (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub fault_stuck: f64,
}

impl SimulateArgs {
    /// The configuration these flags describe.
    pub fn to_config(&self) -> SimConfig {
        SimConfig {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            company_id: self.company_id.clone(),
            request_token: self.request_token.clone(),
            token_ttl: Duration::from_secs(self.token_ttl_seconds),
            required_fields: self.required_fields.clone(),
            dialect: self.dialect,
            faults: Faults {
                rate_429: self.fault_429,
                retry_after: self.retry_after,
                rate_5xx: self.fault_5xx,
                latency_ms: self.latency_ms,
                rate_drop: self.fault_drop,
                rate_lost_response: self.fault_lost_response,
                include_token_endpoint: self.fault_token_endpoint,
                rate_spend_failure: self.fault_spend_failure,
                rate_stuck: self.fault_stuck,
            },
            seed: self.seed,
            state_file: self.state.clone(),
            company_name: self.company_name.clone(),
            company_uuid: self.company_uuid.clone(),
            v4: V4Settings {
                provision_delay: Duration::from_millis(self.provision_delay_ms),
                provision_timeout: Duration::from_secs(self.provision_timeout_seconds),
                search_lag: Duration::from_millis(self.search_lag_ms),
                lag_applies_to_v4_filter: self.lag_applies_to_v4_filter,
                scopes: self.scopes.clone(),
                employee_number_filter: self.employee_number_filter,
                honour_fail_on_errors: self.honour_fail_on_errors,
                bulk_delete: self.bulk_delete,
                bulk_id_references: self.bulk_id_references,
                strict_patch_targets: self.strict_patch_targets,
                ..V4Settings::default()
            },
        }
    }
}

/// Serves until `shutdown` resolves. Prints `simulator listening on http://…` to stdout.
pub async fn run_cli(args: SimulateArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let handle = start(args.listen, args.to_config())
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the simulator on {}: {e}", args.listen))?;
    println!("simulator listening on {}", handle.base_url());
    shutdown.await;
    handle.shutdown().await;
    Ok(())
}
