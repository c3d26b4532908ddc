//! `concur-sync run`: the long-running service.
//!
//! One worker thread owns the state database and runs cycles one at a time; triggers (the cron
//! schedule, a file arriving in the drop folder, an operator's approval) only wake it, so cycles
//! never overlap and a trigger that finds a cycle running is coalesced into one follow-up. The
//! main runtime serves the admin endpoint, watches the folder, feeds the systemd watchdog while
//! the worker's heartbeat is fresh, and turns SIGTERM/SIGINT into a graceful stop.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Ran;
use super::admin::{self, AdminState};
use super::metrics::Metrics;
use crate::config::Config;
use crate::cycle::input::Input;
use crate::store::Store;
use crate::store::lock::WriterLock;
use crate::wiring;

/// What the triggers and the worker share.
struct Shared {
    wake: Notify,
    schedule_due: AtomicBool,
    reconcile_due: AtomicBool,
    running: AtomicBool,
    /// Unix milliseconds of the worker's last sign of life.
    heartbeat: AtomicU64,
    renamed: Mutex<Vec<PathBuf>>,
}

impl Shared {
    fn beat(&self) {
        self.heartbeat.store(now_ms(), Ordering::Relaxed);
    }
    fn heartbeat_age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.heartbeat.load(Ordering::Relaxed)))
    }
    fn trigger_schedule(&self) {
        let was_due = self.schedule_due.swap(true, Ordering::SeqCst);
        if was_due || self.running.load(Ordering::SeqCst) {
            tracing::info!(
                "scheduled cycle coalesced: a cycle is running or already waiting to run"
            );
        }
        self.wake.notify_one();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn notify_systemd(state: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(state)
    {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Runs the service until `shutdown` resolves; returns the exit code.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<u8> {
    run_until(cfg, shutdown, CancellationToken::new()).await
}

/// [`run`] with the caller's cancellation token: when `shutdown` resolves (or `cancel` fires)
/// every wait on Concur ends, no request is sent any more, and the process returns within
/// `service.shutdown_timeout`.
pub async fn run_until(
    cfg: Config,
    shutdown: impl Future<Output = ()>,
    cancel: CancellationToken,
) -> anyhow::Result<u8> {
    let admin_token = cfg.admin.token()?;
    let lock = WriterLock::acquire(&cfg.state.path)?;
    if matches!(cfg.source.kind, crate::config::SourceKind::Scim) {
        // A (re)started service reads a SCIM source in full first: deletions it missed while
        // down reach Concur at once.
        crate::source::scim::request_full_read();
    }
    let store = Store::open(&cfg.state.path, cfg.state.key_file.as_deref())?;
    let admin_store = Store::open(&cfg.state.path, cfg.state.key_file.as_deref())?;
    let client = wiring::client_with(&cfg, &store, &cancel, wiring::Waits::Service)?;
    let metrics = Arc::new(Metrics::new());
    let shared = Arc::new(Shared {
        wake: Notify::new(),
        // A (re)started daemon runs a cycle at once: it resumes what a stop interrupted.
        schedule_due: AtomicBool::new(true),
        reconcile_due: AtomicBool::new(false),
        running: AtomicBool::new(false),
        heartbeat: AtomicU64::new(now_ms()),
        renamed: Mutex::new(Vec::new()),
    });

    // Admin endpoint.
    let listener = tokio::net::TcpListener::bind(&cfg.admin.listen)
        .await
        .map_err(|e| anyhow::anyhow!("admin.listen {}: cannot listen: {e}", cfg.admin.listen))?;
    let admin_addr = listener.local_addr()?;
    let token_required = admin_token.is_some();
    let app = admin::router(Arc::new(AdminState {
        store: Mutex::new(admin_store),
        metrics: metrics.clone(),
        client: Some(client.clone()),
        token: admin_token,
    }));
    let admin_cancel = cancel.clone();
    let admin_task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { admin_cancel.cancelled().await })
            .await;
    });
    tracing::info!(listen = %admin_addr, token_required, "admin endpoint listening (/ /healthz /readyz /metrics /status)");

    // Schedule.
    let mut scheduler = tokio_cron_scheduler::JobScheduler::new().await?;
    let tick = shared.clone();
    let job = tokio_cron_scheduler::Job::new(cfg.sync.schedule.as_str(), move |_, _| {
        tick.trigger_schedule();
    })
    .map_err(|e| anyhow::anyhow!("sync.schedule {:?}: {e}", cfg.sync.schedule))?;
    scheduler.add(job).await?;
    let tick = shared.clone();
    let job = tokio_cron_scheduler::Job::new(cfg.sync.reconcile_schedule.as_str(), move |_, _| {
        tick.reconcile_due.store(true, Ordering::SeqCst);
        tick.wake.notify_one();
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "sync.reconcile_schedule {:?}: {e}",
            cfg.sync.reconcile_schedule
        )
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;

    // The SCIM endpoint of a `scim_push` source: pushes schedule a cycle (debounced).
    let _scim_push = if cfg.source.kind == crate::config::SourceKind::ScimPush {
        let tick = shared.clone();
        let push = &cfg.source.scim_push;
        Some(
            crate::source::scim_push::serve(push, cancel.clone(), move || tick.trigger_schedule())
                .await?,
        )
    } else {
        None
    };

    // Drop-folder watcher (events where the filesystem gives them; the worker also polls).
    let input = Input::new(&cfg);
    let _watcher = match &input {
        Input::Folder(f) => watch(f.dir(), shared.clone()),
        Input::Fixed => None,
    };

    // The worker. It reports its end through a channel rather than being joined: a join on
    // the runtime's blocking pool would keep the process alive past the shutdown timeout.
    let (worker_done, worker_ended) = tokio::sync::oneshot::channel::<()>();
    {
        let cfg = cfg.clone();
        let shared = shared.clone();
        let cancel = cancel.clone();
        let metrics = metrics.clone();
        std::thread::Builder::new()
            .name("cycle-worker".into())
            .spawn(move || {
                worker(cfg, store, client, input, shared, metrics, cancel);
                let _ = worker_done.send(());
            })?;
    }

    notify_systemd(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("running"),
    ]);
    if let Some(interval) = sd_notify::watchdog_enabled() {
        let shared = shared.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(interval / 2);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    _ = t.tick() => {}
                }
                if shared.heartbeat_age() < interval {
                    notify_systemd(&[sd_notify::NotifyState::Watchdog]);
                } else {
                    tracing::error!(
                        age_ms = shared.heartbeat_age().as_millis() as u64,
                        "the cycle worker stalled: no longer feeding the systemd watchdog"
                    );
                }
            }
        });
    }
    tracing::info!(schedule = %cfg.sync.schedule, source = %cfg.source.path.display(), "concur-sync running");

    tokio::select! {
        () = shutdown => {}
        () = cancel.cancelled() => {}
    }
    tracing::info!(
        "stopping: no new cycle starts and no further request is sent to Concur; what Concur acknowledged stays committed"
    );
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
    shared.wake.notify_one();
    let timeout = Duration::from_secs_f64(cfg.service.shutdown_timeout);
    let deadline = Instant::now() + timeout;
    match tokio::time::timeout(timeout, worker_ended).await {
        Ok(_) => tracing::info!("stopped cleanly"),
        Err(_) => tracing::warn!(
            timeout_s = timeout.as_secs_f64(),
            "the cycle did not stop within service.shutdown_timeout; exiting anyway (what Concur did not acknowledge is re-planned at the next start)"
        ),
    }
    let _ = scheduler.shutdown().await;
    let rest = deadline.saturating_duration_since(Instant::now());
    let _ = tokio::time::timeout(rest.min(Duration::from_secs(2)), admin_task).await;
    drop(lock);
    Ok(0)
}

fn watch(dir: &std::path::Path, shared: Arc<Shared>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher, event::ModifyKind, event::RenameMode};
    let dir_owned = dir.to_path_buf();
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        // Our own scans of the folder open and read it: only changes may wake the worker.
        if !matches!(
            ev.kind,
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
        ) || matches!(ev.kind, EventKind::Modify(ModifyKind::Metadata(_)))
        {
            return;
        }
        let renamed: Vec<PathBuf> = match ev.kind {
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => ev.paths.clone(),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                ev.paths.get(1).cloned().into_iter().collect()
            }
            _ => Vec::new(),
        };
        let renamed: Vec<PathBuf> = renamed
            .into_iter()
            .filter(|p| p.parent() == Some(dir_owned.as_path()))
            .collect();
        if !renamed.is_empty() {
            shared
                .renamed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(renamed);
        }
        shared.wake.notify_one();
    };
    match notify::recommended_watcher(handler) {
        Ok(mut w) => match w.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(folder = %dir.display(), error = %e, "no file events for the drop folder; polling only");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "no file watcher available; polling the drop folder only");
            None
        }
    }
}

fn worker(
    cfg: Config,
    mut store: Store,
    client: crate::concur::ConcurClient,
    mut input: Input,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the cycle worker");
            return;
        }
    };
    rt.block_on(async move {
        let hb = shared.clone();
        tokio::spawn(async move {
            loop {
                hb.beat();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let poll = Duration::from_secs_f64(cfg.service.poll_seconds.max(0.2));
        let mut file_backoff_until: Option<Instant> = None;
        let mut said_no_source = false;
        loop {
            if cancel.is_cancelled() {
                break;
            }
            metrics.wakeup();
            if let Some(f) = input.folder() {
                let renamed: Vec<PathBuf> =
                    std::mem::take(&mut *shared.renamed.lock().unwrap_or_else(PoisonError::into_inner));
                for p in renamed {
                    f.note_renamed(&p);
                }
                if let Err(e) = super::set_aside_strays(&store, f) {
                    tracing::error!(error = %e, "cannot set aside links in the drop folder");
                }
            }
            if let Err(e) =
                super::apply_requested_approvals(&cfg, &mut store, &client, &mut input).await
            {
                tracing::error!(error = %e, "applying an approved plan failed");
            }
            let backing_off = file_backoff_until.is_some_and(|t| Instant::now() < t);
            let file_ready = !backing_off && input.has_ready();
            let due = shared.schedule_due.swap(false, Ordering::SeqCst);
            if file_ready || due {
                shared.running.store(true, Ordering::SeqCst);
                let head = input
                    .folder()
                    .and_then(|f| f.next_ready(std::time::SystemTime::now()));
                let result = super::cycle_once(&cfg, &mut store, &client, &mut input, &cancel).await;
                shared.running.store(false, Ordering::SeqCst);
                match result {
                    Ok(Ran::Cycle(r, _)) => {
                        metrics.cycle(&r);
                        file_backoff_until = None;
                        said_no_source = false;
                        if let Some(att) = &cfg.attendees
                            && !cancel.is_cancelled()
                            && let Err(e) = crate::attendees::run(att, &mut store, &client).await
                        {
                            tracing::error!(error = %e, "attendee job failed");
                        }
                    }
                    Ok(Ran::Duplicate(_)) => {}
                    Ok(Ran::NoSource(why)) => {
                        if !said_no_source {
                            tracing::info!("{why}");
                            said_no_source = true;
                        }
                    }
                    Err(e) => {
                        metrics.cycle_failed();
                        tracing::error!(error = %e, "cycle failed");
                        // A file that could not be used was moved aside (or is passed over):
                        // the files behind it go on at once. A file that could not be sent
                        // stays; try it again after a pause.
                        let moved_on = head.is_some()
                            && input
                                .folder()
                                .and_then(|f| f.next_ready(std::time::SystemTime::now()))
                                != head;
                        if !moved_on {
                            file_backoff_until = Some(Instant::now() + Duration::from_secs(60));
                        }
                    }
                }
                if !cancel.is_cancelled() && input.has_ready() && file_backoff_until.is_none() {
                    continue;
                }
            }
            if shared.reconcile_due.swap(false, Ordering::SeqCst) && !cancel.is_cancelled() {
                shared.running.store(true, Ordering::SeqCst);
                match super::reconcile(&cfg, &mut store, &client).await {
                    Ok(r) => tracing::info!(id = r.id, outcome = r.outcome, counts = ?r.counts, "reconcile finished"),
                    Err(e) => tracing::error!(error = %e, "reconcile failed"),
                }
                shared.running.store(false, Ordering::SeqCst);
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = shared.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    });
}
