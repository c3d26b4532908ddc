//! Simulator behaviour over real HTTP.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use concur_sync::simulator::*;

use super::harness::company_token_request;
use serde_json::{Value, json};

const NS: &str = "http://www.concursolutions.com/api/user/2011/02";

async fn sim_with(config: SimConfig) -> SimHandle {
    start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

async fn sim() -> SimHandle {
    sim_with(SimConfig::default()).await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Company token: (access, refresh).
async fn token(sim: &SimHandle) -> (String, String) {
    let resp = company_token_request(&http(), sim).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["geolocation"], sim.base_url());
    (
        body["access_token"].as_str().unwrap().to_string(),
        body["refresh_token"].as_str().unwrap().to_string(),
    )
}

async fn post_xml(sim: &SimHandle, tok: &str, path: &str, xml: String) -> (u16, String) {
    let resp = http()
        .post(format!("{}{path}", sim.base_url()))
        .header("Authorization", format!("OAuth {tok}"))
        .header("Content-Type", "application/xml; charset=utf-8")
        .body(xml)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

async fn post_batch(sim: &SimHandle, tok: &str, xml: String) -> (u16, String) {
    post_xml(sim, tok, "/api/user/v1.0/Users", xml).await
}

async fn get_text(sim: &SimHandle, auth: &str, path: &str) -> (u16, String) {
    let resp = http()
        .get(format!("{}{path}", sim.base_url()))
        .header("Authorization", auth)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Text of the first `<name>…</name>` in `xml`.
fn el<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

fn profile(emp: &str, feed: usize, extra: &str) -> String {
    format!(
        "<UserProfile><EmpId>{emp}</EmpId><FeedRecordNumber>{feed}</FeedRecordNumber>\
         <LoginId>{emp}@example.com</LoginId><Password>Pw-{emp}!</Password>\
         <FirstName>F{emp}</FirstName><LastName>L{emp}</LastName>\
         <EmailAddress>{emp}@example.com</EmailAddress><LedgerKey>DEFAULT</LedgerKey>{extra}</UserProfile>"
    )
}

fn batch(profiles: &[String]) -> String {
    format!(r#"<batch xmlns="{NS}">{}</batch>"#, profiles.concat())
}

const WIRE_FACTS_REQUEST: &str = r#"<batch xmlns="http://www.concursolutions.com/api/user/2011/02">
  <UserProfile>
    <EmpId>345678</EmpId><FeedRecordNumber>1</FeedRecordNumber>
    <LoginId>tb@example.com</LoginId><LocaleName>en_US</LocaleName>
    <Active>Y</Active><Password>Welcome1!</Password>
    <FirstName>Terry</FirstName><LastName>Brown</LastName><Mi>L</Mi>
    <EmailAddress>tb@example.com</EmailAddress><LedgerKey>DEFAULT</LedgerKey>
    <OrgUnit1>R&amp;D</OrgUnit1><Custom1>Redmond</Custom1>
    <CtryCode>US</CtryCode><CrnKey>USD</CrnKey><CtrySubCode>US-WA</CtrySubCode>
    <ExpenseUser>Y</ExpenseUser><ExpenseApprover>Y</ExpenseApprover><TripUser>Y</TripUser>
    <InvoiceUser>N</InvoiceUser><InvoiceApprover>N</InvoiceApprover>
  </UserProfile>
  <UserProfile>
    <EmpId>456789</EmpId><FeedRecordNumber>2</FeedRecordNumber>
    <LoginId>cm@example.com</LoginId><Active>N</Active>
  </UserProfile>
</batch>"#;

#[tokio::test]
async fn wire_facts_batch_round_trips_into_stored_users_and_answers_in_wire_shape() {
    let sim = sim().await;
    let (tok, _) = token(&sim).await;
    let (status, body) = post_batch(&sim, &tok, WIRE_FACTS_REQUEST.to_string()).await;
    assert_eq!(status, 200);
    assert!(body.starts_with(
        "<user-batch-result xmlns=\"http://www.concursolutions.com/api/user/2011/02\""
    ));
    assert_eq!(el(&body, "records-succeeded"), Some("1"));
    assert_eq!(el(&body, "records-failed"), Some("1"));
    let error = el(&body, "error").unwrap();
    assert_eq!(el(error, "EmployeeID"), Some("456789"));
    assert_eq!(el(error, "FeedRecordNumber"), Some("2"));
    assert_eq!(
        el(error, "message"),
        Some("Missing Required Field: Password")
    );
    let details = el(&body, "UsersDetails").unwrap();
    assert_eq!(details.matches("<UserInfo>").count(), 1);
    assert_eq!(el(details, "EmployeeID"), Some("345678"));
    assert_eq!(el(details, "Status"), Some("SUCCESS"));

    let users = sim.users();
    assert_eq!(users.len(), 1);
    let u = &users[0];
    assert_eq!(u.emp_id(), "345678");
    assert_eq!(u.login_id(), "tb@example.com");
    assert!(u.active());
    for (k, v) in [
        ("LocaleName", "en_US"),
        ("FirstName", "Terry"),
        ("LastName", "Brown"),
        ("Mi", "L"),
        ("LedgerKey", "DEFAULT"),
        ("OrgUnit1", "R&D"),
        ("Custom1", "Redmond"),
        ("CtrySubCode", "US-WA"),
        ("InvoiceApprover", "N"),
    ] {
        assert_eq!(u.get(k), Some(v), "{k}");
    }
    assert!(
        u.get("Password").is_none(),
        "passwords are never stored as elements"
    );
    assert!(sim.password_matches("345678", "Welcome1!"));
    assert!(!sim.password_matches("345678", "welcome1!"));

    // GET by login: alphabetical, LedgerName, escaped, no password.
    let (status, xml) = get_text(
        &sim,
        &format!("Bearer {tok}"),
        "/api/user/v1.0/User?loginID=tb%40example.com",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(el(&xml, "LedgerName"), Some("DEFAULT"));
    assert_eq!(el(&xml, "OrgUnit1"), Some("R&amp;D"));
    assert!(!xml.contains("LedgerKey") && !xml.contains("Password"));
    let names: Vec<&str> = xml
        .split("</")
        .skip(1)
        .map(|s| s.split('>').next().unwrap())
        .filter(|n| *n != "UserProfile")
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);

    let (status, xml) = get_text(
        &sim,
        &format!("Bearer {tok}"),
        "/api/user/v1.0/user?loginID=nobody%40example.com",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(el(&xml, "Message"), Some("Invalid User:nobody@example.com"));

    // The request log counts the records of the write batch.
    let log = sim.requests();
    let write = log
        .iter()
        .find(|r| r.method == "POST" && r.path.contains("users"))
        .unwrap();
    assert_eq!(write.records, Some(2));
    assert_eq!(write.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn only_the_first_ten_errors_are_listed() {
    let sim = sim().await;
    let (tok, _) = token(&sim).await;
    let ids: Vec<String> = (1..=12).map(|i| format!("R{i:02}")).collect();
    // Rejections set over the control API.
    let resp = http()
        .post(format!("{}/_sim/reject", sim.base_url()))
        .json(&json!({"employee_ids": ids, "message": "User Creation Failed"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let mut profiles: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| profile(id, i + 1, ""))
        .collect();
    profiles.push(profile("OK1", 13, ""));
    profiles.push(profile("OK2", 14, ""));
    let (status, body) = post_batch(&sim, &tok, batch(&profiles)).await;
    assert_eq!(status, 200);
    assert_eq!(el(&body, "records-succeeded"), Some("2"));
    assert_eq!(el(&body, "records-failed"), Some("12"));
    let errors = el(&body, "errors").unwrap();
    assert_eq!(errors.matches("<error>").count(), 10);
    assert!(errors.contains("<EmployeeID>R10</EmployeeID>"));
    assert!(!errors.contains("R11"));
    assert_eq!(el(errors, "message"), Some("User Creation Failed"));
    assert_eq!(
        el(&body, "UsersDetails")
            .unwrap()
            .matches("<UserInfo>")
            .count(),
        2
    );
}

#[tokio::test]
async fn batch_level_errors_answer_400_with_error_xml() {
    let sim = sim().await;
    let (tok, _) = token(&sim).await;
    let profiles: Vec<String> = (0..501)
        .map(|i| profile(&format!("E{i}"), i + 1, ""))
        .collect();
    let (status, body) = post_batch(&sim, &tok, batch(&profiles)).await;
    assert_eq!(status, 400);
    assert_eq!(
        el(&body, "Message"),
        Some("Maximum User Records per Batch Exceeded")
    );
    assert!(el(&body, "Server-Time").is_some() && el(&body, "Id").is_some());
    assert!(sim.users().is_empty());

    let (status, body) = post_batch(&sim, &tok, "<batch><UserProfile></batch>".into()).await;
    assert_eq!(status, 400);
    assert_eq!(el(&body, "Message"), Some("The Request XML is invalid"));

    let profiles: Vec<String> = (0..500)
        .map(|i| profile(&format!("E{i:03}"), i + 1, ""))
        .collect();
    let (status, body) = post_batch(&sim, &tok, batch(&profiles)).await;
    assert_eq!(status, 200);
    assert_eq!(el(&body, "records-succeeded"), Some("500"));
}

#[tokio::test]
async fn special_characters_and_non_ascii_are_stored_exactly() {
    let sim = sim().await;
    let (tok, _) = token(&sim).await;
    let xml = batch(&[String::from(
        "<UserProfile><EmpId>Ü-1</EmpId><FeedRecordNumber>1</FeedRecordNumber><LoginId>zoë@example.com</LoginId>\
         <Password>p&lt;&amp;&gt;</Password><FirstName>Zoë &amp; &lt;Co&gt;</FirstName><LastName>O&apos;Brien-李</LastName>\
         <EmailAddress>zoe@example.com</EmailAddress><LedgerKey>DEFAULT</LedgerKey><Custom2>&quot;q&quot; &#x263A;</Custom2></UserProfile>",
    )]);
    let (status, body) = post_batch(&sim, &tok, xml).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(el(&body, "records-succeeded"), Some("1"), "{body}");
    let u = sim.users().pop().unwrap();
    assert_eq!(u.emp_id(), "Ü-1");
    assert_eq!(u.get("FirstName"), Some("Zoë & <Co>"));
    assert_eq!(u.get("LastName"), Some("O'Brien-李"));
    assert_eq!(u.get("Custom2"), Some("\"q\" ☺"));
    assert!(sim.password_matches("Ü-1", "p<&>"));
    let (status, xml) = get_text(
        &sim,
        &format!("OAuth {tok}"),
        "/api/user/v1.0/User?loginID=zo%C3%AB%40example.com",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(el(&xml, "FirstName"), Some("Zoë &amp; &lt;Co&gt;"));
    assert_eq!(el(&xml, "EmpId"), Some("Ü-1"));
}

#[tokio::test]
async fn record_validation_updates_and_renames() {
    let sim = sim().await;
    let (tok, _) = token(&sim).await;
    let long = "x".repeat(33);
    let (_, body) = post_batch(
        &sim,
        &tok,
        batch(&[
            profile("A", 1, ""),
            profile("B", 2, "<ExpenseApproverEmployeeID>A</ExpenseApproverEmployeeID>"),
            profile("C", 3, "<ExpenseApproverEmployeeID>ZZZ</ExpenseApproverEmployeeID>"),
            profile("D", 4, "<Active>X</Active>"),
            profile("E", 5, &format!("<Custom3>{}</Custom3>", "y".repeat(49))),
            profile("F", 6, "<Colour>red</Colour>"),
            String::from("<UserProfile><EmpId>G</EmpId><FeedRecordNumber>7</FeedRecordNumber><LoginId>nope</LoginId></UserProfile>"),
            format!("<UserProfile><EmpId>H</EmpId><FeedRecordNumber>8</FeedRecordNumber><LoginId>A@example.com</LoginId><FirstName>{long}</FirstName></UserProfile>"),
            String::from("<UserProfile><EmpId>I</EmpId><FeedRecordNumber>9</FeedRecordNumber><LoginId>A@example.com</LoginId><Password>x</Password><FirstName>I</FirstName><LastName>I</LastName><EmailAddress>i@x</EmailAddress><LedgerKey>D</LedgerKey></UserProfile>"),
        ]),
    )
    .await;
    assert_eq!(el(&body, "records-succeeded"), Some("2"), "{body}");
    let msg = |emp: &str| {
        let start = body
            .find(&format!("<EmployeeID>{emp}</EmployeeID>"))
            .unwrap();
        el(&body[start..], "message").unwrap().to_string()
    };
    assert_eq!(msg("C"), "Invalid Input: ExpenseApproverEmployeeID");
    assert_eq!(msg("D"), "Invalid Input: Active");
    assert_eq!(msg("E"), "Invalid Input: Custom3");
    assert_eq!(msg("F"), "Invalid Input: Colour");
    assert_eq!(msg("G"), "Invalid Input: LoginId");
    assert_eq!(msg("H"), "Invalid Input: FirstName");
    assert!(msg("I").contains("already in use"), "{}", msg("I"));

    // Update: only the elements sent change; the password is not changed by the batch.
    let (_, body) = post_batch(
        &sim,
        &tok,
        batch(&[String::from(
            "<UserProfile><EmpId>A</EmpId><FeedRecordNumber>1</FeedRecordNumber><LoginId>A@example.com</LoginId><Active>N</Active><Password>new</Password></UserProfile>"
        )]),
    )
    .await;
    assert_eq!(el(&body, "records-succeeded"), Some("1"), "{body}");
    let a = sim.users().into_iter().find(|u| u.emp_id() == "A").unwrap();
    assert!(!a.active());
    assert_eq!(a.get("FirstName"), Some("FA"));
    assert!(sim.password_matches("A", "Pw-A!"));

    // Renames: found by EmpId, new login and new employee id.
    let (_, body) = post_batch(
        &sim,
        &tok,
        batch(&[String::from(
            "<UserProfile><EmpId>A</EmpId><FeedRecordNumber>1</FeedRecordNumber><LoginId>A@example.com</LoginId>\
             <NewLoginID>a2@example.com</NewLoginID><NewEmployeeID>A2</NewEmployeeID></UserProfile>"
        )]),
    )
    .await;
    assert_eq!(el(&body, "records-succeeded"), Some("1"), "{body}");
    let a = sim
        .users()
        .into_iter()
        .find(|u| u.emp_id() == "A2")
        .unwrap();
    assert_eq!(a.login_id(), "a2@example.com");
    assert!(sim.users().iter().all(|u| u.emp_id() != "A"));
}

#[tokio::test]
async fn form_fields_follow_the_configured_required_list() {
    let sim = sim_with(SimConfig {
        required_fields: vec!["Password".into(), "Custom21".into()],
        ..SimConfig::default()
    })
    .await;
    let (tok, _) = token(&sim).await;
    let (status, xml) = get_text(&sim, &format!("OAuth {tok}"), "/api/user/v1.0/FormFields").await;
    assert_eq!(status, 200);
    let field = |id: &str| {
        xml.split("<FormField>")
            .find(|f| f.starts_with(&format!("<Id>{id}</Id>")))
            .unwrap()
            .to_string()
    };
    assert_eq!(el(&field("Custom21"), "Required"), Some("Y"));
    assert_eq!(el(&field("LastName"), "Required"), Some("N"));
    assert_eq!(el(&field("LoginId"), "MaxLength"), Some("128"));
    // A new user without LastName is fine under this configuration.
    let xml = batch(&[String::from(
        "<UserProfile><EmpId>N1</EmpId><FeedRecordNumber>1</FeedRecordNumber><LoginId>n1@example.com</LoginId><Password>p</Password><Custom21>US</Custom21></UserProfile>",
    )]);
    let (_, body) = post_batch(&sim, &tok, xml).await;
    assert_eq!(el(&body, "records-succeeded"), Some("1"), "{body}");
}

#[tokio::test]
async fn docs_dialect_uses_the_documented_spelling() {
    let sim = sim_with(SimConfig {
        dialect: Dialect::Docs,
        ..SimConfig::default()
    })
    .await;
    let (tok, _) = token(&sim).await;
    let (_, body) = post_batch(&sim, &tok, WIRE_FACTS_REQUEST.to_string()).await;
    assert!(body.contains("<UserDetails><UserInfo>"), "{body}");
    assert_eq!(
        el(&body, "Message"),
        Some("Missing Required Field: Password")
    );
    assert!(!body.contains("UsersDetails") && !body.contains("<message>"));
}

#[tokio::test]
async fn password_batch_reports_each_user() {
    let sim = sim().await;
    sim.seed_users(vec![
        SimUser::new()
            .with("EmpId", "T1")
            .with("LoginId", "tb@example.com")
            .with("Password", "old"),
        SimUser::new()
            .with("EmpId", "")
            .with("LoginId", "cm@example.com"),
    ]);
    assert!(sim.password_matches("T1", "old"));
    let (tok, _) = token(&sim).await;
    let xml = format!(
        r#"<UserBatch xmlns="{NS}"><User><LoginID>tb@example.com</LoginID><Password>1234password!</Password></User><User><LoginID>cm@example.com</LoginID><Password>1234password!</Password></User><User><LoginID>ghost@example.com</LoginID><Password>x</Password></User></UserBatch>"#
    );
    let (status, body) = post_xml(&sim, &tok, "/api/user/v1.0/Users/password", xml).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("<BatchResult"));
    assert_eq!(el(&body, "RecordsSucceeded"), Some("1"));
    assert_eq!(el(&body, "RecordsFailed"), Some("2"));
    let statuses: Vec<&str> = body.split("<UserPasswordStatus>").skip(1).collect();
    assert_eq!(statuses.len(), 3);
    assert_eq!(el(statuses[0], "Status"), Some("Success"));
    assert_eq!(el(statuses[0], "Message"), Some("Password Updated."));
    assert_eq!(el(statuses[1], "Status"), Some("Failed"));
    assert_eq!(
        el(statuses[1], "Message"),
        Some(
            "This employee doesn&apos;t have an Employee ID. To update the password, the user must have an Employee ID."
        )
    );
    assert_eq!(el(statuses[2], "Status"), Some("Failed"));
    assert!(sim.password_matches("T1", "1234password!"));
    assert!(!sim.password_matches("T1", "old"));
}

#[tokio::test]
async fn refresh_rotates_and_kills_the_old_refresh_token() {
    let sim = sim().await;
    let (_, refresh) = token(&sim).await;
    let refresh_with = |rt: String| {
        let url = format!("{}/oauth2/v0/token", sim.base_url());
        async move {
            http()
                .post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", "cid"),
                    ("client_secret", "secret"),
                    ("refresh_token", rt.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let resp = refresh_with(refresh.clone()).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let new_refresh = body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new_refresh, refresh);
    assert_eq!(new_refresh.len(), 36);
    let new_access = body["access_token"].as_str().unwrap().to_string();
    let (status, _) = get_text(&sim, &format!("Bearer {new_access}"), "/users").await;
    assert_eq!(status, 200);

    let resp = refresh_with(refresh).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["code"], 108);
    assert_eq!(refresh_with(new_refresh).await.status(), 200);
}

#[tokio::test]
async fn pinned_credentials_are_enforced() {
    let sim = sim_with(SimConfig {
        client_id: Some("cid".into()),
        client_secret: Some("right".into()),
        company_id: Some("company-1".into()),
        request_token: Some("request-token".into()),
        ..SimConfig::default()
    })
    .await;
    let ask = |secret: &'static str, company: &'static str| {
        let url = format!("{}/oauth2/v0/token", sim.base_url());
        async move {
            let resp = http()
                .post(url)
                .form(&[
                    ("grant_type", "password"),
                    ("client_id", "cid"),
                    ("client_secret", secret),
                    ("username", company),
                    ("password", "request-token"),
                    ("credtype", "authtoken"),
                ])
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = ask("wrong", "company-1").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    let (status, body) = ask("right", "company-2").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error_description"],
        "Incorrect Credentials. Please Retry"
    );
    assert_eq!(body["code"], 5);
    let (status, _) = ask("right", "company-1").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn auth_failures_differ_between_v1_and_v4() {
    let sim = sim().await;
    let (tok, _) = token(&sim).await;
    let (status, _) = get_text(&sim, &format!("OAuth {tok}"), "/api/user/v1.0/FormFields").await;
    assert_eq!(status, 200);
    let resp = http()
        .get(format!("{}/api/user/v1.0/FormFields", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // OAuth scheme is refused by the Bearer-only APIs.
    let (status, _) = get_text(&sim, &format!("OAuth {tok}"), "/v4/attendees").await;
    assert_eq!(status, 401);

    sim.expire_tokens();
    let (status, xml) = get_text(&sim, &format!("Bearer {tok}"), "/api/user/v1.0/FormFields").await;
    assert_eq!(status, 403);
    assert!(xml.starts_with("<Error><Message>"), "{xml}");
    assert!(el(&xml, "Id").is_some());
    let (status, body) = get_text(&sim, &format!("Bearer {tok}"), "/v4/attendees").await;
    assert_eq!(status, 401);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["httpStatus"], "401 - Unauthorized");
    let (status, _) = get_text(&sim, &format!("Bearer {tok}"), "/users").await;
    assert_eq!(status, 401);

    // The control API expires tokens too.
    let (tok, _) = token(&sim).await;
    let resp = http()
        .post(format!("{}/_sim/expire-tokens", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let (status, _) = get_text(&sim, &format!("OAuth {tok}"), "/api/user/v1.0/FormFields").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn token_ttl_is_configurable() {
    let sim = sim_with(SimConfig {
        token_ttl: Duration::from_millis(1500),
        ..SimConfig::default()
    })
    .await;
    let resp = http()
        .post(format!("{}/oauth2/v0/token", sim.base_url()))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "c"),
            ("client_secret", "s"),
            ("username", "co"),
            ("password", "rt"),
            ("credtype", "authtoken"),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["expires_in"], 1);
    let tok = body["access_token"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (status, _) = get_text(&sim, &format!("Bearer {tok}"), "/api/user/v1.0/FormFields").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn rate_limit_modes_carry_the_right_retry_after() {
    let sim = sim().await;
    let (tok, _) = token(&sim).await;
    let auth = format!("Bearer {tok}");
    for (mode, check) in [
        (RetryAfterMode::Seconds(7), Some("7")),
        (RetryAfterMode::Zero, Some("0")),
        (RetryAfterMode::Absent, None),
    ] {
        sim.set_faults(Faults {
            rate_429: 1.0,
            retry_after: mode,
            ..Faults::default()
        });
        let resp = http()
            .get(format!("{}/users", sim.base_url()))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 429);
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            check,
            "{mode:?}"
        );
    }
    sim.set_faults(Faults {
        rate_429: 1.0,
        retry_after: RetryAfterMode::HttpDate(30),
        ..Faults::default()
    });
    let resp = http()
        .post(format!("{}/api/user/v1.0/users", sim.base_url()))
        .header("Authorization", &auth)
        .body(batch(&[profile("Q", 1, "")]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let date = httpdate::parse_http_date(resp.headers()["retry-after"].to_str().unwrap()).unwrap();
    let ahead = date.duration_since(SystemTime::now()).unwrap().as_secs();
    assert!((25..=31).contains(&ahead), "{ahead}");
    assert!(sim.users().is_empty(), "a 429 applies nothing");
    // The token endpoint is spared by default.
    token(&sim).await;
    // 5xx faults, set through the control API.
    let resp = http()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&json!({"rate_5xx": 1.0}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let (status, _) = get_text(&sim, &auth, "/users").await;
    assert!([500, 502, 503, 504].contains(&status), "{status}");
    let faults: Value = http()
        .get(format!("{}/_sim/faults", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["rate_5xx"], 1.0);
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.fault.as_deref() == Some("5xx"))
    );
}

#[tokio::test]
async fn dropped_connections_and_lost_responses_are_connection_errors() {
    let sim = sim().await;
    let (tok, _) = token(&sim).await;
    let auth = format!("OAuth {tok}");
    sim.set_faults(Faults {
        rate_drop: 1.0,
        ..Faults::default()
    });
    let err = http()
        .post(format!("{}/api/user/v1.0/users", sim.base_url()))
        .header("Authorization", &auth)
        .body(batch(&[profile("D1", 1, "")]))
        .send()
        .await
        .unwrap_err();
    assert!(err.status().is_none(), "{err:?}");
    assert!(sim.users().is_empty(), "a dropped request applies nothing");

    sim.set_faults(Faults {
        rate_lost_response: 1.0,
        ..Faults::default()
    });
    let err = http()
        .post(format!("{}/api/user/v1.0/users", sim.base_url()))
        .header("Authorization", &auth)
        .body(batch(&[profile("L1", 1, "")]))
        .send()
        .await
        .unwrap_err();
    assert!(err.status().is_none(), "{err:?}");
    assert_eq!(sim.users().len(), 1, "the lost-response write is applied");
    assert_eq!(sim.users()[0].emp_id(), "L1");
    let logged = sim.requests();
    assert!(
        logged
            .iter()
            .any(|r| r.fault.as_deref() == Some("drop") && r.status == 0)
    );
    assert!(
        logged
            .iter()
            .any(|r| r.fault.as_deref() == Some("lost_response") && r.records == Some(1))
    );

    // Reads are not "lost"; the server keeps serving afterwards.
    let (status, _) = get_text(&sim, &auth, "/api/user/v1.0/FormFields").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn seeded_faults_are_deterministic() {
    async fn pattern(seed: u64) -> Vec<u16> {
        let sim = sim_with(SimConfig {
            seed: Some(seed),
            faults: Faults {
                rate_5xx: 0.5,
                ..Faults::default()
            },
            ..SimConfig::default()
        })
        .await;
        let (tok, _) = token(&sim).await;
        let mut out = Vec::new();
        for _ in 0..12 {
            out.push(get_text(&sim, &format!("Bearer {tok}"), "/users").await.0);
        }
        out
    }
    let a = pattern(42).await;
    assert_eq!(a, pattern(42).await);
    assert!(a.contains(&200) && a.iter().any(|s| *s >= 500));
}

#[tokio::test]
async fn bulk_users_pages_and_limits() {
    let sim = sim().await;
    sim.seed_users(
        (1..=5)
            .map(|i| {
                SimUser::new()
                    .with("EmpId", &format!("E{i}"))
                    .with("LoginId", &format!("e{i}@example.com"))
                    .with("LastName", if i == 3 { "Smith" } else { "Doe" })
                    .with("Active", if i == 5 { "N" } else { "Y" })
                    .with("EmailAddress", &format!("e{i}@example.com"))
            })
            .collect(),
    );
    let (tok, _) = token(&sim).await;
    let auth = format!("Bearer {tok}");
    let get = |q: &'static str| {
        let auth = auth.clone();
        let url = format!("{}/users{q}", sim.base_url());
        async move {
            let resp = http()
                .get(url)
                .header("Authorization", auth)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, page) = get("/?offset=0&limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 5);
    assert_eq!(page["limit"], 2);
    assert_eq!(page["Items"].as_array().unwrap().len(), 2);
    assert_eq!(page["Items"][0]["EmployeeID"], "E1");
    assert_eq!(page["Items"][0]["LoginID"], "e1@example.com");
    assert_eq!(page["Items"][0]["Active"], true);
    assert!(page["company"]["name"].is_string());
    let (_, page) = get("?offset=4&limit=2").await;
    assert_eq!(page["Items"].as_array().unwrap().len(), 1);
    assert_eq!(page["Items"][0]["EmployeeID"], "E5");
    let (_, page) = get("?isactive=false").await;
    assert_eq!(page["total"], 1);
    let (_, page) = get("?lastname=smith").await;
    assert_eq!(page["Items"][0]["EmployeeID"], "E3");
    let (status, _) = get("?limit=101").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn attendees_create_update_and_lookup() {
    let sim = sim().await;
    let (tok, _) = token(&sim).await;
    let base = format!("{}/v4/attendees", sim.base_url());
    let auth = format!("Bearer {tok}");
    let create = |body: Value| {
        let (base, auth) = (base.clone(), auth.clone());
        async move {
            let resp = http()
                .post(base)
                .header("Authorization", auth)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (status, created) = create(json!({
        "attendeeTypeCode": "BUSGUEST", "firstName": "Olive", "lastName": "Tree",
        "company": "The Lumbermill Company", "externalId": "53457343", "custom8": "NYC"
    }))
    .await;
    assert_eq!(status, 200);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["uri"], format!("{base}/{id}"));

    let resp = http()
        .put(format!("{base}/{id}"))
        .header("Authorization", &auth)
        .json(&json!({"lastName": "Timber"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let got: Value = http()
        .get(format!("{base}/{id}"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a = &got["items"][0];
    assert_eq!(a["lastName"], "Timber");
    assert_eq!(a["firstName"], "Olive", "omitted fields are unchanged");
    assert_eq!(a["company"], "The Lumbermill Company");
    assert_eq!(a["custom8"]["type"], "Text");
    assert_eq!(a["custom8"]["value"], "NYC");
    assert_eq!(a["versionNumber"], 2);

    let mut ids = vec![id.clone()];
    for i in 0..10 {
        let (_, c) = create(json!({"attendeeTypeCode": "SPOUSE", "lastName": format!("N{i}"), "externalId": format!("X{i}")})).await;
        ids.push(c["id"].as_str().unwrap().to_string());
    }
    let by_ids: Value = http()
        .get(format!("{base}?id={}", ids[..10].join(",")))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_ids["items"].as_array().unwrap().len(), 10);
    let resp = http()
        .get(format!("{base}?id={}", ids.join(",")))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["httpStatus"], "400 - Bad Request");
    let by_ext: Value = http()
        .get(format!("{base}?externalId=X1,X2,53457343"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_ext["items"].as_array().unwrap().len(), 3);

    // Paging with an opaque offset and a nextPage URI.
    let first: Value = http()
        .get(format!("{base}?limit=4"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 4);
    let mut seen = 4;
    let mut next = first["nextPage"].as_str().map(str::to_string);
    while let Some(url) = next {
        let page: Value = http()
            .get(url)
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen += page["items"].as_array().unwrap().len();
        next = page["nextPage"].as_str().map(str::to_string);
    }
    assert_eq!(seen, 11);
    let resp = http()
        .get(format!("{base}?limit=101"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let (status, body) = create(json!({"attendeeTypeCode": "NOSHOWS", "lastName": "X"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["validationErrors"][0]["id"], "attendeeTypeCode");
    let (status, body) = create(json!({"attendeeTypeCode": "TOOLONGCODE", "firstName": "x"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["validationErrors"].as_array().unwrap().len(), 2);

    let resp = http()
        .delete(format!("{base}/{id}"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let all: Value = http()
        .get(format!("{}/_sim/attendees", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 11);
}

#[tokio::test]
async fn control_api_edits_users_and_state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("sim.json");
    let config = || SimConfig {
        state_file: Some(state.clone()),
        ..SimConfig::default()
    };
    let sim = sim_with(config()).await;
    let c = http();
    let resp = c
        .post(format!("{}/_sim/users", sim.base_url()))
        .json(&json!([{"EmpId": "S1", "LoginId": "s1@example.com", "FirstName": "Sam", "Password": "pw"}]))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let resp = c
        .put(format!("{}/_sim/users/S1", sim.base_url()))
        .json(&json!({"FirstName": "Samuel", "Custom5": "drift"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let users: Value = c
        .get(format!("{}/_sim/users", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users[0]["FirstName"], "Samuel");
    assert_eq!(users[0]["Custom5"], "drift");
    assert!(users[0].get("Password").is_none());
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(
        !saved.contains("\"pw\""),
        "no plaintext password in the state file"
    );
    sim.shutdown().await;

    let sim = sim_with(config()).await;
    assert_eq!(sim.users()[0].get("FirstName"), Some("Samuel"));
    assert!(sim.password_matches("S1", "pw"));
    let (tok, _) = token(&sim).await;
    let (status, _) = get_text(
        &sim,
        &format!("Bearer {tok}"),
        "/profile/v1/me?schema=compact",
    )
    .await;
    assert_eq!(status, 200);
    let resp = c
        .delete(format!("{}/_sim/requests", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert!(sim.requests().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn run_cli_serves_until_shutdown() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }
    let cli = Cli::try_parse_from([
        "simulate",
        "--listen",
        "127.0.0.1:0",
        "--fault-429",
        "0.5",
        "--retry-after",
        "date:5",
        "--seed",
        "3",
        "--dialect",
        "docs",
    ])
    .unwrap();
    let config = cli.args.to_config();
    assert_eq!(config.faults.retry_after, RetryAfterMode::HttpDate(5));
    assert_eq!(config.dialect, Dialect::Docs);
    assert!(
        Cli::try_parse_from(["simulate", "--listen", "127.0.0.1:0", "--fault-drop", "2"]).is_err()
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_cli(cli.args, async {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(100)).await;
    tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}
