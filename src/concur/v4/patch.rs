//! The SCIM PatchOp of a planned update: only the attributes that changed, never a PUT.
//!
//! - A value set where there was none is an `add`, a changed value a `replace`, a cleared one a
//!   `remove`.
//! - Multi-valued attributes are touched one value at a time through a filtered path, never
//!   replaced whole (an unfiltered `replace` wipes every value, including those concur-sync
//!   does not own): the work e-mail through `emails[type eq "work"].value`, a `customData`
//!   entry through `customData[id eq "custom2"].value`, an entitlement through
//!   `entitlements[value eq "Expense"]`, a role through `roles[roleName eq "EXP_APPROVER"]`,
//!   the manager through `report[primary eq true]`. A value that did not exist before is
//!   appended with an unfiltered `add` (which appends), because a filtered `replace` that
//!   matches nothing is refused (`noTarget`).
//! - Deactivation is `active false` plus enterprise `terminationDate` (the date is an
//!   argument); reactivation is `active true` and removes `terminationDate`.
//! - Renames replace `userName` and enterprise `employeeNumber` on the user's UUID.
//!
//! "Before" is what the snapshot says Concur acknowledged (`FieldChange::old`).

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::mapping::{custom_entry, report_approver, role_entry, spend_value, work_email};
use super::schema::{
    ENTERPRISE, Home, PATCH_OP, SPEND_APPROVER, SPEND_ROLE, SPEND_USER, filter_literal, home,
};
use crate::model::{Field, FieldChange, Op, OpKind};

/// `add`, `replace` or `remove`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Add,
    Replace,
    Remove,
}

impl PatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PatchKind::Add => "add",
            PatchKind::Replace => "replace",
            PatchKind::Remove => "remove",
        }
    }
}

/// One operation of a PatchOp.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchOperation {
    pub op: PatchKind,
    pub path: String,
    /// Absent for `remove`.
    pub value: Option<Value>,
}

impl PatchOperation {
    fn add(path: impl Into<String>, value: Value) -> Self {
        PatchOperation {
            op: PatchKind::Add,
            path: path.into(),
            value: Some(value),
        }
    }
    fn replace(path: impl Into<String>, value: Value) -> Self {
        PatchOperation {
            op: PatchKind::Replace,
            path: path.into(),
            value: Some(value),
        }
    }
    fn remove(path: impl Into<String>) -> Self {
        PatchOperation {
            op: PatchKind::Remove,
            path: path.into(),
            value: None,
        }
    }

    pub fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("op".into(), json!(self.op.as_str()));
        m.insert("path".into(), json!(self.path));
        if let Some(v) = &self.value {
            m.insert("value".into(), v.clone());
        }
        Value::Object(m)
    }
}

/// A SCIM PatchOp body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PatchOp {
    pub operations: Vec<PatchOperation>,
}

impl PatchOp {
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// `{"schemas":["…:PatchOp"],"Operations":[…]}`.
    pub fn to_value(&self) -> Value {
        let ops: Vec<Value> = self
            .operations
            .iter()
            .map(PatchOperation::to_value)
            .collect();
        json!({"schemas": [PATCH_OP], "Operations": ops})
    }
}

/// `terminationDate` as v4 writes it: `YYYY-MM-DDT00:00:00Z`.
pub fn termination_date(date: NaiveDate) -> String {
    format!("{}T00:00:00Z", date.format("%Y-%m-%d"))
}

fn enterprise_path(attr: &str) -> String {
    format!("{ENTERPRISE}:{attr}")
}

/// The PatchOp of an update, deactivation or reactivation: the changed attributes only.
/// `termination` is the date a deactivation records as `terminationDate`. A password change
/// (no v4 attribute) and a change with no v4 effect give an empty PatchOp; a create is not a
/// patch (`mapping::user_body`).
pub fn patch_for(op: &Op, termination: NaiveDate) -> PatchOp {
    if op.kind == OpKind::Password {
        return PatchOp::default();
    }
    let mut ops = Vec::new();
    let changed = |f: Field| op.changes.iter().any(|c| c.field == f);
    // Renames first, so that later operations already name the user as Concur will know it.
    if let Some(new) = op.user.get(Field::LOGIN_ID)
        && (changed(Field::LOGIN_ID) || op.old_login_id.as_deref().is_some_and(|old| old != new))
    {
        ops.push(PatchOperation::replace("userName", json!(new)));
    }
    if let Some(new) = op.user.get(Field::EMPLOYEE_ID)
        && (changed(Field::EMPLOYEE_ID)
            || op.old_employee_id.as_deref().is_some_and(|old| old != new))
    {
        ops.push(PatchOperation::replace(
            enterprise_path("employeeNumber"),
            json!(new),
        ));
    }
    let active_change = op.changes.iter().find(|c| c.field == Field::ACTIVE);
    let was_active = active_change.is_none_or(|c| c.old.as_deref() != Some("N"));
    let deactivating = op.kind == OpKind::Deactivate
        || (op.kind != OpKind::Reactivate && active_change.is_some() && !op.user.is_active());
    let reactivating = op.kind == OpKind::Reactivate
        || (op.kind != OpKind::Deactivate && !was_active && op.user.is_active());
    if deactivating {
        ops.push(PatchOperation::replace("active", json!(false)));
        ops.push(PatchOperation::replace(
            enterprise_path("terminationDate"),
            json!(termination_date(termination)),
        ));
    } else if reactivating {
        ops.push(PatchOperation::replace("active", json!(true)));
        ops.push(PatchOperation::remove(enterprise_path("terminationDate")));
    }
    for change in &op.changes {
        if !matches!(
            change.field,
            Field::LOGIN_ID | Field::EMPLOYEE_ID | Field::ACTIVE
        ) {
            change_ops(change, &mut ops);
        }
    }
    PatchOp { operations: ops }
}

/// The operations of one field's change.
fn change_ops(change: &FieldChange, ops: &mut Vec<PatchOperation>) {
    let (old, new) = (change.old.as_deref(), change.new.as_deref());
    let set_or_clear = |path: String, value: Option<Value>, existed: bool| match value {
        Some(v) if existed => PatchOperation::replace(path, v),
        Some(v) => PatchOperation::add(path, v),
        None => PatchOperation::remove(path),
    };
    match home(change.field) {
        Home::Core(path) => ops.push(set_or_clear(
            path.into(),
            new.map(|v| json!(v)),
            old.is_some(),
        )),
        Home::Enterprise(attr) => ops.push(set_or_clear(
            enterprise_path(attr),
            new.map(|v| json!(v)),
            old.is_some(),
        )),
        Home::WorkEmail => ops.push(match (old, new) {
            (Some(_), Some(v)) => {
                PatchOperation::replace("emails[type eq \"work\"].value", json!(v))
            }
            (None, Some(v)) => PatchOperation::add("emails", json!([work_email(v)])),
            (_, None) => PatchOperation::remove("emails[type eq \"work\"]"),
        }),
        Home::Spend(attr) => {
            let convert = |v: Option<&str>| v.map(|v| spend_value(change.field, v));
            let (old, new) = (convert(old), convert(new));
            if old != new {
                let path = format!("{SPEND_USER}:{attr}");
                ops.push(set_or_clear(path, new.map(Value::String), old.is_some()));
            }
        }
        Home::CustomData(id) => {
            let entry = format!("{SPEND_USER}:customData[id eq {}]", filter_literal(id));
            ops.push(match (old, new) {
                (Some(_), Some(v)) => PatchOperation::replace(format!("{entry}.value"), json!(v)),
                (None, Some(v)) => PatchOperation::add(
                    format!("{SPEND_USER}:customData"),
                    json!([custom_entry(id, v)]),
                ),
                (_, None) => PatchOperation::remove(entry),
            });
        }
        Home::Entitlement(value) => match (old == Some("Y"), new == Some("Y")) {
            (false, true) => ops.push(PatchOperation::add("entitlements", json!([value]))),
            (true, false) => ops.push(PatchOperation::remove(format!(
                "entitlements[value eq {}]",
                filter_literal(value)
            ))),
            _ => {}
        },
        Home::Role(role) => match (old == Some("Y"), new == Some("Y")) {
            (false, true) => ops.push(PatchOperation::add(
                format!("{SPEND_ROLE}:roles"),
                json!([role_entry(role)]),
            )),
            (true, false) => ops.push(PatchOperation::remove(format!(
                "{SPEND_ROLE}:roles[roleName eq {}]",
                filter_literal(role)
            ))),
            _ => {}
        },
        Home::ReportApprover => {
            // A manager is set by replacing the primary report approver whole: whatever
            // primary Concur holds is removed, then the new one added, in the same (atomic)
            // PATCH. A filtered `replace` would leave it to the server whether the old
            // approver's UUID survives next to the new employeeNumber, and a bare `add` sent
            // again after a lost answer would give the user a second primary approver.
            let primary = format!("{SPEND_APPROVER}:report[primary eq true]");
            ops.push(PatchOperation::remove(primary));
            if let Some(m) = new {
                ops.push(PatchOperation::add(
                    format!("{SPEND_APPROVER}:report"),
                    json!([report_approver(m)]),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;

    const SPEND: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:User";
    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn user(pairs: &[(Field, &str)]) -> User {
        let mut u = User::new();
        for (f, v) in pairs {
            u.set(*f, *v);
        }
        u
    }

    fn base() -> User {
        user(&[
            (Field::EMPLOYEE_ID, "E1"),
            (Field::LOGIN_ID, "a@example.com"),
            (Field::ACTIVE, "Y"),
            (Field::FIRST_NAME, "Ann"),
            (Field::LAST_NAME, "Lee"),
            (Field::EMAIL, "a@example.com"),
            (Field::LOCALE, "en_US"),
            (Field::COUNTRY, "US"),
            (Field::CURRENCY, "USD"),
            (Field::COUNTRY_SUBDIVISION, "US-WA"),
            (Field::CUSTOM2, "old"),
            (Field::CUSTOM4, "gone"),
            (Field::EXPENSE_USER, "Y"),
            (Field::TRIP_USER, "N"),
            (Field::EXPENSE_APPROVER, "Y"),
            (Field::MANAGER_EMPLOYEE_ID, "M1"),
        ])
    }

    fn op(kind: OpKind, old: &User, new: &User) -> Op {
        Op {
            kind,
            employee_id: new.employee_id().to_owned(),
            user: new.clone(),
            old_login_id: (old.login_id() != new.login_id()).then(|| old.login_id().to_owned()),
            old_employee_id: (old.employee_id() != new.employee_id())
                .then(|| old.employee_id().to_owned()),
            changes: new.changes_from(old),
            password: None,
            origin: String::new(),
        }
    }

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 9, 30).expect("date")
    }

    /// The operations as compact JSON lines.
    fn check(kind: OpKind, edit: &[(Field, &str)], expected: &[&str]) {
        let old = base();
        let mut new = old.clone();
        for (f, v) in edit {
            new.set(*f, *v);
        }
        let patch = patch_for(&op(kind, &old, &new), date());
        let got: Vec<String> = patch
            .operations
            .iter()
            .map(|o| o.to_value().to_string())
            .collect();
        assert_eq!(got, expected);
        // Never an unfiltered replace of a multi-valued attribute.
        for o in &patch.operations {
            let multi = ["emails", "entitlements", "customData", "roles", "report"]
                .iter()
                .any(|m| o.path.ends_with(m));
            assert!(!(multi && o.op == PatchKind::Replace), "{o:?}");
        }
    }

    #[test]
    fn only_changed_attributes_are_patched() {
        check(OpKind::Update, &[], &[]);
        check(
            OpKind::Update,
            &[
                (Field::FIRST_NAME, "Anne"),
                (Field::MIDDLE_INITIAL, "Q"),
                (Field::EMAIL, "anne@example.com"),
            ],
            &[
                r#"{"op":"replace","path":"name.givenName","value":"Anne"}"#,
                r#"{"op":"add","path":"name.middleInitial","value":"Q"}"#,
                r#"{"op":"replace","path":"emails[type eq \"work\"].value","value":"anne@example.com"}"#,
            ],
        );
        check(
            OpKind::Update,
            &[(Field::LAST_NAME, ""), (Field::EMAIL, "")],
            &[
                r#"{"op":"remove","path":"name.familyName"}"#,
                r#"{"op":"remove","path":"emails[type eq \"work\"]"}"#,
            ],
        );
    }

    #[test]
    fn spend_values_and_custom_data_go_one_entry_at_a_time() {
        check(
            OpKind::Update,
            &[
                (Field::LOCALE, "fr_CA"),
                (Field::COUNTRY_SUBDIVISION, "CA-WA"),
                (Field::COUNTRY, "CA"),
                (Field::LEDGER, "L2"),
                (Field::CUSTOM2, "new ] value"),
                (Field::CUSTOM3, "added"),
                (Field::CUSTOM4, ""),
            ],
            &[
                &format!(r#"{{"op":"replace","path":"{SPEND}:locale","value":"fr-CA"}}"#),
                &format!(r#"{{"op":"add","path":"{SPEND}:ledgerCode","value":"L2"}}"#),
                &format!(
                    r#"{{"op":"replace","path":"{SPEND}:customData[id eq \"custom2\"].value","value":"new ] value"}}"#
                ),
                &format!(
                    r#"{{"op":"add","path":"{SPEND}:customData","value":[{{"id":"custom3","value":"added"}}]}}"#
                ),
                &format!(r#"{{"op":"remove","path":"{SPEND}:customData[id eq \"custom4\"]"}}"#),
                &format!(r#"{{"op":"replace","path":"{SPEND}:country","value":"CA"}}"#),
                // US-WA → CA-WA leaves stateProvince WA as it was: nothing to send.
            ],
        );
    }

    #[test]
    fn entitlements_roles_and_manager_change_one_value_at_a_time() {
        let role = "urn:ietf:params:scim:schemas:extension:spend:2.0:Role";
        let approver = "urn:ietf:params:scim:schemas:extension:spend:2.0:Approver";
        check(
            OpKind::Update,
            &[
                (Field::EXPENSE_USER, "N"),
                (Field::TRIP_USER, "Y"),
                (Field::INVOICE_USER, "N"),
                (Field::EXPENSE_APPROVER, ""),
                (Field::INVOICE_APPROVER, "Y"),
                (Field::MANAGER_EMPLOYEE_ID, "M2"),
            ],
            &[
                r#"{"op":"remove","path":"entitlements[value eq \"Expense\"]"}"#,
                &format!(
                    r#"{{"op":"remove","path":"{role}:roles[roleName eq \"EXP_APPROVER\"]"}}"#
                ),
                r#"{"op":"add","path":"entitlements","value":["Travel"]}"#,
                &format!(
                    r#"{{"op":"add","path":"{role}:roles","value":[{{"roleName":"INV_APPROVER"}}]}}"#
                ),
                &format!(r#"{{"op":"remove","path":"{approver}:report[primary eq true]"}}"#),
                &format!(
                    r#"{{"op":"add","path":"{approver}:report","value":[{{"approver":{{"employeeNumber":"M2"}},"primary":true}}]}}"#
                ),
            ],
        );
        check(
            OpKind::Update,
            &[(Field::MANAGER_EMPLOYEE_ID, "")],
            &[&format!(
                r#"{{"op":"remove","path":"{approver}:report[primary eq true]"}}"#
            )],
        );
        let mut old = base();
        old.remove(Field::MANAGER_EMPLOYEE_ID);
        let patch = patch_for(&op(OpKind::Update, &old, &base()), date());
        assert_eq!(
            patch.operations[0].to_value().to_string(),
            format!(r#"{{"op":"remove","path":"{approver}:report[primary eq true]"}}"#)
        );
        assert_eq!(
            patch.operations[1].to_value().to_string(),
            format!(
                r#"{{"op":"add","path":"{approver}:report","value":[{{"approver":{{"employeeNumber":"M1"}},"primary":true}}]}}"#
            )
        );
    }

    #[test]
    fn deactivation_reactivation_and_renames() {
        check(
            OpKind::Deactivate,
            &[(Field::ACTIVE, "N")],
            &[
                r#"{"op":"replace","path":"active","value":false}"#,
                &format!(
                    r#"{{"op":"replace","path":"{ENT}:terminationDate","value":"2026-09-30T00:00:00Z"}}"#
                ),
            ],
        );
        let mut gone = base();
        gone.set(Field::ACTIVE, "N");
        let mut back = base();
        back.set(Field::LAST_NAME, "Lee-Park");
        let patch = patch_for(&op(OpKind::Reactivate, &gone, &back), date());
        let got: Vec<String> = patch
            .operations
            .iter()
            .map(|o| o.to_value().to_string())
            .collect();
        assert_eq!(
            got,
            [
                r#"{"op":"replace","path":"active","value":true}"#.to_owned(),
                format!(r#"{{"op":"remove","path":"{ENT}:terminationDate"}}"#),
                r#"{"op":"replace","path":"name.familyName","value":"Lee-Park"}"#.to_owned(),
            ]
        );
        check(
            OpKind::Update,
            &[
                (Field::LOGIN_ID, "ann@example.com"),
                (Field::EMPLOYEE_ID, "E2"),
            ],
            &[
                r#"{"op":"replace","path":"userName","value":"ann@example.com"}"#,
                &format!(r#"{{"op":"replace","path":"{ENT}:employeeNumber","value":"E2"}}"#),
            ],
        );
        // A rename the changes do not list is still sent.
        let mut rename = op(OpKind::Update, &base(), &base());
        rename.old_employee_id = Some("E0".into());
        let patch = patch_for(&rename, date());
        assert_eq!(patch.operations.len(), 1);
        assert_eq!(patch.operations[0].path, format!("{ENT}:employeeNumber"));
        // Passwords have no v4 attribute.
        let mut pw = op(OpKind::Password, &base(), &base());
        pw.changes = base().changes_from(&User::new());
        assert!(patch_for(&pw, date()).is_empty());
    }

    #[test]
    fn the_body_is_a_patch_op() {
        let mut new = base();
        new.set(Field::FIRST_NAME, "Anne");
        let body = patch_for(&op(OpKind::Update, &base(), &new), date()).to_value();
        assert_eq!(
            body.to_string(),
            r#"{"Operations":[{"op":"replace","path":"name.givenName","value":"Anne"}],"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}"#
        );
        assert_eq!(termination_date(date()), "2026-09-30T00:00:00Z");
    }
}
