//! `concur-sync demo`: a self-contained tour. Starts the bundled simulator on a free loopback
//! port, keeps state in a temporary directory, and syncs two days of a sample HR file.

use std::net::SocketAddr;

use crate::config::Config;
use crate::cycle;
use crate::service;
use crate::simulator;
use crate::store::{CycleOutcome, Store};
use crate::wiring;

const DAY1: &str = include_str!("../config/examples/hr-day1.csv");
const DAY2: &str = include_str!("../config/examples/hr-day2.csv");

/// Runs the demo; returns the exit code.
pub async fn run() -> anyhow::Result<u8> {
    let sim = simulator::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        simulator::SimConfig::default(),
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let hr = dir.path().join("hr.csv");
    let state = dir.path().join("state.db");
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
        "concur-sync demo: simulator at {}, state in {}",
        sim.base_url(),
        dir.path().display()
    );

    let mut store = Store::open(&cfg.state.path, None)?;
    let client = wiring::client(&cfg, &store)?;
    let mut worst = 0u8;
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
        let users = sim.users();
        let active = users.iter().filter(|u| u.active()).count();
        crate::outln!(
            "-- Concur (simulator) now holds {} users, {} active",
            users.len(),
            active
        );
        worst = worst.max(match report.outcome {
            CycleOutcome::Success => 0,
            // The sample file carries one deliberately broken row on day 1.
            CycleOutcome::Partial => 0,
            _ => 3,
        });
    }
    crate::outln!("\n== status");
    crate::out!("{}", crate::commands::status_text(&store.status()?));
    sim.shutdown().await;
    Ok(worst)
}
