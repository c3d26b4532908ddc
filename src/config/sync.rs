//! `[sync]`: the schedules, the safety guards (deactivation and identity-change limits, the
//! source ratio), unmatched users and passwords on create, with their defaults and checks.

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PasswordOnCreate {
    /// The source's password column, else a generated random one.
    #[default]
    Source,
    /// Always a generated random password (never stored, never retrievable).
    Random,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    #[serde(default)]
    pub password_on_create: PasswordOnCreate,
    /// When `run` starts a cycle: six-field cron (with seconds), evaluated in UTC.
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// A plan deactivating more than this is held whole until an operator approves it:
    /// a count (`50`) or a share of the managed active users (`"5%"`).
    #[serde(default = "default_max_deactivations")]
    pub max_deactivations: DeactivationLimit,
    /// A plan changing the login, e-mail or name (or, by a rename, the employee id) of more
    /// users than this holds those changes until an operator approves them, as
    /// `max_deactivations` does: a count or a share of the managed active users.
    #[serde(default = "default_max_identity_changes")]
    pub max_identity_changes: DeactivationLimit,
    /// A complete read that returns fewer than this share of the managed active users
    /// deactivates nobody (the rest of the plan still applies; the cycle is `degraded`).
    #[serde(default = "default_min_source_ratio")]
    pub min_source_ratio: f64,
    /// Concur users that match no source user are managed (deactivated as departures) instead
    /// of left untouched.
    #[serde(default)]
    pub manage_unmatched: bool,
    /// When `reconcile` (adoption + drift repair) runs in the service: cron with seconds.
    #[serde(default = "default_reconcile_schedule")]
    pub reconcile_schedule: String,
    /// Nothing is written to Concur except a plan saved with `plan --out` and applied with
    /// `apply`: `sync` and the service's cycles plan, report and hold.
    #[serde(default)]
    pub require_approved_plan: bool,
}

fn default_reconcile_schedule() -> String {
    "0 0 2 * * *".into()
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            password_on_create: PasswordOnCreate::Source,
            schedule: default_schedule(),
            max_deactivations: default_max_deactivations(),
            max_identity_changes: default_max_identity_changes(),
            min_source_ratio: default_min_source_ratio(),
            manage_unmatched: false,
            reconcile_schedule: default_reconcile_schedule(),
            require_approved_plan: false,
        }
    }
}

fn default_schedule() -> String {
    "0 */15 * * * *".into()
}
fn default_max_deactivations() -> DeactivationLimit {
    DeactivationLimit::Share(5.0)
}
fn default_max_identity_changes() -> DeactivationLimit {
    DeactivationLimit::Share(5.0)
}
fn default_min_source_ratio() -> f64 {
    0.9
}

/// `sync.max_deactivations` and `sync.max_identity_changes`: a count or a percentage of the
/// managed active users.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeactivationLimit {
    Count(u64),
    /// Percent, 0–100.
    Share(f64),
}

impl DeactivationLimit {
    /// The largest number of deactivations allowed without approval.
    pub fn allowed(self, managed_active: u64) -> u64 {
        match self {
            DeactivationLimit::Count(n) => n,
            DeactivationLimit::Share(p) => ((managed_active as f64) * p / 100.0).floor() as u64,
        }
    }
}

impl std::fmt::Display for DeactivationLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeactivationLimit::Count(n) => write!(f, "{n}"),
            DeactivationLimit::Share(p) => write!(f, "{p}%"),
        }
    }
}

impl<'de> Deserialize<'de> for DeactivationLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        let bad = || {
            serde::de::Error::custom(
                "sync.max_deactivations and sync.max_identity_changes must be a count like 50 or a share like \"5%\"",
            )
        };
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(DeactivationLimit::Count(n)),
            Raw::Float(f) if f >= 0.0 && f.fract() == 0.0 => Ok(DeactivationLimit::Count(f as u64)),
            Raw::Float(_) => Err(bad()),
            Raw::Text(t) => {
                let t = t.trim();
                if let Some(p) = t.strip_suffix('%') {
                    let v: f64 = p.trim().parse().map_err(|_| bad())?;
                    if !(0.0..=100.0).contains(&v) {
                        return Err(bad());
                    }
                    Ok(DeactivationLimit::Share(v))
                } else {
                    t.parse().map(DeactivationLimit::Count).map_err(|_| bad())
                }
            }
        }
    }
}

impl SyncConfig {
    /// Checks `sync.reconcile_schedule` (a cron schedule with seconds).
    pub fn check_reconcile_schedule(&self) -> Result<(), ConfigError> {
        let schedule = self.reconcile_schedule.trim();
        if tokio_cron_scheduler::Job::new_async(schedule, |_, _| Box::pin(async {})).is_err() {
            return Err(ConfigError::invalid(
                "sync.reconcile_schedule",
                format!(
                    "{schedule:?} is not a cron schedule with seconds (six fields, e.g. \"0 0 2 * * *\" for 02:00 daily)"
                ),
            ));
        }
        Ok(())
    }
}
