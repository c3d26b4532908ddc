//! The simulator's v4 APIs (User Provisioning Service, Identity v4/v4.1, Spend User v4.1) over
//! real HTTP.

use std::time::Duration;

use concur_sync::simulator::*;

use super::harness::company_token_request;
use serde_json::{Value, json};

const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SPEND: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:User";
const ROLE: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:Role";
const APPROVER: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:Approver";
const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SEARCH: &str = "urn:ietf:params:scim:api:messages:concur:2.0:SearchRequest";
const CONCUR_ERROR: &str = "urn:ietf:params:scim:api:messages:concur:2.0:Error";

/// A simulator and a company token for it.
struct V4 {
    sim: SimHandle,
    token: String,
    client: reqwest::Client,
}

impl V4 {
    async fn start() -> V4 {
        V4::with(SimConfig::default()).await
    }

    async fn with(config: SimConfig) -> V4 {
        let sim = start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
        let resp = company_token_request(&http(), &sim).send().await.unwrap();
        let body: Value = resp.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap().to_string();
        V4 {
            sim,
            token,
            client: http(),
        }
    }

    /// Sends a request with the company token; (status, JSON body or Null).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let resp = self.send(method, path, body).await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<reqwest::Response> {
        let url = format!("{}{path}", self.sim.base_url());
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .client
            .request(method, url)
            .bearer_auth(&self.token)
            .header("Accept", "application/scim+json");
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/scim+json")
                .body(b.to_string());
        }
        req.send().await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    /// The id of the user with this employee number, through Identity v4's filter.
    async fn uuid_of(&self, emp: &str) -> String {
        let (status, body) = self
            .get(&format!(
                "/profile/identity/v4/Users?filter=employeeNumber%20eq%20%22{emp}%22"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["totalResults"], 1, "{body}");
        body["Resources"][0]["id"].as_str().unwrap().to_string()
    }

    /// `POST /Bulk` then the status with every operation.
    async fn bulk(&self, ops: Value) -> (Value, Value) {
        let (status, accepted) = self
            .call(
                "POST",
                "/profile/v4/Bulk/",
                Some(json!({"schemas": [BULK], "failOnErrors": 1, "Operations": ops})),
            )
            .await;
        assert_eq!(status, 202, "{accepted}");
        let done = self.status_of(&accepted).await;
        (accepted, done)
    }

    async fn status_of(&self, provision: &Value) -> Value {
        let id = provision["id"].as_str().unwrap();
        let (status, body) = self
            .get(&format!(
                "/profile/v4/provisions/{id}/status?attributes=operations"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A User v1 user as concur-sync writes them.
fn v1_user(i: usize) -> SimUser {
    SimUser::new()
        .with("EmpId", &format!("E{i:05}"))
        .with("LoginId", &format!("user{i}@example.com"))
        .with("EmailAddress", &format!("user{i}@example.com"))
        .with("FirstName", "Ada")
        .with("LastName", &format!("Lovelace{i}"))
        .with("Active", "Y")
        .with("LocaleName", "en_US")
        .with("CtryCode", "US")
        .with("CtrySubCode", "US-WA")
        .with("CrnKey", "USD")
        .with("LedgerKey", "DEFAULT")
        .with("OrgUnit1", "RND")
        .with("Custom2", "two")
        .with("ExpenseUser", "Y")
        .with("ExpenseApprover", "Y")
}

/// A v4 User resource for a create.
fn user(sim: &SimHandle, emp: &str, extra: Value) -> Value {
    let mut u = json!({
        "schemas": [CORE, ENT, SPEND],
        "userName": format!("{}@example.com", emp.to_lowercase()),
        "active": true,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": format!("{}@example.com", emp.to_lowercase()), "type": "work"}],
        "entitlements": ["Expense"],
        ENT: {"employeeNumber": emp, "companyId": sim.company_uuid()},
        SPEND: {"country": "US", "locale": "en-US", "reimbursementCurrency": "USD", "ledgerCode": "DEFAULT",
                "customData": [{"id": "orgUnit1", "value": "RND"}]},
    });
    for (k, v) in extra.as_object().unwrap() {
        u[k] = v.clone();
    }
    u
}

fn ext<'a>(op: &'a Value, name: &str) -> &'a Value {
    op["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {op}"))
}

fn message(body: &Value) -> &Value {
    &body[CONCUR_ERROR]["messages"][0]
}

#[tokio::test]
async fn the_documented_bulk_fixture_answers_202_then_per_extension_results() {
    let v4 = V4::start().await;
    v4.sim.seed_users(vec![v1_user(99).with("EmpId", "E099")]);
    let e099 = v4.uuid_of("E099").await;
    let mut create = user(&v4.sim, "E123", json!({}));
    create[SPEND]["reimbursementCurrency"] = json!("USDX");
    let (status, accepted) = v4
        .call(
            "POST",
            "/profile/v4/Bulk/",
            Some(json!({"schemas": [BULK], "failOnErrors": 1, "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "emp-E123", "data": create},
                {"method": "PATCH", "path": format!("/Users/{e099}"), "bulkId": "emp-E099", "data": {"schemas": [PATCH],
                  "Operations": [{"op": "replace", "path": "active", "value": false},
                                 {"op": "replace", "path": format!("{ENT}:terminationDate"), "value": "2026-09-30T00:00:00Z"}]}}]})),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(
        accepted["schemas"],
        json!(["urn:ietf:params:scim:schemas:extension:concur:2.0:Provision:Status"])
    );
    assert_eq!(
        accepted["operationsCount"],
        json!({"total": 2, "success": 0, "failed": 0, "pending": 2})
    );
    assert_eq!(
        accepted["status"],
        json!({"completed": false, "success": null})
    );
    assert_eq!(accepted["meta"]["provisionType"], "Bulk");
    assert_eq!(accepted["meta"]["resourceType"], "ProvisionRequest");
    let id = accepted["id"].as_str().unwrap();
    assert_eq!(
        accepted["meta"]["location"],
        format!("{}/profile/v4/provisions/{id}/status", v4.sim.base_url())
    );

    let (status, failed) = v4
        .get(&format!(
            "/profile/v4/provisions/{id}/status?attributes=operations&state=failed"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        failed["operationsCount"],
        json!({"total": 2, "success": 1, "failed": 1, "pending": 0})
    );
    assert_eq!(
        failed["status"],
        json!({"completed": true, "success": false})
    );
    assert_eq!(
        (
            &failed["totalResults"],
            &failed["itemsPerPage"],
            &failed["startIndex"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
    let op = &failed["operations"][0];
    assert_eq!(op["bulkId"], "emp-E123");
    assert_eq!(
        op["status"],
        json!({"completed": true, "success": false, "code": "400"})
    );
    let new_id = op["resource"]["id"].as_str().unwrap();
    assert_eq!(ext(op, CORE)["status"]["result"], "success");
    let spend = ext(op, SPEND);
    assert_eq!(
        spend["status"],
        json!({"completed": true, "success": false, "code": "400", "result": "error"})
    );
    assert_eq!(
        spend["messages"][0],
        json!({"code": "INVALID_VALUE", "message": format!("Invalid '{SPEND}:reimbursementCurrency' Size"),
               "schemaPath": format!("{SPEND}:reimbursementCurrency"), "type": "error"})
    );
    assert_eq!(ext(op, ROLE)["status"]["result"], "no-op");

    // A spend failure keeps the identity; the spend data is not applied.
    let (status, created) = v4
        .get(&format!("/profile/identity/v4.1/Users/{new_id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(created[ENT]["employeeNumber"], "E123");
    assert!(v4.sim.v4_user("E123").unwrap().get(SPEND).is_none());
    // The deactivation landed, in both views.
    let e = v4.sim.v4_user("E099").unwrap();
    assert_eq!(e["active"], false);
    assert_eq!(e[ENT]["terminationDate"], "2026-09-30T00:00:00Z");
    let v1 = v4.sim.users();
    assert_eq!(
        v1.iter()
            .find(|u| u.emp_id() == "E099")
            .unwrap()
            .get("Active"),
        Some("N")
    );
}

#[tokio::test]
async fn both_prefixes_serve_users_bulk_and_status() {
    let v4 = V4::start().await;
    let (status, created) = v4
        .call(
            "POST",
            "/provisioning/v4/Users",
            Some(user(&v4.sim, "E1", json!({}))),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let pid = created["meta"]["provisionId"].as_str().unwrap();
    assert_eq!(
        created["meta"]["statusUrl"],
        format!(
            "{}/provisioning/v4/provisions/{pid}/status",
            v4.sim.base_url()
        )
    );
    assert_eq!(
        created["meta"]["location"],
        format!(
            "{}/profile/identity/v4/Users/{}",
            v4.sim.base_url(),
            created["id"].as_str().unwrap()
        )
    );
    assert!(created.get(SPEND).is_none(), "the answer is the identity");
    for prefix in ["/profile/v4", "/provisioning/v4"] {
        let (status, body) = v4
            .get(&format!(
                "{prefix}/provisions/{pid}/status?attributes=operations"
            ))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["meta"]["provisionType"], "User");
        assert_eq!(body["status"]["success"], true);
        assert_eq!(
            ext(&body["operations"][0], SPEND)["status"]["result"],
            "success"
        );
        assert!(body["meta"]["location"].as_str().unwrap().contains(prefix));
    }
    let (status, body) = v4
        .call(
            "POST",
            "/provisioning/v4/Bulk",
            Some(json!({"schemas": [BULK], "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "b2", "data": user(&v4.sim, "E2", json!({}))}]})),
        )
        .await;
    assert_eq!(status, 202);
    assert!(
        body["meta"]["location"]
            .as_str()
            .unwrap()
            .contains("/provisioning/v4/provisions/")
    );
    let v = v4.sim.v4_user("E1").unwrap();
    assert_eq!(v[SPEND]["locale"], "en-US");
    assert_eq!(
        v[SPEND]["customData"],
        json!([{"id": "orgUnit1", "value": "RND"}])
    );
    let v1 = v4.sim.users();
    let e1 = v1.iter().find(|u| u.emp_id() == "E1").unwrap();
    assert_eq!(e1.get("LocaleName"), Some("en_US"));
    assert_eq!(e1.get("OrgUnit1"), Some("RND"));
    assert_eq!(e1.get("ExpenseUser"), Some("Y"));
    assert!(v4.sim.v4_user("E2").is_some());
}

#[tokio::test]
async fn bulk_limits_bulk_ids_and_put_ids_refuse_the_request() {
    let v4 = V4::start().await;
    let op = |i: usize| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": user(&v4.sim, &format!("E{i}"), json!({}))});
    let bulk = |ops: Vec<Value>| json!({"schemas": [BULK], "Operations": ops});

    let (status, body) = v4
        .call(
            "POST",
            "/profile/v4/Bulk",
            Some(bulk((0..101).map(op).collect())),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "400");
    assert_eq!(body["scimType"], "tooMany");
    assert_eq!(
        message(&body)["message"],
        "Limited to 100 operations or record size of 400KB per request"
    );
    let mut big = op(1);
    big["data"][SPEND]["customData"] = json!(
        (1..=21)
            .map(|n| json!({"id": format!("custom{n}"), "value": "x".repeat(48)}))
            .collect::<Vec<_>>()
    );
    big["data"]["title"] = json!("t".repeat(255));
    let padded: Vec<Value> = (0..100)
        .map(|i| {
            let mut o = big.clone();
            o["bulkId"] = json!(format!("b{i}"));
            o["data"]["nickName"] = json!("n".repeat(60));
            o["data"]["addresses"] = json!([{"type": "work", "streetAddress": "s".repeat(2500)}]);
            o
        })
        .collect();
    let (status, body) = v4
        .call("POST", "/profile/v4/Bulk", Some(bulk(padded)))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["scimType"], "tooLarge");
    let log = v4.sim.requests();
    let sizes: Vec<(Option<usize>, Option<usize>)> = log
        .iter()
        .filter(|r| r.path.ends_with("/bulk"))
        .map(|r| (r.records, r.body_bytes))
        .collect();
    assert_eq!(sizes[0].0, Some(101));
    assert_eq!(sizes[1].0, Some(100));
    assert!(sizes[1].1.unwrap() > 400 * 1024, "{sizes:?}");

    let mut no_bulk_id = op(1);
    no_bulk_id.as_object_mut().unwrap().remove("bulkId");
    let (status, body) = v4
        .call(
            "POST",
            "/profile/v4/Bulk",
            Some(bulk(vec![op(0), no_bulk_id])),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(message(&body)["schemaPath"], "Operations[1].bulkId");
    assert!(
        message(&body)["message"]
            .as_str()
            .unwrap()
            .contains("bulkId is required for POST")
    );
    let (status, _) = v4
        .call("POST", "/profile/v4/Bulk", Some(bulk(vec![op(0), op(0)])))
        .await;
    assert_eq!(status, 400, "a bulkId used twice");

    v4.sim.seed_users(vec![v1_user(7)]);
    let id = v4.uuid_of("E00007").await;
    let mut put = user(
        &v4.sim,
        "E00007",
        json!({"id": "0d0e0f00-0000-4000-8000-000000000000"}),
    );
    let put_op =
        |data: Value| json!({"method": "PUT", "path": format!("/Users/{id}"), "data": data});
    let (status, body) = v4
        .call(
            "POST",
            "/profile/v4/Bulk",
            Some(bulk(vec![put_op(put.clone())])),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        message(&body)["message"]
            .as_str()
            .unwrap()
            .contains("data.id")
    );
    put["id"] = json!(id);
    put["userName"] = json!("user7@example.com");
    let (_, done) = v4.bulk(json!([put_op(put)])).await;
    assert_eq!(done["status"]["success"], true, "{done}");
    let (status, _) = v4
        .call(
            "POST",
            "/profile/v4/Bulk",
            Some(bulk(vec![
                json!({"method": "DELETE", "path": format!("/Users/{id}")}),
            ])),
        )
        .await;
    assert_eq!(status, 400, "DELETE is not a Bulk method by default");
    let (status, _) = v4
        .call(
            "POST",
            "/profile/v4/Bulk",
            Some(json!({"schemas": ["x"], "Operations": [op(1)]})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(v4.sim.deleted_users().is_empty());
}

#[tokio::test]
async fn uniqueness_and_attribute_rules_answer_with_concur_texts() {
    let v4 = V4::start().await;
    v4.sim.seed_users(vec![v1_user(1)]);
    v4.sim.reserve_user_names(&["taken@elsewhere.com"]);
    let check = |status: u16, body: &Value, want_status: u16, text: &str| {
        assert_eq!(status, want_status, "{body}");
        assert_eq!(body["status"], want_status.to_string());
        assert!(
            message(body)["message"].as_str().unwrap().contains(text),
            "{body}"
        );
    };
    let post = |u: Value| v4.call("POST", "/profile/v4/Users", Some(u));
    let (s, b) = post(user(&v4.sim, "E00001", json!({}))).await;
    check(
        s,
        &b,
        409,
        "Principal with lookup type 'companyId,employeeNumber' with provided value already exists",
    );
    assert_eq!(b["scimType"], "uniqueness");
    let (s, b) = post(user(
        &v4.sim,
        "E2",
        json!({"userName": "USER1@example.com"}),
    ))
    .await;
    check(
        s,
        &b,
        409,
        "Principal with lookup type 'userName' with provided value already exists",
    );
    let (s, b) = post(user(
        &v4.sim,
        "E2",
        json!({"userName": "Taken@Elsewhere.com"}),
    ))
    .await;
    check(s, &b, 409, "'userName'");
    let (s, b) = post(user(&v4.sim, "E2", json!({"externalId": "X1"}))).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = post(user(&v4.sim, "E3", json!({"externalId": "X1"}))).await;
    check(s, &b, 409, "'companyId,externalId'");
    for (extra, text) in [
        (json!({"userName": "o'brien@example.com"}), "userName"),
        (json!({"userName": "a+b@example.com"}), "userName"),
        (
            json!({"name": {"givenName": "x".repeat(33), "familyName": "L"}}),
            "name.givenName",
        ),
        (
            json!({"name": {"givenName": "A", "familyName": "L", "middleInitial": "AB"}}),
            "name.middleInitial",
        ),
        (json!({"name": {"givenName": "A"}}), "name.familyName"),
        (
            json!({"emails": [{"value": format!("{}@x.com", "e".repeat(250)), "type": "work"}]}),
            "emails.value",
        ),
        (
            json!({"emails": [{"value": "a@x", "type": "work"}, {"value": "b@x", "type": "work"}]}),
            "emails.type",
        ),
        (
            json!({ENT: {"employeeNumber": "E".repeat(49), "companyId": v4.sim.company_uuid()}}),
            "employeeNumber",
        ),
        (json!({ENT: {"employeeNumber": "E9"}}), "companyId"),
        (
            json!({ENT: {"employeeNumber": "E9", "companyId": "00000000-0000-4000-8000-000000000000"}}),
            "companyId",
        ),
        (
            json!({ENT: {"employeeNumber": "E9", "companyId": v4.sim.company_uuid(), "terminationDate": "2026-09-30"}}),
            "terminationDate",
        ),
        (json!({"entitlements": ["Golf"]}), "entitlements"),
        (json!({"nickname2": "x"}), "nickname2"),
        (json!({"active": "yes"}), "active"),
    ] {
        let (s, b) = post(user(&v4.sim, "E9", extra.clone())).await;
        assert_eq!(s, 400, "{extra} → {b}");
        assert!(
            message(&b)["schemaPath"].as_str().unwrap().contains(text)
                || message(&b)["message"].as_str().unwrap().contains(text),
            "{extra} → {b}"
        );
    }
    // Spend rules are checked when the provision runs, and fail that extension alone.
    let bad_spend = [
        ("locale", json!("en_US")),
        ("stateProvince", json!("WAS")),
        ("ledgerCode", json!("L".repeat(21))),
        ("country", json!("USA")),
    ];
    for (i, (k, v)) in bad_spend.iter().enumerate() {
        let mut u = user(&v4.sim, &format!("S{i}"), json!({}));
        u[SPEND][k] = v.clone();
        let (_, done) = v4
            .bulk(json!([{"method": "POST", "path": "/Users", "bulkId": "s", "data": u}]))
            .await;
        let op = &done["operations"][0];
        assert_eq!(ext(op, CORE)["status"]["result"], "success");
        assert_eq!(ext(op, SPEND)["status"]["result"], "error", "{k}");
        assert_eq!(
            ext(op, SPEND)["messages"][0]["schemaPath"],
            format!("{SPEND}:{k}")
        );
    }
    // companyId is immutable; testEmployee is set only at creation.
    let id = v4.uuid_of("E00001").await;
    let (s, b) = v4
        .call("PATCH", &format!("/profile/v4/Users/{id}"), Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": format!("{ENT}:companyId"), "value": "00000000-0000-4000-8000-000000000000"}]})))
        .await;
    assert_eq!((s, &b["scimType"]), (400, &json!("mutability")));
    let (_, b) = v4
        .call(
            "PATCH",
            &format!("/profile/v4/Users/{id}"),
            Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": format!("{SPEND}:testEmployee"), "value": true}]})),
        )
        .await;
    let done = v4.status_of(&json!({"id": b["meta"]["provisionId"]})).await;
    assert_eq!(
        ext(&done["operations"][0], SPEND)["messages"][0]["message"],
        "testEmployee can be set only at creation"
    );
    // A Bulk's uniqueness failure is that operation's.
    let (_, done) = v4
        .bulk(json!([
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": user(&v4.sim, "D1", json!({}))},
            {"method": "POST", "path": "/Users", "bulkId": "b", "data": user(&v4.sim, "D1", json!({"userName": "d1b@example.com"}))}]))
        .await;
    assert_eq!(done["operationsCount"]["failed"], 1);
    let op = &done["operations"][1];
    assert_eq!(op["status"]["code"], "409");
    assert_eq!(ext(op, SPEND)["status"]["result"], "not-processed");
}

#[tokio::test]
async fn v1_users_are_listed_by_identity_v41_with_cursors_and_mapped_views() {
    let v4 = V4::start().await;
    v4.sim.seed_users((0..2500).map(v1_user).collect());
    let mut seen = std::collections::HashSet::new();
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/profile/identity/v4.1/Users?count=1000&cursor={c}"),
            None => "/profile/identity/v4.1/Users?count=1000".to_string(),
        };
        let (status, body) = v4.get(&path).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["totalResults"], 2500);
        assert!(body.get("startIndex").is_none());
        let items = body["Resources"].as_array().unwrap();
        assert_eq!(body["itemsPerPage"], items.len());
        pages.push(items.len());
        for u in items {
            assert!(seen.insert(u["id"].as_str().unwrap().to_string()));
        }
        match body.get("nextCursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, vec![1000, 1000, 500]);
    assert_eq!(seen.len(), 2500);
    let (_, all) = v4
        .get("/profile/identity/v4.1/Users?count=1000&cursor=zz")
        .await;
    assert_eq!(all["status"], "400");
    let (status, _) = v4.get("/profile/identity/v4.1/Users?count=1001").await;
    assert_eq!(status, 400);
    let (_, small) = v4.get("/profile/identity/v4.1/Users").await;
    assert_eq!(small["itemsPerPage"], 100, "count defaults to 100");

    // The v1 elements as v4 attributes.
    let id = v4.uuid_of("E00042").await;
    let (_, u) = v4.get(&format!("/profile/identity/v4/Users/{id}")).await;
    assert_eq!(u["userName"], "user42@example.com");
    assert_eq!(u["name"]["familyName"], "Lovelace42");
    assert_eq!(
        u["emails"],
        json!([{"value": "user42@example.com", "type": "work"}])
    );
    assert_eq!(u["entitlements"], json!(["Expense"]));
    assert_eq!(u[ENT]["companyId"], v4.sim.company_uuid());
    assert_eq!(u["active"], true);
    let (status, s) = v4.get(&format!("/profile/spend/v4.1/Users/{id}")).await;
    assert_eq!(status, 200);
    let spend = &s[SPEND];
    assert_eq!(
        (
            &spend["locale"],
            &spend["country"],
            &spend["stateProvince"],
            &spend["reimbursementCurrency"],
            &spend["ledgerCode"]
        ),
        (
            &json!("en-US"),
            &json!("US"),
            &json!("WA"),
            &json!("USD"),
            &json!("DEFAULT")
        )
    );
    assert_eq!(
        spend["customData"],
        json!([{"id": "orgUnit1", "value": "RND"}, {"id": "custom2", "value": "two"}])
    );
    assert_eq!(s[ROLE]["roles"], json!([{"roleName": "EXP_APPROVER"}]));
    let (_, list) = v4
        .get("/profile/spend/v4.1/Users?startIndex=2401&count=100")
        .await;
    assert_eq!(list["itemsPerPage"], 100);
    let (status, _) = v4.get("/profile/spend/v4.1/Users?count=101").await;
    assert_eq!(status, 400);
    // Identity v4: count defaults to 10, at most 100; startIndex pages.
    let (_, page) = v4.get("/profile/identity/v4/Users?startIndex=2495").await;
    assert_eq!(
        (&page["itemsPerPage"], &page["startIndex"]),
        (&json!(6), &json!(2495))
    );
    let (_, page) = v4.get("/profile/identity/v4/Users").await;
    assert_eq!(page["itemsPerPage"], 10);
    let (status, _) = v4.get("/profile/identity/v4/Users?count=101").await;
    assert_eq!(status, 400);
    // Attribute selection.
    let (_, sel) = v4
        .get(&format!(
            "/profile/identity/v4.1/Users?count=1&attributes=userName,{ENT}:employeeNumber"
        ))
        .await;
    let first = &sel["Resources"][0];
    assert!(first.get("name").is_none() && first.get("emails").is_none());
    assert_eq!(first[ENT], json!({"employeeNumber": "E00000"}));
    assert!(first["id"].is_string() && first["userName"].is_string());
}

#[tokio::test]
async fn identity_look_ups_and_search_filters() {
    let v4 = V4::start().await;
    v4.sim.seed_users((0..30).map(v1_user).collect());
    let (_, body) = v4
        .call(
            "POST",
            "/profile/v4/Users",
            Some(user(
                &v4.sim,
                "X1",
                json!({"externalId": "ext-1", "active": false}),
            )),
        )
        .await;
    let x1 = body["id"].as_str().unwrap().to_string();
    // Identity v4 filter: both employeeNumber spellings, userName, externalId.
    for f in [
        "employeeNumber eq \"X1\"".to_string(),
        format!("{ENT}:employeeNumber eq \"X1\""),
        "userName eq \"X1@EXAMPLE.com\"".to_string(),
        "externalId eq \"ext-1\"".to_string(),
    ] {
        let (status, b) = v4
            .get(&format!(
                "/profile/identity/v4/Users?filter={}",
                urlencode(&f)
            ))
            .await;
        assert_eq!(status, 200, "{f}: {b}");
        assert_eq!(b["totalResults"], 1, "{f}");
        assert_eq!(b["Resources"][0]["id"], x1.as_str());
    }
    let (status, b) = v4
        .get(&format!(
            "/profile/identity/v4/Users?filter={}",
            urlencode("userName co \"x\"")
        ))
        .await;
    assert_eq!(status, 400);
    assert_eq!(message(&b)["code"], "INVALID_INPUT");

    let v = &v4;
    let search = |filter: Value| async move {
        v.call(
            "POST",
            "/profile/identity/v4.1/Users/.search",
            Some(json!({"schemas": [SEARCH], "filter": filter, "count": 1000})),
        )
        .await
    };
    let count = |b: &Value| b["totalResults"].as_u64().unwrap();
    let (_, b) = search(json!(format!(
        "{ENT}:employeeNumber eq \"E00003\" or userName eq \"user4@example.com\""
    )))
    .await;
    assert_eq!(count(&b), 2);
    let (_, b) = search(json!(format!("id eq {x1}"))).await;
    assert_eq!(count(&b), 1);
    let (_, b) = search(json!("active eq false")).await;
    assert_eq!(count(&b), 1);
    let (_, b) = search(json!(
        "active eq true and (externalId eq \"ext-1\" or userName eq \"user5@example.com\")"
    ))
    .await;
    assert_eq!(count(&b), 1);
    let (_, b) = search(json!("meta.lastModified gt \"2000-01-01T00:00:00Z\"")).await;
    assert_eq!(count(&b), 31);
    let (_, b) = search(json!("meta.lastModified gt \"2999-01-01T00:00:00Z\"")).await;
    assert_eq!(count(&b), 0);
    for bad in [
        "name.familyName eq \"x\"",
        "userName sw \"u\"",
        "not (active eq true)",
        "userName eq",
    ] {
        let (status, b) = search(json!(bad)).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(message(&b)["code"], "INVALID_INPUT", "{bad}");
    }
    for body in [
        json!({"filter": "active eq true"}),
        json!({"schemas": [], "filter": "active eq true"}),
    ] {
        let (status, b) = v4
            .call("POST", "/profile/identity/v4.1/Users/.search", Some(body))
            .await;
        assert_eq!(status, 400);
        assert_eq!(message(&b)["code"], "INVALID_INPUT");
    }
    // .search pages by cursor too.
    let (_, b) = v4
        .call("POST", "/profile/identity/v4.1/Users/.search", Some(json!({"schemas": [SEARCH], "filter": "active eq true", "count": 20, "attributes": ["userName"]})))
        .await;
    assert_eq!((count(&b), &b["itemsPerPage"]), (30, &json!(20)));
    let next = b["nextCursor"].as_str().unwrap();
    let (_, b) = v4
        .call("POST", "/profile/identity/v4.1/Users/.search", Some(json!({"schemas": [SEARCH], "filter": "active eq true", "count": 20, "cursor": next})))
        .await;
    assert_eq!(b["itemsPerPage"], 10);
    assert!(b.get("nextCursor").is_none());
    let (_, b) = v4
        .call(
            "POST",
            "/profile/identity/v4.1/Users/.search",
            Some(json!({"schemas": [SEARCH], "filter": "active eq true", "count": 30})),
        )
        .await;
    assert!(
        b.get("nextCursor").is_none(),
        "totalResults == itemsPerPage"
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn search_lag_hides_new_writes_from_search_but_not_from_get_by_id() {
    let v4 = V4::with(SimConfig {
        v4: V4Settings {
            search_lag: Duration::from_secs(60),
            ..V4Settings::default()
        },
        ..SimConfig::default()
    })
    .await;
    v4.sim.seed_users(vec![v1_user(1)]);
    let (_, created) = v4
        .call(
            "POST",
            "/profile/v4/Users",
            Some(user(&v4.sim, "L1", json!({}))),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let by_name = || async {
        v4.call(
            "POST",
            "/profile/identity/v4.1/Users/.search",
            Some(json!({"schemas": [SEARCH], "filter": "userName eq \"l1@example.com\""})),
        )
        .await
        .1["totalResults"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(by_name().await, 0);
    let (_, list) = v4.get("/profile/identity/v4.1/Users").await;
    assert_eq!(list["totalResults"], 1, "the seeded user only");
    assert_eq!(
        v4.get(&format!("/profile/identity/v4.1/Users/{id}"))
            .await
            .0,
        200
    );
    assert_eq!(
        v4.uuid_of("L1").await,
        id,
        "the v4 filter look-up is not lagged"
    );
    v4.sim.advance_clock(Duration::from_secs(61));
    assert_eq!(by_name().await, 1);
    // An update is seen by search as the version before it, until the lag passes.
    let e1 = v4.uuid_of("E00001").await;
    v4.call(
        "PATCH",
        &format!("/profile/v4/Users/{e1}"),
        Some(json!({"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "userName", "value": "renamed@example.com"}]})),
    )
    .await;
    let (_, b) = v4
        .call(
            "POST",
            "/profile/identity/v4.1/Users/.search",
            Some(json!({"schemas": [SEARCH], "filter": "active eq true"})),
        )
        .await;
    let names: Vec<&str> = b["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"user1@example.com") && !names.contains(&"renamed@example.com"),
        "{names:?}"
    );
    v4.sim.advance_clock(Duration::from_secs(61));
    let (_, b) = v4
        .call(
            "POST",
            "/profile/identity/v4.1/Users/.search",
            Some(json!({"schemas": [SEARCH], "filter": "userName eq \"renamed@example.com\""})),
        )
        .await;
    assert_eq!(b["totalResults"], 1);
}

/// PATCH `/Users/{id}` with `ops` and waits for its provision; returns the status.
async fn patch(v4: &V4, id: &str, ops: Value) -> Value {
    let (status, body) = v4
        .call(
            "PATCH",
            &format!("/profile/v4/Users/{id}"),
            Some(json!({"schemas": [PATCH], "Operations": ops})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.get("meta")
            .and_then(|m| m.get("provisionId"))
            .is_some()
    );
    v4.status_of(&json!({"id": body["meta"]["provisionId"]}))
        .await
}

#[tokio::test]
async fn patch_semantics_filtered_custom_data_replace_all_and_deactivation() {
    let v4 = V4::start().await;
    v4.sim
        .seed_users(vec![v1_user(1).with("Custom3", "three"), v1_user(2)]);
    let id = v4.uuid_of("E00001").await;
    let custom = |path: &str| format!("{SPEND}:customData[id eq \"{path}\"].value");
    let done = patch(&v4, &id, json!([
        {"op": "replace", "path": custom("custom2"), "value": "TWO"},
        {"op": "add", "path": custom("custom5"), "value": "five"},
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "new1@example.com"},
        {"op": "add", "path": "emails", "value": [{"value": "home1@example.com", "type": "home"}]},
    ]))
    .await;
    let op = &done["operations"][0];
    assert_eq!(ext(op, CORE)["status"]["result"], "success");
    assert_eq!(ext(op, SPEND)["status"]["result"], "success");
    assert_eq!(ext(op, ROLE)["status"]["result"], "no-op");
    let u = v4.sim.v4_user("E00001").unwrap();
    assert_eq!(
        u[SPEND]["customData"],
        json!([{"id": "orgUnit1", "value": "RND"}, {"id": "custom2", "value": "TWO"}, {"id": "custom3", "value": "three"}, {"id": "custom5", "value": "five"}])
    );
    assert_eq!(u["emails"].as_array().unwrap().len(), 2);
    let v1 = v4.sim.users();
    let e1 = v1.iter().find(|u| u.emp_id() == "E00001").unwrap();
    assert_eq!(
        (e1.get("Custom2"), e1.get("Custom5"), e1.get("EmailAddress")),
        (Some("TWO"), Some("five"), Some("new1@example.com"))
    );

    // Path-less replace of a multi-valued attribute replaces every value.
    patch(&v4, &id, json!([{"op": "replace", "value": {SPEND: {"customData": [{"id": "custom1", "value": "only"}]}}}])).await;
    let u = v4.sim.v4_user("E00001").unwrap();
    assert_eq!(
        u[SPEND]["customData"],
        json!([{"id": "custom1", "value": "only"}])
    );
    assert_eq!(
        u[SPEND]["ledgerCode"], "DEFAULT",
        "other spend attributes stay"
    );
    // So does a replace naming the attribute without a filter.
    patch(&v4, &id, json!([{"op": "replace", "path": format!("{SPEND}:customData"), "value": [{"id": "orgUnit2", "value": "o2"}]}])).await;
    assert_eq!(
        v4.sim.v4_user("E00001").unwrap()[SPEND]["customData"],
        json!([{"id": "orgUnit2", "value": "o2"}])
    );

    // Approver: by employee number, who must hold EXP_APPROVER.
    let done = patch(&v4, &id, json!([{"op": "add", "path": format!("{APPROVER}:report"), "value": [{"approver": {"employeeNumber": "E00002"}, "primary": true}]}])).await;
    assert_eq!(
        ext(&done["operations"][0], APPROVER)["status"]["result"],
        "success"
    );
    let e2 = v4.uuid_of("E00002").await;
    assert_eq!(
        v4.sim.v4_user("E00001").unwrap()[APPROVER]["report"],
        json!([{"approver": {"employeeNumber": "E00002", "value": e2}, "primary": true}])
    );
    let v1 = v4.sim.users();
    assert_eq!(
        v1.iter()
            .find(|u| u.emp_id() == "E00001")
            .unwrap()
            .get("ExpenseApproverEmployeeID"),
        Some("E00002")
    );
    patch(
        &v4,
        &e2,
        json!([{"op": "remove", "path": format!("{ROLE}:roles[roleName eq \"EXP_APPROVER\"]")}]),
    )
    .await;
    let e3 = v4
        .call(
            "POST",
            "/profile/v4/Users",
            Some(user(&v4.sim, "E3", json!({}))),
        )
        .await
        .1;
    let done = patch(&v4, e3["id"].as_str().unwrap(), json!([{"op": "add", "path": format!("{APPROVER}:report"), "value": [{"approver": {"value": e2}, "primary": true}]}])).await;
    let approver = ext(&done["operations"][0], APPROVER);
    assert_eq!(approver["status"]["result"], "error");
    assert!(
        approver["messages"][0]["message"]
            .as_str()
            .unwrap()
            .contains("EXP_APPROVER")
    );

    // Deactivation with a termination date, then reactivation without it.
    patch(&v4, &id, json!([
        {"op": "replace", "path": "active", "value": false},
        {"op": "replace", "path": format!("{ENT}:terminationDate"), "value": "2026-09-30T00:00:00Z"}])).await;
    let (_, u) = v4.get(&format!("/profile/identity/v4.1/Users/{id}")).await;
    assert_eq!(
        (&u["active"], &u[ENT]["terminationDate"]),
        (&json!(false), &json!("2026-09-30T00:00:00Z"))
    );
    patch(
        &v4,
        &id,
        json!([
        {"op": "replace", "path": "active", "value": true},
        {"op": "remove", "path": format!("{ENT}:terminationDate")}]),
    )
    .await;
    let (_, u) = v4.get(&format!("/profile/identity/v4.1/Users/{id}")).await;
    assert_eq!(u["active"], true);
    assert!(u[ENT].get("terminationDate").is_none());
    // A PATCH changing nothing is a no-op; an unknown id is 404.
    let done = patch(
        &v4,
        &id,
        json!([{"op": "replace", "path": "active", "value": true}]),
    )
    .await;
    assert_eq!(
        ext(&done["operations"][0], CORE)["status"]["result"],
        "no-op"
    );
    let (status, _) = v4
        .call("PATCH", "/profile/v4/Users/0d0e0f00-0000-4000-8000-000000000000", Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": true}]})))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn stuck_provisions_fail_at_the_timeout_and_expire_after_retention() {
    let v4 = V4::with(SimConfig {
        v4: V4Settings {
            provision_timeout: Duration::from_millis(1500),
            ..V4Settings::default()
        },
        ..SimConfig::default()
    })
    .await;
    v4.sim.stick(&["E5"]);
    let ops: Vec<Value> = ["E4", "E5", "E6"]
        .iter()
        .map(|e| json!({"method": "POST", "path": "/Users", "bulkId": e, "data": user(&v4.sim, e, json!({}))}))
        .collect();
    let (accepted, status) = v4.bulk(json!(ops)).await;
    assert_eq!(
        status["operationsCount"],
        json!({"total": 3, "success": 1, "failed": 0, "pending": 2})
    );
    assert_eq!(
        status["status"],
        json!({"completed": false, "success": null})
    );
    assert_eq!(
        status["operations"][1]["status"],
        json!({"completed": false, "success": null})
    );
    assert!(v4.sim.v4_user("E4").is_some() && v4.sim.v4_user("E6").is_none());
    let (_, pending) = v4
        .get(&format!(
            "/profile/v4/provisions/{}/status?attributes=operations&state=pending",
            accepted["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(pending["totalResults"], 2);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let status = v4.status_of(&accepted).await;
    assert_eq!(
        status["operationsCount"],
        json!({"total": 3, "success": 1, "failed": 2, "pending": 0})
    );
    assert_eq!(
        status["status"],
        json!({"completed": true, "success": false})
    );
    let op = &status["operations"][1];
    assert_eq!(ext(op, CORE)["status"]["result"], "not-processed");
    assert_eq!(ext(op, CORE)["messages"][0]["code"], "PROVISION_TIMEOUT");
    assert!(v4.sim.v4_user("E5").is_none());

    // With the default timeout, the simulated clock gets there too; status is kept 7 days.
    v4.sim.set_v4_settings(V4Settings::default());
    let (accepted, status) = v4
        .bulk(json!([{"method": "POST", "path": "/Users", "bulkId": "b", "data": user(&v4.sim, "E5", json!({"userName": "e5b@example.com"}))}]))
        .await;
    assert_eq!(status["status"]["completed"], false);
    v4.sim.advance_clock(Duration::from_secs(119 * 60));
    assert_eq!(v4.status_of(&accepted).await["status"]["completed"], false);
    v4.sim.advance_clock(Duration::from_secs(2 * 60));
    let status = v4.status_of(&accepted).await;
    assert_eq!(
        status["status"],
        json!({"completed": true, "success": false})
    );
    assert!(
        ext(&status["operations"][0], CORE)["messages"][0]["message"]
            .as_str()
            .unwrap()
            .contains("120 minutes")
    );
    v4.sim.advance_clock(Duration::from_secs(7 * 24 * 3600));
    let (code, body) = v4
        .get(&format!(
            "/profile/v4/provisions/{}/status",
            accepted["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(code, 404);
    assert_eq!(body["status"], "404");
}

#[tokio::test]
async fn provisions_wait_for_their_delay_on_the_simulated_clock() {
    let v4 = V4::with(SimConfig {
        v4: V4Settings {
            provision_delay: Duration::from_secs(30),
            ..V4Settings::default()
        },
        ..SimConfig::default()
    })
    .await;
    let (accepted, status) = v4
        .bulk(json!([{"method": "POST", "path": "/Users", "bulkId": "a", "data": user(&v4.sim, "A1", json!({}))}]))
        .await;
    assert_eq!(status["operationsCount"]["pending"], 1);
    assert_eq!(
        ext(&status["operations"][0], CORE)["status"]["result"],
        "processing"
    );
    assert!(v4.sim.v4_user("A1").is_none());
    v4.sim.advance_clock(Duration::from_secs(30));
    let status = v4.status_of(&accepted).await;
    assert_eq!(
        status["status"],
        json!({"completed": true, "success": true})
    );
    assert!(status["meta"]["completed"].is_string());
    assert_eq!(v4.sim.provisions().len(), 1);
}

#[tokio::test]
async fn a_transient_spend_failure_keeps_the_identity_and_a_later_patch_repairs_it() {
    let v4 = V4::start().await;
    v4.sim.fail_spend(&["T1"], 1);
    let (_, done) = v4
        .bulk(json!([{"method": "POST", "path": "/Users", "bulkId": "t1", "data": user(&v4.sim, "T1", json!({
            ROLE: {"roles": [{"roleName": "EXP_APPROVER"}]}}))}]))
        .await;
    let op = &done["operations"][0];
    assert_eq!(op["status"]["success"], false);
    assert_eq!(ext(op, CORE)["status"]["result"], "success");
    assert_eq!(ext(op, SPEND)["status"]["code"], "503");
    assert_eq!(ext(op, SPEND)["messages"][0]["code"], "SERVICE_UNAVAILABLE");
    assert_eq!(ext(op, ROLE)["status"]["result"], "not-processed");
    let id = op["resource"]["id"].as_str().unwrap();
    let u = v4.sim.v4_user("T1").unwrap();
    assert!(u.get(SPEND).is_none() && u.get(ROLE).is_none());
    let done = patch(
        &v4,
        id,
        json!([{"op": "replace", "value": {
        SPEND: {"country": "US", "locale": "en-US", "reimbursementCurrency": "USD"}}}]),
    )
    .await;
    let op = &done["operations"][0];
    assert_eq!(op["status"]["success"], true);
    assert_eq!(ext(op, CORE)["status"]["result"], "no-op");
    assert_eq!(ext(op, SPEND)["status"]["result"], "success");
    assert_eq!(
        v4.sim.v4_user("T1").unwrap()[SPEND]["reimbursementCurrency"],
        "USD"
    );

    // The rate form draws per operation from the seeded RNG.
    v4.sim.set_faults(Faults {
        rate_spend_failure: 1.0,
        ..Faults::default()
    });
    let (_, done) = v4
        .bulk(json!([{"method": "POST", "path": "/Users", "bulkId": "t2", "data": user(&v4.sim, "T2", json!({}))}]))
        .await;
    assert_eq!(
        ext(&done["operations"][0], SPEND)["status"]["result"],
        "error"
    );
}

#[tokio::test]
async fn deletes_are_hard_and_recorded() {
    let v4 = V4::start().await;
    v4.sim.seed_users(vec![v1_user(1)]);
    let id = v4.uuid_of("E00001").await;
    let (status, body) = v4
        .call("DELETE", &format!("/profile/v4/Users/{id}"), None)
        .await;
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(
        v4.get(&format!("/profile/identity/v4.1/Users/{id}"))
            .await
            .0,
        404
    );
    assert!(v4.sim.users().is_empty());
    let deleted = v4.sim.deleted_users();
    assert_eq!(deleted.len(), 1);
    assert_eq!(
        (deleted[0].id.as_str(), deleted[0].employee_number.as_str()),
        (id.as_str(), "E00001")
    );
    assert!(
        v4.sim
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.status == 204)
    );
    let listed: Value = http()
        .get(format!("{}/_sim/v4/deleted", v4.sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["employee_number"], "E00001");
    // The employee number and userName are free again.
    let (status, _) = v4
        .call(
            "POST",
            "/profile/v4/Users",
            Some(user(
                &v4.sim,
                "E00001",
                json!({"userName": "user1@example.com"}),
            )),
        )
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn fault_injection_reaches_the_v4_routes() {
    let v4 = V4::start().await;
    let bulk = |e: &str| json!({"schemas": [BULK], "Operations": [{"method": "POST", "path": "/Users", "bulkId": e, "data": user(&v4.sim, e, json!({}))}]});
    for (mode, want) in [
        (RetryAfterMode::Seconds(3), Some("3")),
        (RetryAfterMode::Zero, Some("0")),
        (RetryAfterMode::Absent, None),
    ] {
        v4.sim.set_faults(Faults {
            rate_429: 1.0,
            retry_after: mode,
            ..Faults::default()
        });
        let resp = v4
            .send("POST", "/profile/v4/Bulk", Some(bulk("R1")))
            .await
            .unwrap();
        assert_eq!(resp.status(), 429);
        assert_eq!(
            resp.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string())
                .as_deref(),
            want
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["status"], "429");
    }
    v4.sim.set_faults(Faults {
        rate_429: 1.0,
        retry_after: RetryAfterMode::HttpDate(20),
        ..Faults::default()
    });
    let resp = v4
        .send("GET", "/profile/identity/v4.1/Users", None)
        .await
        .unwrap();
    assert!(httpdate::parse_http_date(resp.headers()["retry-after"].to_str().unwrap()).is_ok());
    v4.sim.set_faults(Faults {
        rate_5xx: 1.0,
        ..Faults::default()
    });
    let (status, body) = v4
        .call(
            "POST",
            "/profile/v4/Users",
            Some(user(&v4.sim, "F1", json!({}))),
        )
        .await;
    assert!([500, 502, 503, 504].contains(&status));
    assert_eq!(body["status"], status.to_string());
    assert!(
        v4.sim.users().is_empty(),
        "a refused request applies nothing"
    );

    // An applied write whose answer is lost: the user exists, the client saw no answer.
    v4.sim.set_faults(Faults {
        rate_lost_response: 1.0,
        ..Faults::default()
    });
    assert!(
        v4.send(
            "POST",
            "/profile/v4/Users",
            Some(user(&v4.sim, "F2", json!({})))
        )
        .await
        .is_err()
    );
    assert!(
        v4.send("POST", "/profile/v4/Bulk", Some(bulk("F3")))
            .await
            .is_err()
    );
    // Reads are not lost.
    let (status, _) = v4
        .call(
            "POST",
            "/profile/identity/v4.1/Users/.search",
            Some(json!({"schemas": [SEARCH]})),
        )
        .await;
    assert_eq!(status, 200);
    v4.sim.set_faults(Faults::default());
    assert!(v4.sim.v4_user("F2").is_some() && v4.sim.v4_user("F3").is_some());
    let (status, b) = v4
        .call(
            "POST",
            "/profile/v4/Users",
            Some(user(&v4.sim, "F2", json!({}))),
        )
        .await;
    assert_eq!(status, 409, "{b}");
    let bulk_log: Vec<_> = v4
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/bulk") && r.fault.as_deref() == Some("lost_response"))
        .collect();
    assert_eq!(bulk_log[0].records, Some(1));
    assert!(bulk_log[0].body_bytes.unwrap() > 100);

    // A dropped PATCH applies nothing.
    let id = v4.uuid_of("F2").await;
    v4.sim.set_faults(Faults {
        rate_drop: 1.0,
        ..Faults::default()
    });
    let dropped = v4
        .send("PATCH", &format!("/profile/v4/Users/{id}"), Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]})))
        .await;
    assert!(dropped.is_err());
    v4.sim.set_faults(Faults::default());
    assert_eq!(v4.sim.v4_user("F2").unwrap()["active"], true);

    // Provisions stuck by rate.
    v4.sim.set_faults(Faults {
        rate_stuck: 1.0,
        ..Faults::default()
    });
    let (_, status) = v4.bulk(bulk("F4")["Operations"].clone()).await;
    assert_eq!(status["status"]["completed"], false);
}

#[tokio::test]
async fn errors_auth_scopes_and_discovery() {
    let v4 = V4::with(SimConfig {
        v4: V4Settings {
            scopes: Some(vec![
                "user.provision.read".into(),
                "identity.user.core.read".into(),
            ]),
            ..V4Settings::default()
        },
        ..SimConfig::default()
    })
    .await;
    // No token, an expired token: 401 with the SCIM + Concur body.
    let resp = http()
        .get(format!("{}/profile/identity/v4.1/Users", v4.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("concur-correlationid"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error", CONCUR_ERROR])
    );
    assert_eq!(body["status"], "401");
    let m = message(&body);
    assert!(m["code"].is_string() && m["message"].is_string() && m["schemaPath"].is_string());
    assert_eq!(m["type"], "error");
    // A scope the token lacks: 403 naming it.
    let (status, body) = v4
        .call(
            "POST",
            "/profile/v4/Users",
            Some(user(&v4.sim, "Z1", json!({}))),
        )
        .await;
    assert_eq!(status, 403);
    assert!(
        message(&body)["message"]
            .as_str()
            .unwrap()
            .contains("'user.provision.write'")
    );
    let (status, _) = v4.get("/profile/spend/v4.1/Users").await;
    assert_eq!(status, 403);
    // Granted read scopes shape what is returned.
    v4.sim.seed_users(vec![v1_user(1)]);
    let (_, list) = v4.get("/profile/identity/v4.1/Users").await;
    let u = &list["Resources"][0];
    assert!(u.get("emails").is_none() && u.get(ENT).is_none() && u["userName"].is_string());
    // The correlation id is echoed; scim+json is answered to those who ask.
    let resp = http()
        .get(format!(
            "{}/profile/v4/ServiceProviderConfig",
            v4.sim.base_url()
        ))
        .bearer_auth(&v4.token)
        .header(
            "concur-correlationid",
            "8f9a4c1e-0000-4000-8000-000000000001",
        )
        .header("Accept", "application/scim+json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["concur-correlationid"],
        "8f9a4c1e-0000-4000-8000-000000000001"
    );
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/scim+json")
    );
    let spc: Value = resp.json().await.unwrap();
    assert_eq!(
        spc["bulk"],
        json!({"supported": true, "maxOperations": 100, "maxPayloadSize": 409600})
    );
    assert_eq!(spc["changePassword"]["supported"], false);
    let (_, rt) = v4.get("/profile/v4/ResourceTypes").await;
    let exts = rt["Resources"][0]["schemaExtensions"].as_array().unwrap();
    assert!(exts.contains(&json!({"schema": ENT, "required": true})));
    let (_, schemas) = v4.get("/provisioning/v4/Schemas").await;
    assert!(
        schemas["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == SPEND)
    );
    let (status, one) = v4.get(&format!("/profile/v4/Schemas/{CORE}")).await;
    assert_eq!((status, &one["name"]), (200, &json!("User")));
    // 404 on an unknown user, with the same body.
    let (status, body) = v4
        .get("/profile/identity/v4.1/Users/0d0e0f00-0000-4000-8000-000000000000")
        .await;
    assert_eq!((status, &body["status"]), (404, &json!("404")));
    // The control API reports the company UUID.
    let index = http()
        .get(format!("{}/_sim/", v4.sim.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(index.contains(&v4.sim.company_uuid()));
}

/// Sends a request to the control API; (status, JSON body or Null).
async fn control(v4: &V4, method: &str, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}{path}", v4.sim.base_url());
    let req = match method {
        "POST" => v4.client.post(url).json(&body),
        "DELETE" => v4.client.delete(url),
        _ => v4.client.get(url),
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn readings_the_docs_leave_open_are_switchable_at_run_time() {
    let v4 = V4::start().await;
    let (status, settings) = control(&v4, "GET", "/_sim/v4/settings", Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(settings["provision_timeout_ms"], 7_200_000);
    assert_eq!(settings["honour_fail_on_errors"], false);
    let (status, _) = control(
        &v4,
        "POST",
        "/_sim/v4/settings",
        json!({"honour_fail_on_errors": true, "bulk_delete": true, "bulk_id_references": true,
               "strict_patch_targets": true, "employee_number_filter": "urn"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(v4.sim.v4_settings().bulk_id_references);

    let ids = v4
        .sim
        .seed_v4_users(vec![user(
            &v4.sim,
            "K1",
            json!({ROLE: {"roles": [{"roleName": "EXP_APPROVER"}]}}),
        )])
        .unwrap();
    assert_eq!(
        v4.sim.v4_user("K1").unwrap()[ROLE]["roles"][0]["roleName"],
        "EXP_APPROVER"
    );
    // failOnErrors 1: after the first failed operation the rest are not processed.
    let (_, done) = v4
        .bulk(json!([
            {"method": "POST", "path": "/Users", "bulkId": "dup", "data": user(&v4.sim, "K1", json!({"userName": "k1b@example.com"}))},
            {"method": "POST", "path": "/Users", "bulkId": "k2", "data": user(&v4.sim, "K2", json!({}))}]))
        .await;
    assert_eq!(
        done["operationsCount"],
        json!({"total": 2, "success": 0, "failed": 2, "pending": 0})
    );
    assert_eq!(
        ext(&done["operations"][1], CORE)["messages"][0]["code"],
        "NOT_PROCESSED"
    );
    assert!(v4.sim.v4_user("K2").is_none());
    // bulkId references: a manager and its report in one request; DELETE inside /Bulk.
    let mut report = user(&v4.sim, "K4", json!({}));
    report[ENT]["manager"] = json!({"value": "bulkId:k3"});
    report[APPROVER] = json!({"report": [{"approver": {"value": "bulkId:k3"}, "primary": true}]});
    let (_, done) = v4
        .bulk(json!([
            {"method": "POST", "path": "/Users", "bulkId": "k3", "data": user(&v4.sim, "K3", json!({ROLE: {"roles": [{"roleName": "EXP_APPROVER"}]}}))},
            {"method": "POST", "path": "/Users", "bulkId": "k4", "data": report},
            {"method": "DELETE", "path": format!("/Users/{}", ids[0])}]))
        .await;
    assert_eq!(done["status"]["success"], true, "{done}");
    let k3 = v4.sim.v4_user("K3").unwrap()["id"].clone();
    let k4 = v4.sim.v4_user("K4").unwrap();
    assert_eq!(k4[ENT]["manager"]["value"], k3);
    assert_eq!(
        k4[APPROVER]["report"][0]["approver"]["employeeNumber"],
        "K3"
    );
    assert_eq!(v4.sim.deleted_users()[0].employee_number, "K1");
    // Strict targets; the URN-only employeeNumber spelling.
    let k4_id = k4["id"].as_str().unwrap();
    let (status, body) = v4
        .call("PATCH", &format!("/profile/v4/Users/{k4_id}"), Some(json!({"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": "emails[type eq \"other\"].value", "value": "o@example.com"}]})))
        .await;
    assert_eq!((status, &body["scimType"]), (400, &json!("noTarget")));
    let (status, _) = v4
        .get("/profile/identity/v4/Users?filter=employeeNumber%20eq%20%22K4%22")
        .await;
    assert_eq!(status, 400);

    // Faults for employee numbers and the simulated clock, through the control API.
    control(
        &v4,
        "POST",
        "/_sim/v4/stuck",
        json!({"employee_numbers": ["K5"]}),
    )
    .await;
    control(
        &v4,
        "POST",
        "/_sim/v4/fail-spend",
        json!({"employee_numbers": ["K6"], "times": 2}),
    )
    .await;
    let (accepted, done) = v4
        .bulk(json!([
            {"method": "POST", "path": "/Users", "bulkId": "k6", "data": user(&v4.sim, "K6", json!({}))},
            {"method": "POST", "path": "/Users", "bulkId": "k5", "data": user(&v4.sim, "K5", json!({}))}]))
        .await;
    assert_eq!(done["operationsCount"]["pending"], 1);
    assert_eq!(ext(&done["operations"][0], SPEND)["status"]["code"], "503");
    let (_, clock) = control(&v4, "POST", "/_sim/clock", json!({"advance_seconds": 7201})).await;
    assert!(clock["offset_ms"].as_u64().unwrap() >= 7_201_000);
    assert_eq!(
        v4.status_of(&accepted).await["operationsCount"]["pending"],
        0
    );
    let (_, provisions) = control(&v4, "GET", "/_sim/v4/provisions", Value::Null).await;
    assert_eq!(provisions.as_array().unwrap().len(), 3);
    let (_, users) = control(&v4, "GET", "/_sim/v4/users", Value::Null).await;
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u[ENT]["employeeNumber"] == "K6")
    );
    control(&v4, "DELETE", "/_sim/v4/stuck", Value::Null).await;
    control(&v4, "DELETE", "/_sim/v4/fail-spend", Value::Null).await;
    let (status, _) = control(&v4, "POST", "/_sim/v4/users", json!([{"schemas": [CORE]}])).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn simulate_flags_configure_the_v4_side() {
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
        "--provision-delay-ms",
        "2500",
        "--provision-timeout-seconds",
        "60",
        "--search-lag-ms",
        "3000",
        "--scopes",
        "user.provision.write,user.provision.read",
        "--fault-spend-failure",
        "0.25",
        "--fault-stuck",
        "0.5",
        "--bulk-delete",
        "--employee-number-filter",
        "plain",
        "--company-uuid",
        "0a1b2c3d-0000-4000-8000-000000000000",
    ])
    .unwrap();
    let config = cli.args.to_config();
    assert_eq!(config.v4.provision_delay, Duration::from_millis(2500));
    assert_eq!(config.v4.provision_timeout, Duration::from_secs(60));
    assert_eq!(config.v4.search_lag, Duration::from_secs(3));
    assert_eq!(config.v4.scopes.as_ref().unwrap().len(), 2);
    assert_eq!(
        config.v4.employee_number_filter,
        EmployeeNumberFilter::Plain
    );
    assert!(config.v4.bulk_delete && !config.v4.bulk_id_references);
    assert_eq!(
        (config.faults.rate_spend_failure, config.faults.rate_stuck),
        (0.25, 0.5)
    );
    assert_eq!(config.company_uuid, "0a1b2c3d-0000-4000-8000-000000000000");
    let defaults = Cli::try_parse_from(["simulate", "--listen", "127.0.0.1:0"]).unwrap();
    let config = defaults.args.to_config();
    assert_eq!(config.v4, V4Settings::default());
    assert_eq!(config.company_uuid, DEFAULT_COMPANY_UUID);
    assert!(
        Cli::try_parse_from(["simulate", "--listen", "127.0.0.1:0", "--fault-stuck", "2"]).is_err()
    );
}

#[tokio::test]
async fn v4_attributes_and_provisions_survive_a_restart_with_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = || SimConfig {
        state_file: Some(dir.path().join("sim.json")),
        v4: V4Settings {
            provision_delay: Duration::from_secs(3600),
            ..V4Settings::default()
        },
        ..SimConfig::default()
    };
    let v4 = V4::with(config()).await;
    let (status, created) = v4
        .call(
            "POST",
            "/profile/v4/Users",
            Some(user(&v4.sim, "P1", json!({"externalId": "ext-p1"}))),
        )
        .await;
    assert_eq!(status, 201);
    let pid = created["meta"]["provisionId"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    v4.sim.shutdown().await;

    let v4 = V4::with(config()).await;
    let u = v4.sim.v4_user("P1").unwrap();
    assert_eq!(
        (u["id"].as_str(), u["externalId"].as_str()),
        (Some(id.as_str()), Some("ext-p1"))
    );
    assert!(u.get(SPEND).is_none(), "the extensions are still pending");
    let status = v4.status_of(&json!({"id": pid})).await;
    assert_eq!(status["operationsCount"]["pending"], 1);
    v4.sim.advance_clock(Duration::from_secs(3600));
    let status = v4.status_of(&json!({"id": pid})).await;
    assert_eq!(status["status"]["success"], true);
    assert_eq!(v4.sim.v4_user("P1").unwrap()[SPEND]["country"], "US");
    let (_, found) = v4
        .call(
            "POST",
            "/profile/identity/v4.1/Users/.search",
            Some(json!({"schemas": [SEARCH], "filter": "externalId eq \"ext-p1\""})),
        )
        .await;
    assert_eq!(found["totalResults"], 1);
}
