//! `concur-sync demo`: a self-contained tour. Starts the bundled simulator on a free loopback
//! port, keeps state in a temporary directory, and syncs two days of a sample HR file through
//! the User Provisioning Service v4 (or, with `--api v1`, through User v1).

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::config::{ConcurApi, Config};
use crate::cycle;
use crate::service;
use crate::simulator::{self, SimConfig, SimHandle, V4Settings};
use crate::store::{CycleOutcome, Store};
use crate::wiring;

const DAY1: &str = include_str!("../config/examples/hr-day1.csv");
const DAY2: &str = include_str!("../config/examples/hr-day2.csv");

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// How long the simulator takes to process a provision in the v4 tour: long enough that the
/// first status poll may find it pending, as Concur's often are.
const PROVISION_DELAY: Duration = Duration::from_millis(300);

/// Runs the demo on `api`; returns the exit code.
pub async fn run(api: ConcurApi) -> anyhow::Result<u8> {
    let sim_config = match api {
        ConcurApi::V4 => SimConfig {
            v4: V4Settings {
                provision_delay: PROVISION_DELAY,
                ..V4Settings::default()
            },
            ..SimConfig::default()
        },
        ConcurApi::V1 => SimConfig::default(),
    };
    let sim = simulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), sim_config).await?;
    let dir = tempfile::tempdir()?;
    let hr = dir.path().join("hr.csv");
    let state = dir.path().join("state.db");
    let target = match api {
        ConcurApi::V4 => format!(
            "api = \"v4\"\ncompany_uuid = \"{}\"\nprovision_poll_seconds = 0.2",
            sim.company_uuid()
        ),
        ConcurApi::V1 => "api = \"v1\"".to_string(),
    };
    let cfg = Config::from_toml(&format!(
        r#"
[state]
path = {state:?}
[source]
kind = "csv"
path = {hr:?}
[defaults]
ledger = "DEFAULT"
[concur]
{target}
base_url = "{base}"
client_id = "demo-client"
client_secret = "demo-secret"
company_id = "demo-company"
request_token = "demo-request-token"
requests_per_second = 20
[sync]
# The sample company is small: allow its two departures without an operator's approval.
max_deactivations = 5
# … and its one changed name.
max_identity_changes = 5
"#,
        state = state.display().to_string(),
        hr = hr.display().to_string(),
        base = sim.base_url(),
    ))?;
    crate::outln!(
        "concur-sync demo ({}): simulator at {}, state in {}",
        match api {
            ConcurApi::V4 => "User Provisioning Service v4",
            ConcurApi::V1 => "User v1",
        },
        sim.base_url(),
        dir.path().display()
    );

    let mut store = Store::open(&cfg.state.path, None)?;
    let client = wiring::client(&cfg, &store)?;
    let mut worst = 0u8;
    let mut seen = Seen::default();
    for (title, content) in [
        ("Day 1: first load of config/examples/hr-day1.csv", DAY1),
        (
            "Day 2: config/examples/hr-day2.csv (an update, a departure, a leaver marked inactive, a fixed row, a new hire)",
            DAY2,
        ),
    ] {
        crate::outln!("\n== {title}");
        std::fs::write(&hr, content)?;
        let planned = cycle::read_and_plan(&cfg, &store).await?;
        crate::outln!("-- plan");
        crate::out!("{}", planned.to_text());
        let report = service::run_cycle(&cfg, &mut store, &client, &Default::default()).await?;
        crate::outln!(
            "-- outcome: cycle {} {}: {} ({} requests)",
            report.cycle_id,
            report.outcome.as_str(),
            report.counts.summary(),
            report.counts.requests
        );
        match api {
            ConcurApi::V4 => {
                show_provisions(&sim, &mut seen);
                let users = sim.v4_users();
                let active = users.iter().filter(|u| u["active"] == true).count();
                crate::outln!(
                    "-- Concur (simulator, UPS v4) now holds {} users, {} active",
                    users.len(),
                    active
                );
            }
            ConcurApi::V1 => {
                let users = sim.users();
                let active = users.iter().filter(|u| u.active()).count();
                crate::outln!(
                    "-- Concur (simulator) now holds {} users, {} active",
                    users.len(),
                    active
                );
            }
        }
        worst = worst.max(match report.outcome {
            CycleOutcome::Success => 0,
            // The sample file carries one deliberately broken row on day 1.
            CycleOutcome::Partial => 0,
            _ => 3,
        });
    }
    if api == ConcurApi::V4 {
        crate::outln!("\n== Concur's users (simulator, UPS v4 /Users)");
        for u in sim.v4_users() {
            crate::outln!(
                "  {:<5} {:<28} {:<8} {}",
                text(&u[ENTERPRISE]["employeeNumber"]),
                text(&u["userName"]),
                if u["active"] == true {
                    "active"
                } else {
                    "inactive"
                },
                text(&u["id"])
            );
        }
    }
    crate::outln!("\n== status");
    let status = store.status()?;
    crate::out!("{}", crate::commands::status_text(&status));
    if api == ConcurApi::V4 && status.provisions.in_flight == 0 {
        // `status` names provisions only while some are in flight.
        crate::outln!("provisions in flight: 0");
    }
    sim.shutdown().await;
    Ok(worst)
}

/// What the v4 tour has already shown of the simulator's request log and provisions.
#[derive(Default)]
struct Seen {
    requests: usize,
    provisions: usize,
}

/// The Bulk requests, `PATCH`es and provisions since the last call, and how each provision
/// settled.
fn show_provisions(sim: &SimHandle, seen: &mut Seen) {
    let requests = sim.requests();
    let new = requests.get(seen.requests..).unwrap_or_default();
    let bulks = new
        .iter()
        .filter(|r| r.method == "POST" && r.path.to_ascii_lowercase().contains("/v4/bulk"))
        .count();
    let patches = new.iter().filter(|r| r.method == "PATCH").count();
    let polls = new
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/provisions/"))
        .count();
    seen.requests = requests.len();
    let provisions = sim.provisions();
    let new = provisions.get(seen.provisions..).unwrap_or_default();
    seen.provisions = provisions.len();
    crate::outln!(
        "-- UPS v4: {bulks} Bulk requests, {patches} PATCH requests, {} provisions, {polls} status polls",
        new.len()
    );
    for p in new {
        let count = &p["operationsCount"];
        let settled = if p["status"]["completed"] == true {
            if p["status"]["success"] == true {
                "settled: success"
            } else {
                "settled: with failures"
            }
        } else {
            "still pending"
        };
        crate::outln!(
            "   provision {}: {} operations, {} succeeded, {} failed ({settled})",
            text(&p["id"]),
            count["total"],
            count["success"],
            count["failed"]
        );
    }
}

/// A JSON string's text, or the JSON itself for anything else.
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}
