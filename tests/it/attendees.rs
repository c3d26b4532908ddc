//! The Attendees v4 job on the user source's rails, end to end through the real binary and the
//! simulator: its drop folder (complete files oldest first, `archive/`, `rejected/`, links
//! never followed, the last file processed as the current list) and its rejections in `status`.

use super::harness::{Rig, code, rows, text};

fn requests(rig: &Rig, method: &str) -> usize {
    rig.sim
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.starts_with("/v4/attendees"))
        .count()
}

async fn attendee_list(rig: &Rig) -> Vec<serde_json::Value> {
    reqwest::get(format!("{}/_sim/attendees", rig.sim.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attendee_drop_folder_hands_over_files_oldest_first_and_keeps_the_last_as_current() {
    let rig = Rig::start().await;
    let inbox = rig.dir.path().join("attendees");
    std::fs::create_dir(&inbox).unwrap();
    let mut cfg = std::fs::read_to_string(&rig.config).unwrap();
    cfg.push_str(&format!(
        "\n[attendees.source]\nkind = \"csv\"\npath = {:?}\nsettle_seconds = 0\n",
        inbox.display().to_string()
    ));
    std::fs::write(&rig.config, cfg).unwrap();
    rig.write_hr(&rows(0..1));
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/attendees/attendees.csv"
    ))
    .unwrap();
    let line = |id: &str| {
        fixture
            .lines()
            .find(|l| l.starts_with(&format!("{id},")))
            .unwrap()
            .to_owned()
    };
    let header = fixture.lines().next().unwrap();
    let monday = [header, &line("A0000"), &line("A0001"), &line("B0001")].join("\n");
    let tuesday = [
        header,
        &line("A0000"),
        &line("A0001").replace(",Doctor,", ",Professor,"),
        &line("A0002"),
    ]
    .join("\n");
    std::fs::write(inbox.join("monday.csv"), format!("{monday}\n")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    std::fs::write(inbox.join("tuesday.csv"), format!("{tuesday}\n")).unwrap();
    let outside = rig.dir.path().join("outside.csv");
    std::fs::write(&outside, format!("{header}\n{}\n", line("A0003"))).unwrap();
    std::os::unix::fs::symlink(&outside, inbox.join("link.csv")).unwrap();

    // The older list first; its rejected row is shown like a user's; the link is set aside.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(
        text(&out)
            .contains("attendees 1 partial: 2 created, 0 updated, 0 adopted, 0 failed, 1 rejected"),
        "{}",
        text(&out)
    );
    assert_eq!(attendee_list(&rig).await.len(), 2);
    assert_eq!(names(&inbox), ["archive", "rejected", "tuesday.csv"]);
    assert!(names(&inbox.join("archive"))[0].starts_with("monday.csv."));
    assert_eq!(
        names(&inbox.join("rejected")).len(),
        2,
        "the link and its reason"
    );
    assert!(outside.exists());
    let st = rig.status().await;
    let a = &st["attendees"];
    assert_eq!(a["last_file"]["name"], "monday.csv", "{st:#}");
    assert_eq!(a["rejected"][0]["external_id"], "B0001", "{st:#}");
    assert_eq!(a["rejected"][0]["source"], "monday.csv:4", "{st:#}");
    assert!(
        st["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["file"] == "link.csv"),
        "{st:#}"
    );
    assert_eq!(
        st["last_file"],
        serde_json::Value::Null,
        "users' own history"
    );
    let shown = rig.run(&["status"]).await;
    assert!(
        text(&shown).contains(
            "  rejected monday.csv:4: attendee B0001: field attendee_type_code: NOSHOWS: Concur \
             does not allow creating or updating attendees of this type"
        ),
        "{}",
        text(&shown)
    );

    // The next list: one more attendee, one changed title.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let list = attendee_list(&rig).await;
    assert_eq!(list.len(), 3);
    assert!(
        list.iter()
            .any(|a| a["externalId"] == "A0001" && a["title"] == "Professor")
    );
    assert_eq!(names(&inbox), ["archive", "rejected"]);
    let st = rig.status().await;
    assert_eq!(st["attendees"]["last_file"]["name"], "tuesday.csv");
    assert_eq!(st["attendees"]["rejected"], serde_json::json!([]));
    assert_eq!(
        st["attendees"]["last_run"]["counts"]["updated"], 1,
        "{st:#}"
    );

    // Nothing new: the current list is the last one processed, and nothing changes.
    let writes = requests(&rig, "POST") + requests(&rig, "PUT");
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(requests(&rig, "POST") + requests(&rig, "PUT"), writes);
    let st = rig.status().await;
    assert_eq!(
        st["attendees"]["last_run"]["counts"]["unchanged"], 3,
        "{st:#}"
    );
    assert_eq!(
        st["attendees"]["missing_from_source"],
        serde_json::json!([])
    );
}
