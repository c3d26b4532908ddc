use super::*;
use crate::test_support::{entry, fields};

#[test]
fn dns_compare_by_name_not_spelling() {
    assert_eq!(
        normalize_dn("UID=Alice , OU=People,dc=Example,DC=com"),
        normalize_dn("uid=alice,ou=people,dc=example,dc=com")
    );
    assert_eq!(
        normalize_dn(r"cn=Smith\, John,ou=x"),
        normalize_dn(r"cn=smith\2c john,ou=x")
    );
    assert_ne!(normalize_dn("cn=a,ou=x"), normalize_dn("cn=a,ou=y"));
}

#[test]
fn defaults_map_inet_org_person_and_resolve_the_manager() {
    let m = Mapping::from_config(&LdapConfig::default()).unwrap();
    let boss = entry(
        "uid=boss,ou=people,dc=example,dc=com",
        &[("employeeNumber", "E1"), ("mail", "boss@example.com")],
    );
    let alice = entry(
        "uid=alice,ou=people,dc=example,dc=com",
        &[
            ("employeeNumber", " E2 "),
            ("mail", "alice@example.com"),
            ("mail", "alias@example.com"),
            ("givenName", "Alice"),
            ("sn", "Ångström"),
            ("initials", "J."),
            ("preferredLanguage", "de-DE, en;q=0.5"),
            ("c", "DE"),
            ("ou", "People"),
            ("departmentNumber", "4711"),
            ("manager", "UID=Boss, ou=People,dc=example,dc=com"),
        ],
    );
    let items = map_entries(&[boss, alice], &m);
    let r = fields(&items[1]);
    assert_eq!(r["employee_id"], "E2");
    assert_eq!(r["login_id"], "alice@example.com");
    assert_eq!(r["email"], "alice@example.com");
    assert_eq!(r["last_name"], "Ångström");
    assert_eq!(r["middle_initial"], "J");
    assert_eq!(r["locale"], "de-DE");
    assert_eq!(r["org_unit1"], "4711", "departmentNumber wins over ou");
    assert_eq!(r["manager_employee_id"], "E1");
    assert!(!r.contains_key("active"));
}

#[test]
fn an_unresolvable_manager_or_missing_key_is_rejected_naming_the_entry() {
    let m = Mapping::from_config(&LdapConfig::default()).unwrap();
    let items = map_entries(
        &[
            entry(
                "uid=a,dc=x",
                &[("employeeNumber", "E1"), ("manager", "uid=gone,dc=x")],
            ),
            entry("uid=b,dc=x", &[("mail", "b@x.com")]),
        ],
        &m,
    );
    let SourceItem::Rejected(r) = &items[0] else {
        panic!()
    };
    assert_eq!(r.employee_id.as_deref(), Some("E1"));
    assert!(r.message.contains("uid=gone,dc=x") && r.message.contains("uid=a,dc=x"));
    let SourceItem::Rejected(r) = &items[1] else {
        panic!()
    };
    assert_eq!(r.field, "employee_id");
    assert!(r.message.contains("employeeNumber"), "{}", r.message);
}

#[test]
fn configured_attributes_replace_the_defaults_for_their_fields() {
    let cfg: LdapConfig = serde_json::from_value(serde_json::json!({
        "attributes": {"employeeID": "employee_id", "userPrincipalName": "login_id", "ou": ""},
        "inactive_when": {"attribute": "userAccountControl", "bitmask": 2}
    }))
    .unwrap();
    let m = Mapping::from_config(&cfg).unwrap();
    let attrs = m.requested_attributes();
    assert!(attrs.contains(&"employeeID".to_owned()));
    assert!(!attrs.iter().any(|a| a == "employeeNumber" || a == "ou"));
    let e = entry(
        "cn=x,dc=ad",
        &[
            ("employeeID", "7"),
            ("userPrincipalName", "x@ad.example"),
            ("mail", "x@example.com"),
            ("userAccountControl", "514"),
        ],
    );
    let r = fields(&map_entries(&[e], &m)[0]);
    assert_eq!(r["login_id"], "x@ad.example");
    assert_eq!(r["email"], "x@example.com");
    assert_eq!(r["active"], "N");
    let e = entry(
        "cn=y,dc=ad",
        &[("employeeID", "8"), ("userAccountControl", "512")],
    );
    assert!(!fields(&map_entries(&[e], &m)[0]).contains_key("active"));
}

#[test]
fn object_guid_is_shown_in_guid_form() {
    let mut e = entry("cn=x", &[]);
    e.values.push((
        "objectguid".into(),
        vec![
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ],
    ));
    assert_eq!(
        e.stable_id().unwrap(),
        "objectGUID=00112233-4455-6677-8899-aabbccddeeff"
    );
}
