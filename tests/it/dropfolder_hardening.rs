//! Hardening of CSV reading and the drop folder, at the boundary: the real binary against the
//! simulator, fed hostile files (quotes that swallow rows, line breaks inside values, huge
//! records and fields, symbolic links, old files, names that would forge log lines).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::harness::{HEADER, Rig, code, hr_csv, q, row, rows, spawn_bin, text};

/// A rig whose source is a drop folder `inbox/` (files complete at once).
fn use_folder(rig: &Rig) -> PathBuf {
    let inbox = rig.dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    rig.write_source_config(&format!(
        "[source]\nkind = \"csv\"\npath = {:?}\nsettle_seconds = 0\n",
        inbox.display().to_string()
    ));
    inbox
}

/// Writes a file into the folder under a temporary name and renames it into place, with the
/// given modification time.
fn drop_file(inbox: &Path, name: &str, content: &[u8], mtime: SystemTime) -> PathBuf {
    let tmp = inbox.join(".incoming.tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::File::options()
        .append(true)
        .open(&tmp)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let to = inbox.join(name);
    std::fs::rename(&tmp, &to).unwrap();
    to
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The reason file written beside the one file in `rejected/` whose name starts with `prefix`.
fn rejected_reason(inbox: &Path, prefix: &str) -> String {
    let dir = inbox.join("rejected");
    let name = entries(&dir)
        .into_iter()
        .find(|n| n.starts_with(prefix) && n.ends_with(".reason.txt"))
        .unwrap_or_else(|| panic!("no reason for {prefix} in {:?}", entries(&dir)));
    std::fs::read_to_string(dir.join(name)).unwrap()
}

fn active(rig: &Rig) -> usize {
    rig.sim.users().iter().filter(|u| u.active()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_that_swallows_rows_fails_the_file_and_deactivates_nobody() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..6));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(active(&rig), 6);

    // Line 4 (E00002) opens a quote in org_unit1 that line 7 closes: E00003 to E00005 would
    // vanish into one value and be deactivated.
    let mut r = rows(0..6);
    r[2] = r[2].replace(",Finance <EMEA>,", ",\"Finance <EMEA>,");
    r[5] = r[5].replace(",Sales & Marketing,", ",Sales\" & Marketing,");
    rig.write_hr(&r);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hr.csv:4: malformed CSV: a quoted field (column org_unit1) opened on line 4 runs over line 5, which looks like a row of its own"),
        "{err}"
    );
    assert_eq!(active(&rig), 6, "a swallowed employee was deactivated");
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["outcome"], "failed");

    // In a drop folder the file goes to rejected/ with the reason.
    let inbox = use_folder(&rig);
    drop_file(
        &inbox,
        "hr-swallow.csv",
        hr_csv(&r).as_bytes(),
        SystemTime::now(),
    );
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(rejected_reason(&inbox, "hr-swallow.csv").contains("runs over line 5"));
    assert_eq!(active(&rig), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_breaks_inside_quoted_values_become_spaces_with_a_warning() {
    let rig = Rig::start().await;
    let mut r = rows(0..3);
    r[1] = r[1].replace(
        ",Sales & Marketing,",
        &format!(",{},", q("Sales &\r\n  Marketing\tEMEA")),
    );
    rig.write_hr(&r);
    let out = rig.run(&["plan"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("warning    hr.csv:3: employee E00001: field org_unit1"),
        "{}",
        text(&out)
    );
    let out = rig.run(&["plan", "--json"]).await;
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["warnings"][0]["source"], "hr.csv:3");
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let user = rig
        .sim
        .users()
        .into_iter()
        .find(|u| u.emp_id() == "E00001")
        .expect("E00001 provisioned");
    assert_eq!(user.get("OrgUnit1"), Some("Sales & Marketing EMEA"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("hr.csv:3: employee E00001: field org_unit1: a line break or tab inside the value was replaced by a space"),
        "{log}"
    );
    let st = rig.status().await;
    assert_eq!(st["warnings"][0]["source"], "hr.csv:3");
    assert_eq!(st["warnings"][0]["field"], "org_unit1");
    assert_eq!(st["warnings"].as_array().unwrap().len(), 1);
    assert_eq!(st["rejected"].as_array().unwrap().len(), 0);
    let out = rig.run(&["status"]).await;
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("warnings (1):\n  hr.csv:3: employee E00001: field org_unit1"),
        "{s}"
    );

    // Other control characters are still rejected, naming line and field.
    let mut r = rows(0..3);
    r[2] = r[2].replace(",Finance <EMEA>,", ",Fin\u{b}ance,");
    rig.write_hr(&r);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let st = rig.status().await;
    assert_eq!(st["rejected"][0]["source"], "hr.csv:4");
    assert_eq!(st["rejected"][0]["field"], "org_unit1");
    assert_eq!(st["warnings"].as_array().unwrap().len(), 0);
}

/// Runs the binary and samples its peak resident memory (VmHWM, KiB) until it exits.
async fn run_measured(rig: &Rig, args: &[&str]) -> (std::process::Output, u64) {
    let child = spawn_bin(&rig.config, args, &[]);
    let pid = child.id().unwrap();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            while let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                if let Some(kb) = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
                {
                    peak.fetch_max(kb, std::sync::atomic::Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the binary took over a minute")
        .unwrap();
    sampler.abort();
    (out, peak.load(std::sync::atomic::Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_records_are_refused_in_bounded_memory_and_long_fields_reject_their_row() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..3));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    // 300 MB without a line break after the header, and a 256 MB quoted field.
    for (name, body) in [
        ("no line break", None),
        (
            "a 256 MB field",
            Some(format!(
                "{}\n{},\"",
                rows(0..3).join("\n"),
                &row(3, "")[..8]
            )),
        ),
    ] {
        {
            use std::io::Write;
            let mut f = std::io::BufWriter::new(std::fs::File::create(&rig.hr).unwrap());
            writeln!(f, "{HEADER}").unwrap();
            let size = match &body {
                None => 300 << 20,
                Some(b) => {
                    f.write_all(b.as_bytes()).unwrap();
                    256 << 20
                }
            };
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..(size >> 20) {
                f.write_all(&chunk).unwrap();
            }
            if body.is_some() {
                f.write_all(b"\",Lee\n").unwrap();
            }
        }
        let t = Instant::now();
        let (out, peak_kb) = run_measured(&rig, &["sync"]).await;
        assert_eq!(code(&out), 1, "{name}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("a record is longer than source.max_record_bytes = 1048576 bytes"),
            "{name}: {err}"
        );
        assert!(
            peak_kb > 0 && peak_kb < 64 * 1024,
            "{name}: peak RSS {peak_kb} KiB"
        );
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{name}: {:?}",
            t.elapsed()
        );
        assert_eq!(active(&rig), 3, "{name}: someone was deactivated");
    }
    std::fs::remove_file(&rig.hr).unwrap();

    // A value past source.max_field_bytes rejects its row; the others go through.
    let text_cfg = std::fs::read_to_string(&rig.config).unwrap();
    std::fs::write(
        &rig.config,
        text_cfg.replace(
            "kind = \"csv\"\n",
            "kind = \"csv\"\nmax_field_bytes = 1000\n",
        ),
    )
    .unwrap();
    let mut r = rows(0..4);
    r[3] = r[3].replace(",Ops,", &format!(",{},", "O".repeat(1001)));
    rig.write_hr(&r);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let st = rig.status().await;
    assert_eq!(st["rejected"][0]["source"], "hr.csv:5");
    assert_eq!(st["rejected"][0]["field"], "org_unit1");
    assert_eq!(
        st["rejected"][0]["message"],
        "1001 bytes, longer than source.max_field_bytes = 1000"
    );
    assert_eq!(active(&rig), 3);
    assert!(!rig.sim.users().iter().any(|u| u.emp_id() == "E00003"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drop_folder_never_follows_links_or_leaves_the_folder() {
    let rig = Rig::start().await;
    let inbox = use_folder(&rig);
    let outside = rig.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let secret = outside.join("other.csv");
    std::fs::write(&secret, hr_csv(&rows(0..5))).unwrap();

    // A link dropped into the folder is moved aside, never read.
    std::os::unix::fs::symlink(&secret, inbox.join("link.csv")).unwrap();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(rig.sim.users().is_empty(), "a linked file was read");
    assert!(rejected_reason(&inbox, "link.csv").contains("a symbolic link: never followed"));
    assert!(
        std::fs::symlink_metadata(inbox.join("rejected"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        hr_csv(&rows(0..5))
    );
    let st = rig.status().await;
    assert_eq!(st["alerts"][0]["file"], "link.csv");

    // A real file is processed; its record names it. A file put in archive/ by hand is not
    // a source: `plan` still previews the recorded one.
    drop_file(
        &inbox,
        "hr-1.csv",
        hr_csv(&rows(0..3)).as_bytes(),
        SystemTime::now(),
    );
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(active(&rig), 3);
    let st = rig.status().await;
    assert_eq!(st["last_file"]["name"], "hr-1.csv");
    std::fs::write(
        inbox
            .join("archive")
            .join("zz-by-hand.csv.29991231T000000.000Z"),
        hr_csv(&rows(0..1)),
    )
    .unwrap();
    let out = rig.run(&["plan"]).await;
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("previewing the current file") && s.contains("hr-1.csv."),
        "{s}"
    );
    assert!(s.contains("0 deactivate"), "{s}");

    // archive/ as a link to a directory outside: refused with an alert; nothing moves and
    // nothing is written outside.
    let archive = inbox.join("archive");
    std::fs::rename(&archive, rig.dir.path().join("old-archive")).unwrap();
    std::os::unix::fs::symlink(&outside, &archive).unwrap();
    drop_file(
        &inbox,
        "hr-2.csv",
        hr_csv(&rows(0..4)).as_bytes(),
        SystemTime::now(),
    );
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("archive/ in the drop folder is a symbolic link"),
        "{}",
        text(&out)
    );
    assert!(inbox.join("hr-2.csv").exists());
    assert_eq!(entries(&outside), ["other.csv"]);
    assert_eq!(active(&rig), 3);
    let st = rig.status().await;
    assert!(
        st["alerts"].as_array().unwrap().iter().any(|a| a["message"]
            .as_str()
            .unwrap()
            .contains("symbolic link, not a directory")),
        "{st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_file_is_set_aside_until_it_is_dropped_again_with_a_fresh_time() {
    // Yesterday's file renames every user: allowed here, so that only its age can stop it.
    let rig = Rig::with(
        concur_sync::simulator::SimConfig::default(),
        "[sync]\nmax_identity_changes = \"100%\"",
    )
    .await;
    let inbox = use_folder(&rig);
    let now = SystemTime::now();
    drop_file(&inbox, "hr-new.csv", hr_csv(&rows(0..4)).as_bytes(), now);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(active(&rig), 4);
    let old_rows: Vec<String> = (0..4).map(|i| row(i, "-old")).collect();
    let last_name = |rig: &Rig| {
        rig.sim
            .users()
            .into_iter()
            .find(|u| u.emp_id() == "E00001")
            .and_then(|u| u.get("LastName").map(str::to_owned))
            .unwrap()
    };

    // Yesterday's export arrives late: it would put yesterday's names back.
    let old = drop_file(
        &inbox,
        "hr-old.csv",
        hr_csv(&old_rows).as_bytes(),
        now - Duration::from_secs(86_400),
    );
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert_eq!(last_name(&rig), "García", "an older file was applied");
    assert!(!old.exists());
    let reason = rejected_reason(&inbox, "hr-old.csv");
    assert!(
        reason.contains("older than the last processed file hr-new.csv")
            && reason.contains("touch it"),
        "{reason}"
    );
    let st = rig.status().await;
    assert!(
        st["alerts"][0]["message"]
            .as_str()
            .unwrap()
            .contains("hr-new.csv"),
        "{st}"
    );
    let out = rig.run(&["status"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("drop-folder alerts (1):"));

    // Re-dropped with a fresh time, it is applied.
    drop_file(
        &inbox,
        "hr-old.csv",
        hr_csv(&old_rows).as_bytes(),
        SystemTime::now(),
    );
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(last_name(&rig), "García-old");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_files_are_moved_aside_and_the_ones_behind_go_on() {
    let rig = Rig::start().await;
    let inbox = use_folder(&rig);
    let now = SystemTime::now();
    // A name that would forge a log line and colour the terminal, with binary content; a
    // name too long to take a timestamp suffix; then a good file.
    let evil = "evil\n2026-11-28T10:00:00Z  INFO forged\u{1b}[31m.csv";
    drop_file(
        &inbox,
        evil,
        b"employee_id,login_id\n\0\0\0",
        now - Duration::from_secs(20),
    );
    let long = format!("{}.csv", "l".repeat(245));
    drop_file(
        &inbox,
        &long,
        hr_csv(&rows(0..2)).as_bytes(),
        now - Duration::from_secs(10),
    );
    drop_file(&inbox, "hr-3.csv", hr_csv(&rows(0..3)).as_bytes(), now);

    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains('\u{1b}') && !log.contains("\n2026-11-28T10:00:00Z  INFO forged"),
        "{log}"
    );
    assert!(
        log.contains("evil\\n2026-11-28T10:00:00Z  INFO forged\\u{1b}[31m.csv"),
        "{log}"
    );
    let out = rig.run(&["status"]).await;
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(!s.contains('\u{1b}') && s.contains("evil\\n2026"), "{s}");
    // Rejected under a safe name.
    assert!(
        entries(&inbox.join("rejected"))
            .iter()
            .all(|n| !n.contains('\n') && !n.contains('\u{1b}'))
    );

    for _ in 0..2 {
        let out = rig.run(&["sync"]).await;
        assert_eq!(code(&out), 0, "{}", text(&out));
    }
    assert_eq!(active(&rig), 3);
    let archived = entries(&inbox.join("archive"));
    assert_eq!(archived.len(), 2, "{archived:?}");
    assert!(archived.iter().all(|n| n.len() < 130), "{archived:?}");
    assert_eq!(entries(&inbox), ["archive", "rejected"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_check_preview_the_next_file_without_moving_it() {
    let rig = Rig::start().await;
    let inbox = use_folder(&rig);
    let out = rig.run(&["plan"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no file waiting in the drop folder"),
        "{}",
        text(&out)
    );
    let next = drop_file(
        &inbox,
        "hr-1.csv",
        hr_csv(&rows(0..2)).as_bytes(),
        SystemTime::now(),
    );
    let out = rig.run(&["plan"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("previewing") && s.contains("hr-1.csv (the next file"),
        "{s}"
    );
    assert!(s.contains("plan: 2 create"), "{s}");
    assert!(next.exists());
    let out = rig.run(&["plan", "--json"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let _: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan --json is JSON");
    let out = rig.run(&["check"]).await;
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("checking the next file") && s.contains("header has employee_id"),
        "{s}"
    );
    assert!(next.exists());
    assert!(rig.sim.users().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_sets_unusable_files_aside_at_once_and_raises_an_alert() {
    let rig = Rig::start().await;
    let inbox = use_folder(&rig);
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let cfg = std::fs::read_to_string(&rig.config).unwrap();
    std::fs::write(
        &rig.config,
        format!(
            "{cfg}[sync]\nschedule = \"0 0 0 1 1 *\"\n[admin]\nlisten = \"{admin}\"\n[service]\npoll_seconds = 0.3\n"
        ),
    )
    .unwrap();
    let now = SystemTime::now();
    drop_file(
        &inbox,
        "bad.csv",
        b"employee_id,login_id\n\0\0",
        now - Duration::from_secs(10),
    );
    drop_file(&inbox, "good.csv", hr_csv(&rows(0..3)).as_bytes(), now);
    let _daemon = super::harness::spawn_bin(&rig.config, &["run"], &[]);
    let get = |path: &'static str| {
        let url = format!("http://{admin}{path}");
        async move {
            match reqwest::get(&url).await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        }
    };
    // The good file behind the unusable one is applied well before the 60 s retry pause.
    let t = Instant::now();
    while active(&rig) < 3 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the file behind was not taken"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rejected_reason(&inbox, "bad.csv").contains("binary content"));
    while !entries(&inbox)
        .iter()
        .all(|n| n == "archive" || n == "rejected")
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{:?}",
            entries(&inbox)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A link dropped while the service runs is set aside without a cycle, and the service
    // says so until a later cycle succeeds.
    std::os::unix::fs::symlink(inbox.join("archive"), inbox.join("link.csv")).unwrap();
    let (code, body) = loop {
        let (code, body) = get("/readyz").await;
        if code == 503 {
            break (code, body);
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{code} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(code, 503);
    assert!(
        body.contains("drop folder: link.csv: moved to rejected/: a symbolic link"),
        "{body}"
    );
    let (_, metrics) = get("/metrics").await;
    assert!(
        metrics.contains("concur_sync_drop_folder_alerts 2"),
        "{metrics}"
    );
    let (_, status) = get("/status").await;
    let st: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(st["alerts"].as_array().unwrap().len(), 2, "{st}");
    assert_eq!(st["last_file"]["name"], "good.csv");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldif_values_collapse_line_breaks_and_huge_lines_fail_the_file() {
    use base64::Engine;
    let rig = Rig::start().await;
    let ldif = rig.dir.path().join("people.ldif");
    rig.write_source_config(&format!(
        "[source]\nkind = \"ldif\"\npath = {:?}\n",
        ldif.display().to_string()
    ));
    let entry = |i: usize, given: &str| {
        format!(
            "dn: uid=u{i},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: u{i}\n\
             employeeNumber: E{i}\nmail: u{i}@example.com\ngivenName:: {}\nsn: Person\ncn: U {i}\n\n",
            base64::engine::general_purpose::STANDARD.encode(given)
        )
    };
    std::fs::write(
        &ldif,
        format!("{}{}", entry(1, "Multi\r\nLine"), entry(2, "Plain")),
    )
    .unwrap();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let first = rig
        .sim
        .users()
        .into_iter()
        .find(|u| u.emp_id() == "E1")
        .and_then(|u| u.get("FirstName").map(str::to_owned));
    assert_eq!(first.as_deref(), Some("Multi Line"));
    let st = rig.status().await;
    assert_eq!(st["warnings"][0]["field"], "first_name", "{st}");
    assert!(
        st["warnings"][0]["source"]
            .as_str()
            .unwrap()
            .contains("people.ldif"),
        "{st}"
    );

    // A value of 300 KB on one line: the file fails before it is read whole; nobody changes.
    std::fs::write(
        &ldif,
        format!(
            "{}{}\ndescription: {}\n\n",
            entry(1, "Multi Line"),
            entry(2, "Plain").trim_end(),
            "d".repeat(300 << 10)
        ),
    )
    .unwrap();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("a line is longer than source.max_field_bytes = 65536 bytes"),
        "{}",
        text(&out)
    );
    assert_eq!(active(&rig), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_upgrade_the_archived_file_the_last_cycle_read_is_current_not_the_newest_name() {
    let rig = Rig::start().await;
    let inbox = use_folder(&rig);
    drop_file(
        &inbox,
        "hr-1.csv",
        hr_csv(&rows(0..3)).as_bytes(),
        SystemTime::now(),
    );
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    // A database from before files were recorded, and a file put in archive/ by hand whose
    // name sorts last.
    rusqlite::Connection::open(rig.state_path())
        .unwrap()
        .execute("DELETE FROM source_files", [])
        .unwrap();
    std::fs::write(
        inbox.join("archive").join("hr-9.csv.29991231T000000.000Z"),
        hr_csv(&rows(0..1)),
    )
    .unwrap();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["counts"]["deactivate"], 0, "{st}");
    assert_eq!(active(&rig), 3);
    assert!(
        st["last_file"]["name"]
            .as_str()
            .unwrap()
            .starts_with("hr-1.csv."),
        "{st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_concur_are_escaped_in_text_output() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..3));
    rig.sim.reject(
        &["E00001"],
        "Invalid Input\n2026-11-28T10:00:00Z  INFO forged line \u{202e}desrever",
    );
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains('\u{202e}') && !log.contains("\n2026-11-28T10:00:00Z"),
        "{log}"
    );
    assert!(log.contains("forged line \\u{202e}desrever"), "{log}");
    let out = rig.run(&["status"]).await;
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("E00001 create: Invalid Input\\n2026-11-28T10:00:00Z  INFO forged line \\u{202e}desrever"),
        "{s}"
    );
    assert!(!s.contains('\u{202e}'), "{s}");
    // JSON keeps the message as it came.
    let st = rig.status().await;
    assert_eq!(
        st["failed"][0]["message"],
        "Invalid Input\n2026-11-28T10:00:00Z  INFO forged line \u{202e}desrever"
    );
}
