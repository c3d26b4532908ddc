//! Reading Concur back under `concur.api = "v4"`, end to end through the real binary and the
//! simulator: adoption through Identity v4.1 + Spend User v4.1 (UUIDs recorded, nobody created
//! twice, strangers left alone), a User v1 state database switched to v4, `check` (discovery,
//! company UUID, scopes), and passwords refused.

use std::collections::BTreeMap;

use super::harness::{HEADER, Rig, code, q, row, rows, text};
use concur_sync::simulator::{DEFAULT_COMPANY_UUID, SimConfig, SimUser, V4Settings};
use serde_json::{Value, json};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SPEND: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:User";

fn v4_config() -> String {
    format!("api = \"v4\"\ncompany_uuid = \"{DEFAULT_COMPANY_UUID}\"")
}

async fn v4_rig() -> Rig {
    Rig::with(SimConfig::default(), &v4_config()).await
}

/// The fields of harness row `i`: (employee id, login, first name, last name).
fn row_fields(i: usize) -> (String, String, String, String) {
    let line = row(i, "");
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_bytes());
    let r = rdr.records().next().unwrap().unwrap();
    (r[0].into(), r[1].into(), r[3].into(), r[5].into())
}

/// Harness rows without their manager column's value: under v4 a manager becomes the spend
/// report approver, which Concur refuses unless the manager holds `EXP_APPROVER`; these tests
/// are about reading, not approvers.
fn rows_without_managers(range: std::ops::Range<usize>) -> Vec<String> {
    rows(range)
        .into_iter()
        .map(|l| format!("{},", &l[..l.rfind(',').unwrap()]))
        .collect()
}

/// Harness row `i` as another tool loaded it through User v1.
fn v1_user(i: usize) -> SimUser {
    let (id, login, first, last) = row_fields(i);
    SimUser::new()
        .with("EmpId", &id)
        .with("LoginId", &login)
        .with("EmailAddress", &login)
        .with("FirstName", &first)
        .with("LastName", &last)
        .with("Active", "Y")
        .with("CtryCode", "US")
        .with("LedgerKey", "DEFAULT")
}

/// Harness row `i` as another tool provisioned it through v4.
fn v4_user(i: usize) -> Value {
    let (id, login, first, last) = row_fields(i);
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT, SPEND],
        "userName": login,
        "active": true,
        "name": {"givenName": first, "familyName": last},
        "emails": [{"value": login, "type": "work"}],
        ENT: {"employeeNumber": id, "companyId": DEFAULT_COMPANY_UUID},
        SPEND: {"country": "US", "locale": "en-US", "reimbursementCurrency": "USD", "ledgerCode": "DEFAULT"},
    })
}

/// A user the source does not know.
fn stranger(k: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
        "userName": format!("contractor{k}@example.com"),
        "active": true,
        "name": {"givenName": "Con", "familyName": "Tractor"},
        "emails": [{"value": format!("contractor{k}@example.com"), "type": "work"}],
        ENT: {"employeeNumber": format!("X{k:03}"), "companyId": DEFAULT_COMPANY_UUID},
    })
}

/// The Concur UUID the state database holds per employee id.
fn stored_uuids(rig: &Rig) -> BTreeMap<String, Option<String>> {
    let db = rusqlite::Connection::open(rig.state_path()).unwrap();
    let mut stmt = db
        .prepare("SELECT employee_id, concur_uuid FROM users")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn count_requests(rig: &Rig, method: &str, path: &str) -> usize {
    rig.sim
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.trim_end_matches('/').eq_ignore_ascii_case(path))
        .count()
}

/// Requests that write users, through any API.
fn user_writes(rig: &Rig) -> Vec<String> {
    rig.sim
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .filter(|r| !r.contains("/oauth2/"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_under_v4_creates_nobody_twice_records_uuids_and_leaves_strangers_alone() {
    let rig = v4_rig().await;
    // Concur holds 250 of the source's users (150 loaded through User v1, 100 through v4) and
    // 5 users the source does not know.
    rig.sim.seed_users((0..150).map(v1_user).collect());
    let mut v4: Vec<Value> = (150..250).map(v4_user).collect();
    v4.extend((1..=5).map(stranger));
    rig.sim.seed_v4_users(v4).unwrap();
    let strangers_before: Vec<Value> = (1..=5)
        .map(|k| rig.sim.v4_user(&format!("X{k:03}")).unwrap())
        .collect();
    rig.write_hr(&rows_without_managers(0..250));

    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    // Nobody created: 255 users, each employee number and login once.
    let users = rig.sim.v4_users();
    assert_eq!(users.len(), 255);
    let mut numbers: Vec<&str> = users
        .iter()
        .map(|u| u[ENT]["employeeNumber"].as_str().unwrap())
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 255);
    let st = rig.status().await;
    assert_eq!(st["users"]["adopted"], 250, "{st:#}");
    assert_eq!(st["users"]["unmanaged"], 5);
    assert_eq!(st["last_cycle"]["counts"]["create"], 0, "{st:#}");
    // Read through Identity v4.1 (one page of up to 1,000) and Spend v4.1 (pages of 100),
    // never through Bulk User v3.1.
    assert_eq!(
        count_requests(&rig, "GET", "/profile/identity/v4.1/Users"),
        1
    );
    assert_eq!(count_requests(&rig, "GET", "/profile/spend/v4.1/Users"), 3);
    assert_eq!(count_requests(&rig, "GET", "/users"), 0);
    // Every adopted user's UUID is the one Concur has.
    let stored = stored_uuids(&rig);
    for i in 0..250 {
        let id = format!("E{i:05}");
        let uuid = rig.sim.v4_user(&id).unwrap()["id"].clone();
        assert_eq!(
            stored[&id].as_deref(),
            uuid.as_str(),
            "{id}: the stored UUID is not Concur's"
        );
    }
    // Strangers: untouched, listed as unmanaged.
    for (k, before) in (1..=5).zip(&strangers_before) {
        assert_eq!(&rig.sim.v4_user(&format!("X{k:03}")).unwrap(), before);
    }
    let listed: Vec<&str> = st["unmanaged_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["employee_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["X001", "X002", "X003", "X004", "X005"]);

    // Adoption ran once: the next cycle does not list every user again.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        count_requests(&rig, "GET", "/profile/identity/v4.1/Users"),
        1
    );
    assert_eq!(rig.sim.v4_users().len(), 255);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_state_database_switched_to_v4_adopts_by_employee_number_and_creates_nobody() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..30));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(rig.status().await["users"]["created"], 30);
    assert!(stored_uuids(&rig).values().all(Option::is_none));

    // The company moves to v4: same state database, same file.
    let mut cfg = std::fs::read_to_string(&rig.config)
        .unwrap()
        .replacen("api = \"v1\"\n", "", 1);
    cfg.push_str(&v4_config());
    cfg.push('\n');
    std::fs::write(&rig.config, cfg).unwrap();
    let writes_before = user_writes(&rig).len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    assert_eq!(rig.sim.v4_users().len(), 30, "a user was created twice");
    assert_eq!(
        user_writes(&rig).len(),
        writes_before,
        "an unchanged file wrote: {:?}",
        &user_writes(&rig)[writes_before..]
    );
    let st = rig.status().await;
    assert_eq!(st["users"]["created"], 30, "{st:#}");
    assert_eq!(st["users"]["unmanaged"], 0);
    let stored = stored_uuids(&rig);
    assert_eq!(stored.len(), 30);
    for (id, uuid) in &stored {
        let concur = rig.sim.v4_user(id).unwrap()["id"].clone();
        assert_eq!(uuid.as_deref(), concur.as_str(), "{id}");
    }
    assert_eq!(
        count_requests(&rig, "GET", "/profile/identity/v4.1/Users"),
        1
    );
    // User v1's FormFields are not asked for under v4.
    let form_fields_before = count_requests(&rig, "GET", "/api/user/v1.0/FormFields");
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        count_requests(&rig, "GET", "/api/user/v1.0/FormFields"),
        form_fields_before
    );
    assert_eq!(
        count_requests(&rig, "GET", "/profile/identity/v4.1/Users"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_under_v4_verifies_discovery_the_company_uuid_and_every_scope() {
    let rig = v4_rig().await;
    rig.sim.seed_v4_users(vec![v4_user(1)]).unwrap();
    rig.write_hr(&rows(0..3));
    let out = rig.run(&["check"]).await;
    let report = text(&out);
    assert_eq!(code(&out), 0, "{report}");
    for expected in [
        "ServiceProviderConfig: Bulk supported (at most 100 operations",
        "Schemas: ",
        &format!("concur.company_uuid: {DEFAULT_COMPANY_UUID} is the company Concur reports"),
        "scope user.provision.read: granted",
        "scope user.provision.write: granted",
        "scope identity.user.core.read: granted",
        "scope identity.user.enterprise.read: granted",
        "scope spend.user.general.read: granted",
        "check passed",
    ] {
        assert!(
            report.contains(expected),
            "{expected:?} missing from {report}"
        );
    }
    // `check` writes nothing.
    assert!(rig.sim.v4_users().len() == 1);
    assert!(rig.run(&["check", "--json"]).await.status.success());

    // Scopes withheld: each one is named, with who must grant it.
    let all = [
        "user.provision.read",
        "identity.user.core.read",
        "identity.user.coresensitive.read",
        "identity.user.ids.read",
    ];
    rig.sim.set_v4_settings(V4Settings {
        scopes: Some(all.iter().map(|s| (*s).to_owned()).collect()),
        ..V4Settings::default()
    });
    let out = rig.run(&["check"]).await;
    let report = text(&out);
    assert_eq!(code(&out), 1, "{report}");
    for scope in [
        "spend.user.general.read",
        "user.provision.write",
        "identity.user.enterprise.read",
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with("PROBLEM") && l.contains(&format!("scope {scope} missing")))
            .unwrap_or_else(|| panic!("{scope} not named in {report}"));
        assert!(
            line.contains("SAP Concur representative must grant"),
            "{line}"
        );
    }
    assert!(report.contains("check failed: 3 problem(s)"), "{report}");

    // A company UUID that is not the token's company.
    rig.sim.set_v4_settings(V4Settings::default());
    let cfg = std::fs::read_to_string(&rig.config)
        .unwrap()
        .replace(DEFAULT_COMPANY_UUID, "0b9b4f0e-7c1a-4d2b-8e3f-1a2b3c4d5e6f");
    std::fs::write(&rig.config, cfg).unwrap();
    let out = rig.run(&["check"]).await;
    let report = text(&out);
    assert_eq!(code(&out), 1, "{report}");
    assert!(
        report.contains(&format!(
            "concur.company_uuid is \"0b9b4f0e-7c1a-4d2b-8e3f-1a2b3c4d5e6f\" but Concur reports the company {DEFAULT_COMPANY_UUID}"
        )),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_refused_under_v4_naming_single_sign_on() {
    let rig = v4_rig().await;
    let out = rig
        .run_stdin(
            &["passwords", "--file", "-"],
            b"login_id,password\nuser1@example.com,Secret-Pass-1\n",
        )
        .await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("single sign-on"), "{stderr}");
    assert!(!text(&out).contains("Secret-Pass-1"));
    assert!(rig.sim.requests().is_empty(), "something was sent");

    // A random password on create is something v4 cannot do: a configuration error naming the
    // key. (Left at its default, the key has no effect under v4.)
    let mut cfg = std::fs::read_to_string(&rig.config).unwrap();
    cfg.push_str("\n[sync]\npassword_on_create = \"random\"\n");
    std::fs::write(&rig.config, cfg).unwrap();
    let out = rig.run(&["check"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        text(&out).contains("sync.password_on_create"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_column_under_v4_fails_the_read_before_anything_is_written() {
    let rig = v4_rig().await;
    let rows: Vec<String> = (0..5)
        .map(|i| format!("{},{}", row(i, ""), q(&format!("Secret-Pass-{i}"))))
        .collect();
    rig.write_csv(&format!("{HEADER},password"), &rows);
    for command in ["sync", "plan"] {
        let out = rig.run(&[command]).await;
        assert_eq!(code(&out), 1, "{command}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("password column") && stderr.contains("single sign-on"),
            "{command}: {stderr}"
        );
        assert!(!text(&out).contains("Secret-Pass"));
    }
    assert!(rig.sim.v4_users().is_empty(), "a user was created");
    assert!(user_writes(&rig).is_empty(), "{:?}", user_writes(&rig));
    let db = rusqlite::Connection::open(rig.state_path()).unwrap();
    let stored: i64 = db
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_under_v4_is_judged_on_readable_fields_only_and_repaired_through_ups_v4() {
    let rig = v4_rig().await;
    rig.sim.seed_users((0..5).map(v1_user).collect());
    rig.write_hr(&rows_without_managers(0..5));
    let out = rig.run(&["reconcile"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("5 Concur users, 5 adopted, 0 unmanaged, 0 drifted"),
        "{stdout}"
    );
    // Adopted as Concur reports them: identity and spend, joined by UUID.
    let db = rusqlite::Connection::open(rig.state_path()).unwrap();
    let fields: String = db
        .query_row(
            "SELECT fields FROM users WHERE employee_id = 'E00001'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let fields: Value = serde_json::from_str(&fields).unwrap();
    assert_eq!(fields["login_id"], "user1@example.com", "{fields}");
    assert_eq!(fields["ledger"], "DEFAULT", "{fields}");
    assert_eq!(fields["country"], "US", "{fields}");
    drop(db);

    // An administrator edits two users in Concur: one's last name, the other's e-mail.
    rig.sim.seed_users(vec![
        v1_user(1).with("LastName", "Edited"),
        v1_user(2).with("EmailAddress", "elsewhere@example.com"),
    ]);
    // Without identity.user.coresensitive.read Concur returns no e-mail: only the name drifted.
    rig.sim.set_v4_settings(V4Settings {
        scopes: Some(
            [
                "user.provision.read",
                "user.provision.write",
                "identity.user.core.read",
                "identity.user.enterprise.read",
                "spend.user.general.read",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        ),
        ..V4Settings::default()
    });
    let out = rig.run(&["reconcile"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("1 drifted, 1 drift repaired, 0 failed"),
        "{stdout}{stderr}"
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    // Repaired through UPS v4, never through User v1.
    let v1_writes = |w: Vec<String>| w.iter().filter(|w| w.contains("/api/user/v1.0")).count();
    assert_eq!(v1_writes(user_writes(&rig)), 0, "a User v1 write was sent");
    assert!(count_requests(&rig, "POST", "/profile/v4/Bulk") >= 1);
    let repaired = rig
        .sim
        .users()
        .into_iter()
        .find(|u| u.emp_id() == "E00001")
        .unwrap();
    assert_eq!(repaired.get("LastName"), v1_user(1).get("LastName"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_v41_is_paged_by_cursor_and_every_user_is_listed_once() {
    let rig = v4_rig().await;
    let users: Vec<Value> = (1..=1_150).map(stranger).collect();
    rig.sim.seed_v4_users(users).unwrap();
    rig.write_hr(&[]);
    let out = rig.run(&["reconcile"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1150 Concur users, 0 adopted, 1150 unmanaged"),
        "{stdout}"
    );
    // 1,150 users: two Identity v4.1 pages (1,000 then 150 by cursor), twelve Spend pages.
    assert_eq!(
        count_requests(&rig, "GET", "/profile/identity/v4.1/Users"),
        2
    );
    assert_eq!(count_requests(&rig, "GET", "/profile/spend/v4.1/Users"), 12);
    let stored = stored_uuids(&rig);
    assert_eq!(stored.len(), 1150);
    assert!(stored.values().all(Option::is_some));
}
