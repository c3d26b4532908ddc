//! A canonical user as a v4 user and back, after Concur's own User v1 → v4 table.
//!
//! Writing ([`user_body`]): the full `POST /Users` body of a create. The identity (core and
//! enterprise) is always there; a spend extension only when the user has a value for it.
//! Values are converted where v4 spells them differently (`en_US` → `en-US`, `US-WA` → `WA`,
//! `Y` flags → an entitlement or a role). Rules v4 imposes (lengths, the spend User trio,
//! `userName` characters) are checked before, by `rules`; this mapping sends what it is given.
//!
//! Reading ([`read_user`]): an Identity v4/v4.1 resource (and the Spend v4.1 resource of the
//! same user, when read) → the canonical user, its UUID, and the fields that could not be
//! read. A token without a read scope makes Concur leave attributes out silently, and SCIM
//! leaves out empty attributes too; so a field counts as *read* only when the part of the
//! resource that holds it was returned:
//! - `userName`, `active`, `emails` (all required in v4): when present;
//! - `name.*`: when `name` is present;
//! - the user flags: when `entitlements` is present (an entitlement it lacks is then `N`).
//!   Concur returns `entitlements` only on request and leaves an empty list out, so a user
//!   with none reads as not readable rather than as `N` for all three;
//! - `employeeNumber`: when the enterprise extension is present;
//! - spend fields, roles, the report approver: when their extension is present, or when a
//!   Spend v4.1 resource was read at all (an extension absent from it holds nothing).
//!
//! Drift must be judged only on fields that were read.

use serde_json::{Map, Value, json};

use super::json::{Obj, member};
use super::schema::{
    CORE, CUSTOM_DATA, ENTERPRISE, ENTITLEMENTS, ROLES, SPEND_APPROVER, SPEND_PLAIN, SPEND_ROLE,
    SPEND_USER, is_yes, state_province, v4_locale,
};
use crate::concur::error::ConcurError;
use crate::model::{Field, User};

/// The spend User fields whose presence makes the extension used (everything it carries).
pub fn spend_user_fields() -> impl Iterator<Item = Field> {
    SPEND_PLAIN
        .iter()
        .chain(CUSTOM_DATA.iter())
        .map(|(f, _)| *f)
}

/// Whether `user` has a value that lives in a spend extension (spend User, a role, an
/// approver): the spend User extension must then be sent with its required trio.
pub fn uses_spend(user: &User) -> bool {
    spend_user_fields().any(|f| user.get(f).is_some())
        || ROLES.iter().any(|(f, _)| is_yes(user.get(*f)))
        || user.get(Field::MANAGER_EMPLOYEE_ID).is_some()
}

/// The `value` of one spend User attribute for a canonical field (converted).
pub(super) fn spend_value(field: Field, value: &str) -> String {
    match field {
        Field::LOCALE => v4_locale(value),
        Field::COUNTRY_SUBDIVISION => state_province(value).to_owned(),
        _ => value.to_owned(),
    }
}

/// One `customData` entry.
pub(super) fn custom_entry(id: &str, value: &str) -> Value {
    json!({"id": id, "value": value})
}

/// One `roles` entry.
pub(super) fn role_entry(role: &str) -> Value {
    json!({"roleName": role})
}

/// The primary `report` approver, referenced by employee number.
pub(super) fn report_approver(employee_id: &str) -> Value {
    json!({"approver": {"employeeNumber": employee_id}, "primary": true})
}

/// The work e-mail entry.
pub(super) fn work_email(address: &str) -> Value {
    json!({"type": "work", "value": address})
}

/// The full v4 user a create sends (`POST /Users`, or `data` of a Bulk POST).
/// `company_id` is the company's UUID (enterprise `companyId`, required and immutable).
pub fn user_body(user: &User, company_id: &str) -> Value {
    let mut body = Map::new();
    let mut schemas = vec![CORE, ENTERPRISE];
    if let Some(login) = user.get(Field::LOGIN_ID) {
        body.insert("userName".into(), json!(login));
    }
    body.insert("active".into(), json!(user.is_active()));
    let mut name = Map::new();
    for (field, attr) in [
        (Field::FIRST_NAME, "givenName"),
        (Field::LAST_NAME, "familyName"),
        (Field::MIDDLE_INITIAL, "middleInitial"),
    ] {
        if let Some(v) = user.get(field) {
            name.insert(attr.into(), json!(v));
        }
    }
    if !name.is_empty() {
        body.insert("name".into(), Value::Object(name));
    }
    if let Some(email) = user.get(Field::EMAIL) {
        body.insert("emails".into(), json!([work_email(email)]));
    }
    let entitlements: Vec<&str> = ENTITLEMENTS
        .iter()
        .filter(|(f, _)| is_yes(user.get(*f)))
        .map(|(_, v)| *v)
        .collect();
    if !entitlements.is_empty() {
        body.insert("entitlements".into(), json!(entitlements));
    }
    let mut enterprise = Map::new();
    enterprise.insert("companyId".into(), json!(company_id));
    if let Some(id) = user.get(Field::EMPLOYEE_ID) {
        enterprise.insert("employeeNumber".into(), json!(id));
    }
    body.insert(ENTERPRISE.into(), Value::Object(enterprise));

    let mut spend = Map::new();
    for (field, attr) in SPEND_PLAIN {
        if let Some(v) = user.get(field) {
            spend.insert(attr.into(), json!(spend_value(field, v)));
        }
    }
    let custom: Vec<Value> = CUSTOM_DATA
        .iter()
        .filter_map(|(f, id)| user.get(*f).map(|v| custom_entry(id, v)))
        .collect();
    if !custom.is_empty() {
        spend.insert("customData".into(), Value::Array(custom));
    }
    if !spend.is_empty() {
        schemas.push(SPEND_USER);
        body.insert(SPEND_USER.into(), Value::Object(spend));
    }
    let roles: Vec<Value> = ROLES
        .iter()
        .filter(|(f, _)| is_yes(user.get(*f)))
        .map(|(_, r)| role_entry(r))
        .collect();
    if !roles.is_empty() {
        schemas.push(SPEND_ROLE);
        body.insert(SPEND_ROLE.into(), json!({ "roles": roles }));
    }
    if let Some(manager) = user.get(Field::MANAGER_EMPLOYEE_ID) {
        schemas.push(SPEND_APPROVER);
        body.insert(
            SPEND_APPROVER.into(),
            json!({ "report": [report_approver(manager)] }),
        );
    }
    body.insert("schemas".into(), json!(schemas));
    Value::Object(body)
}

/// A user as Concur's reads return it, in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadUser {
    /// Concur's id of the user (`id`).
    pub uuid: String,
    /// The fields that were read; a field read as empty is absent, flags read are `Y` or `N`.
    pub user: User,
    /// Canonical fields the answer did not cover (a scope missing, an extension not read, a
    /// manager known only by a UUID nobody could resolve), in field order.
    pub unreadable: Vec<Field>,
    /// The primary report approver's UUID, when Concur gave one.
    pub manager_uuid: Option<String>,
}

/// Reads an Identity v4/v4.1 user `identity` and, if it was read, the same user's Spend v4.1
/// resource `spend` (extensions are also taken from `identity` when it carries them, as UPS
/// answers do). `employee_of` resolves a manager known only by UUID to an employee id.
/// A member of the wrong type is an error naming it; missing members are allowed.
pub fn read_user(
    identity: &Value,
    spend: Option<&Value>,
    employee_of: &dyn Fn(&str) -> Option<String>,
) -> Result<ReadUser, ConcurError> {
    let id = Obj::root(identity);
    let uuid = id
        .strict_string("id")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ConcurError::Decode("id: missing from the user".into()))?
        .to_owned();
    if let Some(spend) = spend
        && let Some(other) = Obj::root(spend).strict_string("id")?
        && !other.eq_ignore_ascii_case(&uuid)
    {
        return Err(ConcurError::Decode(format!(
            "the spend resource is user {other}, not {uuid}"
        )));
    }
    let mut read = Reader {
        user: User::new(),
        read: Vec::new(),
    };

    if let Some(login) = id.strict_string("userName")? {
        read.set(Field::LOGIN_ID, login);
    }
    if let Some(active) = id.bool("active")? {
        read.set(Field::ACTIVE, if active { "Y" } else { "N" });
    }
    if let Some(name) = id.object("name")? {
        for (field, attr) in [
            (Field::FIRST_NAME, "givenName"),
            (Field::LAST_NAME, "familyName"),
            (Field::MIDDLE_INITIAL, "middleInitial"),
        ] {
            read.set(field, name.strict_string(attr)?.unwrap_or(""));
        }
    }
    if id.has("emails") {
        let emails = id.objects("emails")?;
        // The work address; an untyped one if no address says it is the work one.
        let (mut work, mut untyped) = (None, None);
        for e in &emails {
            let value = e.strict_string("value")?;
            match e.strict_string("type")? {
                Some(t) if t.eq_ignore_ascii_case("work") => work = work.or(value),
                None => untyped = untyped.or(value),
                Some(_) => {}
            }
        }
        read.set(Field::EMAIL, work.or(untyped).unwrap_or(""));
    }
    if id.has("entitlements") {
        let mut held = Vec::new();
        for (i, v) in id.array("entitlements")?.iter().enumerate() {
            // Plain strings as Concur shows them, or SCIM `{value}` objects.
            let name = match v {
                Value::String(s) => Some(s.as_str()),
                Value::Object(_) => member(v, "value").and_then(Value::as_str),
                _ => None,
            }
            .ok_or_else(|| {
                ConcurError::Decode(format!(
                    "entitlements[{i}]: expected a string, found {}",
                    super::json::kind(v)
                ))
            })?;
            held.push(name);
        }
        for (field, value) in ENTITLEMENTS {
            let yes = held.iter().any(|h| h.eq_ignore_ascii_case(value));
            read.set(field, if yes { "Y" } else { "N" });
        }
    }
    if let Some(enterprise) = id.object(ENTERPRISE)? {
        read.set(
            Field::EMPLOYEE_ID,
            enterprise.strict_string("employeeNumber")?.unwrap_or(""),
        );
    }

    if let Some(ext) = extension(&id, spend, SPEND_USER)? {
        read_spend_user(&ext, &mut read)?;
    }
    if let Some(ext) = extension(&id, spend, SPEND_ROLE)? {
        let mut held = Vec::new();
        for role in ext.objects("roles")? {
            held.push(role.strict_string("roleName")?.unwrap_or("").to_owned());
        }
        for (field, role) in ROLES {
            let yes = held.iter().any(|h| h.eq_ignore_ascii_case(role));
            read.set(field, if yes { "Y" } else { "N" });
        }
    }
    let mut manager_uuid = None;
    if let Some(ext) = extension(&id, spend, SPEND_APPROVER)? {
        let mut manager = Some(String::new());
        for entry in ext.objects("report")? {
            if entry.bool("primary")? != Some(true) {
                continue;
            }
            let Some(approver) = entry.object("approver")? else {
                continue;
            };
            let number = approver.strict_string("employeeNumber")?;
            manager_uuid = approver.strict_string("value")?.map(str::to_owned);
            manager = match (number, &manager_uuid) {
                (Some(n), _) if !n.is_empty() => Some(n.to_owned()),
                (_, Some(u)) => employee_of(u),
                _ => None,
            };
            break;
        }
        if let Some(m) = manager {
            read.set(Field::MANAGER_EMPLOYEE_ID, &m);
        }
    }
    let unreadable = Field::all().filter(|f| !read.read.contains(f)).collect();
    Ok(ReadUser {
        uuid,
        user: read.user,
        unreadable,
        manager_uuid,
    })
}

static EMPTY: Value = Value::Null;

/// An extension of the user: from the spend read when there is one (absent there and in the
/// identity: read, empty), else from the identity (absent: not read).
fn extension<'a>(
    identity: &Obj<'a>,
    spend: Option<&'a Value>,
    urn: &str,
) -> Result<Option<Obj<'a>>, ConcurError> {
    if let Some(spend) = spend {
        if let Some(ext) = Obj::root(spend).object(urn)? {
            return Ok(Some(ext));
        }
        if identity.get(urn).is_none() {
            return Ok(Some(Obj::root(&EMPTY)));
        }
    }
    identity.object(urn)
}

struct Reader {
    user: User,
    read: Vec<Field>,
}

impl Reader {
    fn set(&mut self, field: Field, value: &str) {
        self.user.set(field, value);
        self.read.push(field);
    }
}

fn read_spend_user(ext: &Obj<'_>, read: &mut Reader) -> Result<(), ConcurError> {
    let country = ext.strict_string("country")?.unwrap_or("");
    for (field, attr) in SPEND_PLAIN {
        let v = ext.strict_string(attr)?.unwrap_or("");
        match field {
            Field::LOCALE => read.set(field, &v.replace('-', "_")),
            Field::COUNTRY_SUBDIVISION if !v.is_empty() && country.is_empty() => {}
            Field::COUNTRY_SUBDIVISION if !v.is_empty() => {
                read.set(field, &format!("{country}-{v}"));
            }
            _ => read.set(field, v),
        }
    }
    let entries = ext.objects("customData")?;
    let mut values: Vec<(Field, String)> = Vec::new();
    for entry in &entries {
        let id = entry.strict_string("id")?.unwrap_or("");
        let Some((field, _)) = CUSTOM_DATA.iter().find(|(_, c)| c.eq_ignore_ascii_case(id)) else {
            continue;
        };
        if let Some(v) = entry.string("value")? {
            values.push((*field, v));
        }
    }
    for (field, _) in CUSTOM_DATA {
        let v = values
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str());
        read.set(field, v.unwrap_or(""));
    }
    Ok(())
}
