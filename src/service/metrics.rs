//! Prometheus metrics of the daemon: counters fed after each cycle, gauges refreshed from the
//! state database and the Concur client at scrape time.

use prometheus::{
    Counter, Encoder, Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::{Mutex, PoisonError};

use crate::concur::ClientStats;
use crate::cycle::CycleReport;
use crate::store::Status;

pub struct Metrics {
    registry: Registry,
    cycles: IntCounterVec,
    records: IntCounterVec,
    rejected: IntCounter,
    outbox_depth: IntGauge,
    provisions_in_flight: IntGauge,
    held_plans: IntGauge,
    users: IntGaugeVec,
    http_429: IntCounter,
    throttled_seconds: Counter,
    requests: IntCounter,
    retries: IntCounter,
    last_success: Gauge,
    token_expiry: Gauge,
    drift_repaired: IntGauge,
    wakeups: IntCounter,
    drop_folder_alerts: IntGauge,
    seen_client: Mutex<ClientStats>,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    r.expect("metric definitions are static and valid")
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let cycles = must(IntCounterVec::new(
            Opts::new("concur_sync_cycles_total", "Sync cycles by outcome."),
            &["outcome"],
        ));
        let records = must(IntCounterVec::new(
            Opts::new(
                "concur_sync_records_total",
                "Records sent to Concur by operation and result.",
            ),
            &["operation", "result"],
        ));
        let rejected = must(IntCounter::new(
            "concur_sync_rejected_rows_total",
            "Source rows rejected by validation.",
        ));
        let outbox_depth = must(IntGauge::new(
            "concur_sync_outbox_depth",
            "Planned operations not yet answered by Concur.",
        ));
        let provisions_in_flight = must(IntGauge::new(
            "concur_sync_provisions_in_flight",
            "UPS v4 provisions Concur accepted whose outcome is still being polled.",
        ));
        let held_plans = must(IntGauge::new(
            "concur_sync_held_plans",
            "Deactivations held for an operator's approval.",
        ));
        let users = must(IntGaugeVec::new(
            Opts::new("concur_sync_users", "Users in the snapshot by state."),
            &["state"],
        ));
        let http_429 = must(IntCounter::new(
            "concur_sync_http_429_total",
            "429 Too Many Requests answers received from Concur.",
        ));
        let throttled_seconds = must(Counter::new(
            "concur_sync_throttled_seconds_total",
            "Seconds every request was held back by a served Retry-After.",
        ));
        let requests = must(IntCounter::new(
            "concur_sync_http_requests_total",
            "HTTP requests sent to Concur, retries and token requests included.",
        ));
        let retries = must(IntCounter::new(
            "concur_sync_http_retries_total",
            "HTTP attempts after the first.",
        ));
        let last_success = must(Gauge::new(
            "concur_sync_last_success_timestamp_seconds",
            "Unix time the last cycle that applied its plan finished.",
        ));
        let token_expiry = must(Gauge::new(
            "concur_sync_token_expiry_timestamp_seconds",
            "Unix time the current access token expires.",
        ));
        let drift_repaired = must(IntGauge::new(
            "concur_sync_drift_repaired_total",
            "Managed users whose drifted Concur record was repaired by reconcile.",
        ));
        let wakeups = must(IntCounter::new(
            "concur_sync_worker_wakeups_total",
            "Times the cycle worker woke up (schedule, file events, polling, approvals).",
        ));
        let drop_folder_alerts = must(IntGauge::new(
            "concur_sync_drop_folder_alerts",
            "Drop-folder alerts of the last 24 hours: files set aside or passed over, links, unusable archive/ or rejected/ (see status).",
        ));
        for c in [
            Box::new(drift_repaired.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(drop_folder_alerts.clone()),
            Box::new(wakeups.clone()),
            Box::new(cycles.clone()),
            Box::new(records.clone()),
            Box::new(rejected.clone()),
            Box::new(outbox_depth.clone()),
            Box::new(provisions_in_flight.clone()),
            Box::new(held_plans.clone()),
            Box::new(users.clone()),
            Box::new(http_429.clone()),
            Box::new(throttled_seconds.clone()),
            Box::new(requests.clone()),
            Box::new(retries.clone()),
            Box::new(last_success.clone()),
            Box::new(token_expiry.clone()),
        ] {
            must(registry.register(c));
        }
        for outcome in [
            "success",
            "partial",
            "held",
            "rejected",
            "degraded",
            "failed",
            "interrupted",
        ] {
            cycles.with_label_values(&[outcome]);
        }
        Metrics {
            registry,
            cycles,
            records,
            rejected,
            outbox_depth,
            provisions_in_flight,
            held_plans,
            users,
            http_429,
            throttled_seconds,
            requests,
            retries,
            last_success,
            token_expiry,
            drift_repaired,
            wakeups,
            drop_folder_alerts,
            seen_client: Mutex::new(ClientStats::default()),
        }
    }

    /// Counts a finished cycle.
    pub fn cycle(&self, report: &CycleReport) {
        self.cycles
            .with_label_values(&[report.outcome.as_str()])
            .inc();
        let c = &report.counts;
        for (op, n) in [
            ("create", c.create),
            ("update", c.update),
            ("deactivate", c.deactivate),
            ("reactivate", c.reactivate),
            ("password", c.password),
        ] {
            self.records
                .with_label_values(&[op, "acknowledged"])
                .inc_by(n);
        }
        self.records
            .with_label_values(&["any", "failed"])
            .inc_by(c.failed);
        self.rejected.inc_by(c.rejected);
    }

    /// Counts one wake-up of the cycle worker.
    pub fn wakeup(&self) {
        self.wakeups.inc();
    }

    /// Counts a cycle that failed before finishing.
    pub fn cycle_failed(&self) {
        self.cycles.with_label_values(&["failed"]).inc();
    }

    /// The Prometheus text exposition, with gauges refreshed from `status` and `client`.
    pub fn render(&self, status: Option<&Status>, client: Option<&ClientStats>) -> String {
        if let Some(st) = status {
            self.outbox_depth.set(st.outbox.pending as i64);
            self.provisions_in_flight
                .set(st.provisions.in_flight as i64);
            self.held_plans.set(st.outbox.held as i64);
            self.users
                .with_label_values(&["active"])
                .set(st.users.active as i64);
            self.users
                .with_label_values(&["inactive"])
                .set(st.users.inactive as i64);
            self.users
                .with_label_values(&["unmanaged"])
                .set(st.users.unmanaged as i64);
            if let Some(t) = st
                .last_success
                .as_ref()
                .and_then(|c| c.finished_at.as_deref())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            {
                self.last_success.set(t.timestamp_millis() as f64 / 1000.0);
            }
            if let Some(at) = st.token.access_expires_at {
                self.token_expiry.set(at as f64);
            }
            self.drift_repaired.set(st.drift_repaired as i64);
            self.drop_folder_alerts.set(st.alerts.len() as i64);
        }
        if let Some(now) = client {
            let mut seen = self
                .seen_client
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.http_429
                .inc_by(now.throttled_429.saturating_sub(seen.throttled_429));
            self.requests
                .inc_by(now.requests.saturating_sub(seen.requests));
            self.retries
                .inc_by(now.retries.saturating_sub(seen.retries));
            let dt = now.throttled_seconds - seen.throttled_seconds;
            if dt > 0.0 {
                self.throttled_seconds.inc_by(dt);
            }
            if let Some(at) = now.access_expires_at {
                self.token_expiry.set(at as f64);
            }
            *seen = *now;
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
