//! The operators' commands (`explain`, `failed`, `retry`, `skip`, `apply`, and the saving half
//! of `plan --out`), each returning the process exit code like every command in `commands`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::cycle;
use crate::cycle::input::{Input, Preview};
use crate::error::{EXIT_FATAL, SyncError};
use crate::escape::escape;
use crate::service::Ran;
use crate::store::{CycleOutcome, Store, lock::WriterLock};
use crate::wiring;

fn open_store(cfg: &Config) -> Result<Store, SyncError> {
    Ok(Store::open(&cfg.state.path, cfg.state.key_file.as_deref())?)
}

/// `concur-sync explain EMPLOYEE_ID|LOGIN [--json]`: everything the state database knows about
/// one user, newest first (read only, like `status`). Exit 1 when it knows no such user.
pub fn explain(state: &Path, key: &str, json: bool) -> Result<u8, SyncError> {
    let store = Store::open_read_only(state)?;
    let found = crate::operators::explain::explain(&store, key)?;
    if found.is_empty() {
        eprintln!(
            "concur-sync: no user {} in the state database {} (neither an employee id nor a login it knows)",
            escape(key),
            crate::escape::path(state)
        );
        return Ok(EXIT_FATAL);
    }
    if json {
        let doc = match found.as_slice() {
            [one] => serde_json::to_string_pretty(one),
            many => serde_json::to_string_pretty(many),
        };
        crate::outln!("{}", doc.unwrap_or_default());
    } else {
        let texts: Vec<String> = found
            .iter()
            .map(crate::operators::explain::to_text)
            .collect();
        crate::out!("{}", texts.join("\n"));
    }
    Ok(0)
}

/// `concur-sync failed [--json]`: the failed records with Concur's reasons (the set `status`
/// counts as failed), and the parked ones (read only).
pub fn failed(state: &Path, json: bool) -> Result<u8, SyncError> {
    let store = Store::open_read_only(state)?;
    let q = crate::operators::queue::queue(&store)?;
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&q).unwrap_or_default());
    } else {
        crate::out!("{}", crate::operators::queue::to_text(&q));
    }
    Ok(0)
}

/// `concur-sync retry EMPLOYEE_ID|--all`: the next cycle (or `sync` now) plans the record
/// again, a parked one included, even if its source row did not change. Audited.
pub fn retry(cfg: &Config, employee_id: Option<&str>) -> Result<u8, SyncError> {
    use crate::operators::queue::{self, Retried};
    let store = open_store(cfg)?;
    let actor = crate::operators::actor();
    let Some(id) = employee_id else {
        let ids = queue::retry_all(&store, &actor)?;
        crate::outln!(
            "{} records planned again from the next cycle on (`concur-sync sync` runs one now)",
            ids.len()
        );
        return Ok(0);
    };
    match queue::retry(&store, id, &actor)? {
        Retried::Unparked => crate::outln!(
            "{}: no longer parked; the next cycle (or `concur-sync sync` now) plans it again",
            escape(id)
        ),
        Retried::Failed => crate::outln!(
            "{}: failed, and planned again by the next cycle (or `concur-sync sync` now)",
            escape(id)
        ),
        Retried::Nothing => {
            eprintln!(
                "concur-sync: {} has no failed or parked record (`concur-sync failed` lists them)",
                escape(id)
            );
            return Ok(EXIT_FATAL);
        }
    }
    Ok(0)
}

/// `concur-sync skip EMPLOYEE_ID --reason TEXT`: parks a failed record: it no longer counts as
/// failed and is not planned until its source row changes (or `retry`). Audited.
pub fn skip(cfg: &Config, employee_id: &str, reason: &str) -> Result<u8, SyncError> {
    if reason.trim().is_empty() {
        eprintln!("concur-sync: --reason must say why the record is parked");
        return Ok(EXIT_FATAL);
    }
    let store = open_store(cfg)?;
    match store.skip(employee_id, reason.trim(), &crate::operators::actor())? {
        Some(s) => {
            crate::outln!(
                "{}: parked ({} failed: {}); not planned until its source row changes or `concur-sync retry {}`",
                escape(employee_id),
                s.operation,
                escape(&s.message),
                escape(employee_id)
            );
            Ok(0)
        }
        None => {
            let parked = store.skips()?.iter().any(|s| s.employee_id == employee_id);
            eprintln!(
                "concur-sync: {} {}",
                escape(employee_id),
                if parked {
                    "is parked already"
                } else {
                    "has no failed record to park (`concur-sync failed` lists them)"
                }
            );
            Ok(EXIT_FATAL)
        }
    }
}

/// `plan --out FILE`: writes the plan computed against snapshot generation `generation` (read
/// before planning; a plan during which the snapshot moved is refused) to `file`, readable by
/// its owner only.
pub fn save_plan(
    store: &Store,
    planned: &cycle::PlannedCycle,
    generation: i64,
    file: &Path,
) -> Result<String, SyncError> {
    if store.snapshot_generation()? != generation {
        return Err(SyncError::Refused(
            "the snapshot changed while the plan was computed (a cycle was recording what Concur acknowledged): run `plan --out` again".into(),
        ));
    }
    let saved = cycle::SavedPlan::new(planned, generation);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".concur-sync-plan")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(dir)?;
        tmp.write_all(saved.to_json().as_bytes())?;
        tmp.as_file().sync_all()?;
        tmp.persist(file).map_err(|e| e.error)?;
        Ok(())
    };
    write().map_err(|e| {
        SyncError::Refused(format!(
            "cannot write the plan to {}: {e}",
            crate::escape::path(file)
        ))
    })?;
    let parked = match planned.skipped {
        0 => String::new(),
        n => format!("; {n} skipped: parked"),
    };
    Ok(format!(
        "plan saved to {} ({} operations{parked}; source digest {}, snapshot generation {generation}): `concur-sync apply {}` sends exactly these",
        crate::escape::path(file),
        saved.operations.len(),
        saved.source_digest,
        crate::escape::path(file)
    ))
}

/// `concur-sync apply FILE`: applies exactly the plan `plan --out` saved, if neither the source
/// nor the snapshot changed since (else exit 1, nothing sent, the reason printed). The safety
/// guards apply as to any plan: what they hold waits for `approve`.
pub async fn apply(cfg: &Config, file: &Path, cancel: &CancellationToken) -> Result<u8, SyncError> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "concur-sync: plan not applied: cannot read {}: {e}",
                crate::escape::path(file)
            );
            return Ok(EXIT_FATAL);
        }
    };
    let saved = match cycle::SavedPlan::parse(&text) {
        Ok(p) => p,
        Err(why) => {
            eprintln!(
                "concur-sync: plan not applied: {}: {}",
                crate::escape::path(file),
                escape(&why)
            );
            return Ok(EXIT_FATAL);
        }
    };
    let (lock, holder) = match WriterLock::acquire(&cfg.state.path) {
        Ok(lock) => (Some(lock), None),
        Err(crate::store::StoreError::Locked(holder)) => (None, Some(holder)),
        Err(e) => return Err(e.into()),
    };
    let mut store = open_store(cfg)?;
    let refuse = |store: &Store, why: &str| -> Result<u8, SyncError> {
        store.audit(
            "apply-refused",
            &format!("{}: {why}", crate::escape::path(file)),
        )?;
        eprintln!("concur-sync: plan not applied: {}", escape(why));
        Ok(EXIT_FATAL)
    };
    // Before anything is sent: the file a cycle would read now, and the snapshot.
    let digest = match cycle::input::preview(cfg, &store)? {
        Some((Preview::Next(p) | Preview::Current(p), _)) => {
            crate::source::file_digest(&p, true).ok()
        }
        Some((Preview::Nothing, _)) => {
            return refuse(&store, "the drop folder holds no file to apply the plan to");
        }
        None => crate::source::current_digest(&cfg.source).and_then(Result::ok),
    };
    if let Some(why) = saved.stale(digest.as_deref(), store.snapshot_generation()?) {
        return refuse(&store, &why);
    }
    if let Some(holder) = holder {
        // The running service applies it before its next cycle, exactly as below.
        store.request_saved_plan(&file.display().to_string(), &text)?;
        store.audit("apply-requested", &crate::escape::path(file))?;
        crate::outln!(
            "plan recorded; the running service applies it shortly ({holder}); `concur-sync status` and its log show the outcome"
        );
        return Ok(0);
    }
    let _lock = lock;
    let client = wiring::client_with(cfg, &store, cancel, wiring::Waits::OneShot)?;
    let mut input = Input::new(cfg);
    let ran =
        crate::service::cycle_once_with(cfg, &mut store, &client, &mut input, cancel, Some(&saved))
            .await;
    let report = match ran {
        Ok(Ran::Cycle(r, _)) => r,
        Ok(Ran::Duplicate(_) | Ran::NoSource(_)) => {
            return refuse(
                &store,
                "the source the plan was saved from is not there to apply (the drop folder's file was already processed)",
            );
        }
        Err(SyncError::Refused(why)) => return refuse(&store, &why),
        Err(e) => return Err(e),
    };
    store.audit(
        "apply",
        &format!(
            "{} applied as cycle {} ({} operations saved): {}",
            crate::escape::path(file),
            report.cycle_id,
            saved.operations.len(),
            report.outcome
        ),
    )?;
    crate::outln!(
        "cycle {} {}: {}",
        report.cycle_id,
        report.outcome.as_str(),
        report.counts.summary()
    );
    if report.outcome == CycleOutcome::Held {
        crate::outln!(
            "held for approval (deactivations or identity changes beyond the sync.max_* limits): `concur-sync approve {id}` applies them, `concur-sync reject {id}` drops them",
            id = report.cycle_id
        );
    }
    Ok(cycle::exit_code(report.outcome))
}
