//! The LDAP source against a real OpenLDAP slapd on 127.0.0.1: more users than the server's
//! size limit, read with an ordinary (non-root) bind, synced into the simulator; directory
//! changes arriving as updates and deactivations; a rename changing nothing; a server that goes
//! away mid-read changing nothing; slapcat output read as LDIF giving the same users.
//!
//! Needs `slapd` and `ldap-utils` (`.ci/install-ldap.sh`); skips when they are missing unless
//! `CI` or `CONCUR_SYNC_REQUIRE_PEERS` is set.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;

use super::harness::{Rig, code, sim_users, text, user_v1_writes};

const BASE: &str = "dc=example,dc=com";
const PEOPLE: &str = "ou=people,dc=example,dc=com";
const READER: &str = "uid=reader,ou=system,dc=example,dc=com";
const READER_PW: &str = "reader-pw-5e1d";
const ADMIN: &str = "cn=admin,dc=example,dc=com";
const ADMIN_PW: &str = "admin-pw-c04a";
/// More than the server's size limit of 500 for ordinary binds.
const USERS: usize = 600;

const FIRST: &[&str] = &[
    "Zoë", "José", "Bjørn", "Chloé", "由紀", "Łukasz", "Ana", "Олег",
];
const LAST: &[&str] = &[
    "O'Brien",
    "García",
    "Sørensen",
    "田中",
    "Wójcik",
    "Ångström",
    "Lee",
];

fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// True when slapd and the client tools are installed; otherwise skips (or fails in CI).
fn peers_available() -> bool {
    let missing: Vec<&str> = ["slapd", "slapadd", "slapcat", "ldapmodify", "ldapdelete"]
        .into_iter()
        .filter(|t| tool(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !(std::env::var_os("CI").is_some()
            || std::env::var_os("CONCUR_SYNC_REQUIRE_PEERS").is_some()),
        "LDAP peer tools missing: {missing:?}; run .ci/install-ldap.sh"
    );
    eprintln!("skipping: LDAP peer tools missing ({missing:?}); run .ci/install-ldap.sh");
    false
}

/// A throwaway slapd (slapd.conf style, mdb, no fsync) stopped by its pidfile on drop, panics
/// included.
struct Slapd {
    dir: tempfile::TempDir,
    port: u16,
}

impl Slapd {
    fn start(data: &str) -> Slapd {
        Slapd::start_with(data, "size.soft=500 size.hard=500 size.prtotal=unlimited")
    }

    /// `limits` for every bind DN but the rootdn, e.g. `size.prtotal=550`.
    fn start_with(data: &str, limits: &str) -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("db")).unwrap();
        std::fs::write(
            d.join("slapd.conf"),
            format!(
                "include /etc/ldap/schema/core.schema\n\
                 include /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/nis.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\n\
                 modulepath /usr/lib/ldap\nmoduleload back_mdb\n\
                 pidfile {d}/slapd.pid\nargsfile {d}/slapd.args\n\
                 database mdb\nmaxsize 1073741824\nsuffix \"{BASE}\"\n\
                 rootdn \"{ADMIN}\"\nrootpw {ADMIN_PW}\ndirectory {d}/db\n\
                 dbnosync\nindex objectClass eq\nindex uid,mail eq\n\
                 limits * {limits}\n\
                 access to attrs=userPassword by self write by anonymous auth by * none\n\
                 access to * by * read\n",
                d = d.display()
            ),
        )
        .unwrap();
        std::fs::write(d.join("data.ldif"), data).unwrap();
        let conf = d.join("slapd.conf");
        run(Command::new(tool("slapadd").unwrap())
            .arg("-q")
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(d.join("data.ldif")));
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let status = Command::new(tool("slapd").unwrap())
                .arg("-f")
                .arg(&conf)
                .arg("-h")
                .arg(format!("ldap://127.0.0.1:{port}/"))
                .status()
                .unwrap();
            if !status.success() {
                continue;
            }
            let slapd = Slapd { dir, port };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return slapd;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("slapd did not answer on port {port}");
        }
        panic!("slapd did not start");
    }

    fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    fn modify(&self, ldif: &str) {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        run(Command::new(tool("ldapmodify").unwrap())
            .args(["-x", "-H", &self.url(), "-D", ADMIN, "-w", ADMIN_PW, "-f"])
            .arg(&path));
    }

    fn delete(&self, dn: &str) {
        run(Command::new(tool("ldapdelete").unwrap()).args([
            "-x",
            "-H",
            &self.url(),
            "-D",
            ADMIN,
            "-w",
            ADMIN_PW,
            dn,
        ]));
    }

    /// `slapcat` of the running directory (safe with mdb).
    fn slapcat(&self) -> PathBuf {
        let out = self.dir.path().join("export.ldif");
        run(Command::new(tool("slapcat").unwrap())
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .args(["-b", BASE, "-l"])
            .arg(&out));
        out
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("slapd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let Some(pid) = self.pid() else { return };
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn dn(i: usize) -> String {
    format!("uid=u{i},{PEOPLE}")
}

/// The directory: base, `ou=people` with `n` inetOrgPersons (employee `i` reports to
/// `(i - 1) / 10`), and the ordinary account the daemon binds as.
fn directory(n: usize) -> String {
    let mut s = format!(
        "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=system,{BASE}\nobjectClass: organizationalUnit\nou: system\n\n\
         dn: {READER}\nobjectClass: account\nobjectClass: simpleSecurityObject\nuid: reader\n\
         userPassword: {READER_PW}\n\n"
    );
    for i in 0..n {
        let (first, last) = (FIRST[i % FIRST.len()], LAST[i % LAST.len()]);
        s.push_str(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: u{i}\ncn:: {}\nsn:: {}\ngivenName:: {}\n\
             mail: user{i}@example.com\nemployeeNumber: E{i:05}\ndepartmentNumber: D{}\n\
             preferredLanguage: en-US\nuserPassword: pw{i}\n",
            dn(i),
            b64(&format!("{first} {last}")),
            b64(last),
            b64(first),
            i % 7,
        ));
        if i > 0 {
            s.push_str(&format!("manager: {}\n", dn((i - 1) / 10)));
        }
        s.push('\n');
    }
    s
}

fn ldap_source(url: &str, extra: &str, pw_file: &Path) -> String {
    format!(
        "[source]\nkind = \"ldap\"\n[source.ldap]\nurl = \"{url}\"\nbind_dn = \"{READER}\"\n\
         bind_password_file = {pw:?}\nbase_dn = \"{BASE}\"\n\
         inactive_when = {{ attribute = \"employeeType\", values = [\"inactive\"] }}\n{extra}\n",
        pw = pw_file.display().to_string(),
    )
}

fn setup(url: &str, rig: &Rig, extra: &str) -> PathBuf {
    let pw = rig.dir.path().join("bind-password");
    std::fs::write(&pw, format!("{READER_PW}\n")).unwrap();
    rig.write_source_config(&ldap_source(url, extra, &pw));
    pw
}

fn user_writes(rig: &Rig) -> usize {
    user_v1_writes(rig).len()
}

fn no_secret(out: &std::process::Output) {
    let all = text(out);
    assert!(!all.contains(READER_PW), "bind password leaked: {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_directory_syncs_and_its_changes_arrive_as_updates_deactivations_and_renames_as_nothing()
 {
    if !peers_available() {
        return;
    }
    let slapd = Slapd::start(&directory(USERS));
    let rig = Rig::start().await;
    setup(&slapd.url(), &rig, "");

    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    no_secret(&out);
    let users = sim_users(&rig);
    assert_eq!(users.len(), USERS, "every user past the size limit of 500");
    let u13 = &users["E00013"];
    assert_eq!(u13["LoginId"], "user13@example.com");
    assert_eq!(u13["EmailAddress"], "user13@example.com");
    assert_eq!(u13["FirstName"], FIRST[13 % FIRST.len()]);
    assert_eq!(u13["LastName"], LAST[13 % LAST.len()]);
    assert_eq!(u13["ExpenseApproverEmployeeID"], "E00001");
    assert_eq!(u13["OrgUnit1"], "D6");
    assert_eq!(u13["LocaleName"], "en_US");
    assert_eq!(u13["Active"], "Y");
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["counts"]["create"], USERS);

    // A name and a manager change: two updates, nothing else.
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: sn\nsn:: {}\n\n\
         dn: {}\nchangetype: modify\nreplace: manager\nmanager: {}\n",
        dn(5),
        b64("Müller-Lüdenscheidt"),
        dn(77),
        dn(3)
    ));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["counts"]["update"], 2, "{st}");
    assert_eq!(st["last_cycle"]["counts"]["create"], 0, "{st}");
    assert_eq!(st["last_cycle"]["counts"]["deactivate"], 0, "{st}");
    let users = sim_users(&rig);
    assert_eq!(users["E00005"]["LastName"], "Müller-Lüdenscheidt");
    assert_eq!(users["E00077"]["ExpenseApproverEmployeeID"], "E00003");

    // A deleted entry and a disabled account: two deactivations.
    slapd.delete(&dn(599));
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nadd: employeeType\nemployeeType: inactive\n",
        dn(598)
    ));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["counts"]["deactivate"], 2, "{st}");
    assert_eq!(st["last_cycle"]["counts"]["update"], 0, "{st}");
    let users = sim_users(&rig);
    assert_eq!(users["E00599"]["Active"], "N");
    assert_eq!(users["E00598"]["Active"], "N");
    assert_eq!(users["E00597"]["Active"], "Y");

    // A DN rename (modrdn) is the same person: nothing is written.
    let before = user_writes(&rig);
    slapd.modify(&format!(
        "dn: {}\nchangetype: modrdn\nnewrdn: uid=u597-renamed\ndeleteoldrdn: 1\n",
        dn(597)
    ));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(user_writes(&rig), before, "a rename wrote to Concur");
    let st = rig.status().await;
    assert_eq!(st["users"]["active"], USERS - 2, "{st}");
}

/// Forwards to `target` and drops both sides once `limit` bytes came back from the server;
/// counts those bytes.
fn cutting_proxy(target: u16, limit: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { break };
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)) else {
                break;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
            });
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    let n = match server.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let before = counter.fetch_add(n, Ordering::SeqCst);
                    let take = n.min(limit.saturating_sub(before));
                    if client.write_all(&buf[..take]).is_err() || take < n {
                        break;
                    }
                }
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            });
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_going_away_mid_read_fails_the_cycle_and_deactivates_nobody() {
    if !peers_available() {
        return;
    }
    let slapd = Slapd::start(&directory(USERS));
    let rig = Rig::start().await;
    setup(&slapd.url(), &rig, "");
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    // Measure one whole read through the proxy, then cut the next one in its second page.
    let (port, seen) = cutting_proxy(slapd.port, usize::MAX);
    setup(&format!("ldap://127.0.0.1:{port}"), &rig, "");
    let out = rig.run(&["plan"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let whole = seen.load(Ordering::SeqCst);
    let (port, _) = cutting_proxy(slapd.port, whole * 9 / 10);
    let pw = setup(&format!("ldap://127.0.0.1:{port}"), &rig, "");
    let writes = user_writes(&rig);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    no_secret(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broke off after"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(user_writes(&rig), writes);
    assert!(sim_users(&rig).values().all(|u| u["Active"] == "Y"));
    let st = rig.status().await;
    assert_eq!(st["users"]["active"], USERS);
    assert_eq!(st["last_cycle"]["outcome"], "failed", "{st}");

    // A wrong bind password: exit 1, named, nothing written.
    std::fs::write(&pw, "wrong").unwrap();
    rig.write_source_config(&ldap_source(&slapd.url(), "", &pw));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bind as") && stderr.contains(READER),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong"), "{stderr}");

    // Nothing listening: exit 1 too.
    rig.write_source_config(&ldap_source("ldap://127.0.0.1:9", "", &pw));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert_eq!(user_writes(&rig), writes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_size_limited_search_fails_the_cycle() {
    if !peers_available() {
        return;
    }
    // Paged searches may return at most 550 entries in all: 600 users exceed it.
    let slapd = Slapd::start_with(
        &directory(USERS),
        "size.soft=500 size.hard=500 size.prtotal=550",
    );
    let rig = Rig::start().await;
    setup(&slapd.url(), &rig, "");
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("size limit"), "{stderr}");
    assert!(rig.sim.users().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slapcat_output_read_as_ldif_gives_the_same_users_as_the_live_directory() {
    if !peers_available() {
        return;
    }
    let mut data = directory(USERS);
    // One entry without the key attribute: rejected by both, with its DN.
    data.push_str(&format!(
        "dn: uid=nokey,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: nokey\ncn: No Key\nsn: Key\n\
         mail: nokey@example.com\n\n"
    ));
    let slapd = Slapd::start(&data);
    let export = slapd.slapcat();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, READER_PW).unwrap();
    let concur = "[concur]\napi = \"v1\"\nbase_url = \"http://127.0.0.1:9\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
                  company_id = \"c\"\nrequest_token = \"t\"\n";
    let live_cfg = concur_sync::config::Config::from_toml(&format!(
        "{}{concur}",
        ldap_source(&slapd.url(), "", &pw)
    ))
    .unwrap();
    let ldif_cfg = concur_sync::config::Config::from_toml(&format!(
        "[source]\nkind = \"ldif\"\npath = {:?}\n{concur}",
        export.display().to_string()
    ))
    .unwrap();
    let prior = concur_sync::source::Prior::default();
    let live = concur_sync::source::open(&live_cfg.source, &prior)
        .await
        .unwrap();
    let file = concur_sync::source::open(&ldif_cfg.source, &prior)
        .await
        .unwrap();
    assert!(live.complete && file.complete);

    type Users = BTreeMap<String, Vec<(String, String)>>;
    let summarize = |read: concur_sync::source::Opened| -> (Users, Vec<String>) {
        let mut users = Users::new();
        let mut rejected = Vec::new();
        for item in read.records {
            match item.unwrap() {
                concur_sync::source::SourceItem::Record(r) => {
                    let mut v: Vec<(String, String)> = r
                        .values
                        .iter()
                        .map(|(f, v)| (f.name().to_owned(), v.clone()))
                        .collect();
                    v.sort();
                    let id = v
                        .iter()
                        .find(|(f, _)| f == "employee_id")
                        .unwrap()
                        .1
                        .clone();
                    users.insert(id, v);
                }
                concur_sync::source::SourceItem::Rejected(r) => {
                    rejected.push(format!("{} {}", r.field, r.message));
                }
            }
        }
        (users, rejected)
    };
    let (live_users, live_rejected) = summarize(live);
    let (file_users, file_rejected) = summarize(file);
    assert_eq!(live_users.len(), USERS);
    assert_eq!(live_users, file_users);
    assert_eq!(live_rejected, file_rejected);
    assert_eq!(live_rejected.len(), 1, "{live_rejected:?}");
}
