//! One digest per source: a cycle over a file records the file's digest, the one `approve` and
//! the drop folder compare, whatever the file's kind. A held plan from an LDIF file is approved
//! like one from a CSV file, and a file dropped twice is recognised as already processed.

use std::path::{Path, PathBuf};

use concur_sync::simulator::SimUser;

use super::harness::{HEADER, Rig, code, rows, text};

/// An LDIF export of users `0..n` (employee ids `E00000`…), as slapcat writes it.
fn ldif(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "dn: uid=u{i},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: u{i}\n\
                 cn: User {i}\ngivenName: User\nsn: Number{i}\nemployeeNumber: E{i:05}\n\
                 mail: user{i}@example.com\n\n"
            )
        })
        .collect()
}

/// A CSV file of the harness header and users `0..n`.
fn csv(n: usize) -> String {
    let mut s = format!("{HEADER}\n");
    for r in rows(0..n) {
        s.push_str(&r);
        s.push('\n');
    }
    s
}

/// Makes `kind` the rig's source: the drop folder `inbox/` (files complete at once), or the
/// single file `people.<kind>`. Returns the folder or the file.
fn use_source(rig: &Rig, kind: &str, folder: bool) -> PathBuf {
    let path = if folder {
        let inbox = rig.dir.path().join("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        inbox
    } else {
        rig.dir.path().join(format!("people.{kind}"))
    };
    rig.write_source_config(&format!(
        "[source]\nkind = \"{kind}\"\npath = {:?}\nsettle_seconds = 0\n",
        path.display().to_string()
    ));
    path
}

/// Puts `content` where the source reads it: renamed into the folder as `name`, or written
/// over the single file.
fn deliver(path: &Path, folder: bool, name: &str, content: &str) {
    if folder {
        let tmp = path.join(".incoming.tmp");
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, path.join(name)).unwrap();
    } else {
        std::fs::write(path, content).unwrap();
    }
}

fn active(rig: &Rig) -> Vec<String> {
    let mut ids: Vec<String> = rig
        .sim
        .users()
        .into_iter()
        .filter(SimUser::active)
        .map(|u| u.emp_id().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_plan_from_an_ldif_file_is_approved_and_reaches_concur() {
    for folder in [true, false] {
        let rig = Rig::start().await;
        let path = use_source(&rig, "ldif", folder);
        deliver(&path, folder, "people-1.ldif", &ldif(20));
        let out = rig.run(&["sync"]).await;
        assert_eq!(code(&out), 0, "{}", text(&out));
        assert_eq!(active(&rig).len(), 20);

        // Two departures of 20 exceed sync.max_deactivations (5%): held whole.
        deliver(&path, folder, "people-2.ldif", &ldif(18));
        let out = rig.run(&["sync"]).await;
        assert_eq!(code(&out), 3, "{}", text(&out));
        let st = rig.status().await;
        assert_eq!(st["last_cycle"]["outcome"], "held", "{st}");
        assert_eq!(st["outbox"]["held"], 2, "{st}");
        assert_eq!(active(&rig).len(), 20, "a held deactivation was sent");

        let held = st["last_cycle"]["id"].as_i64().unwrap().to_string();
        let out = rig.run(&["approve", &held]).await;
        assert_eq!(code(&out), 0, "folder {folder}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("held plan applied: 2 deactivated"),
            "{}",
            text(&out)
        );
        let want: Vec<String> = (0..18).map(|i| format!("E{i:05}")).collect();
        assert_eq!(active(&rig), want, "folder {folder}");
        let st = rig.status().await;
        assert_eq!(st["last_cycle"]["outcome"], "success", "{st}");
        assert_eq!(st["outbox"]["held"], 0, "{st}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_dropped_twice_is_archived_without_a_second_cycle_whatever_its_kind() {
    for (kind, content) in [("ldif", ldif(5)), ("csv", csv(5))] {
        let rig = Rig::start().await;
        let inbox = use_source(&rig, kind, true);
        deliver(&inbox, true, &format!("people-1.{kind}"), &content);
        let out = rig.run(&["sync"]).await;
        assert_eq!(code(&out), 0, "{kind}: {}", text(&out));
        assert_eq!(active(&rig).len(), 5, "{kind}");
        let first = rig.status().await["last_cycle"]["id"].clone();

        let again = format!("people-2.{kind}");
        deliver(&inbox, true, &again, &content);
        let out = rig.run(&["sync"]).await;
        assert_eq!(code(&out), 0, "{kind}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!(
                "{again}: same content as the last file processed; archived without a cycle"
            )),
            "{kind}: {}",
            text(&out)
        );
        assert_eq!(
            rig.status().await["last_cycle"]["id"],
            first,
            "{kind}: a cycle ran"
        );
        assert!(!inbox.join(&again).exists(), "{kind}: not archived");
        let archived = std::fs::read_dir(inbox.join("archive")).unwrap().count();
        assert_eq!(archived, 2, "{kind}");
    }
}
