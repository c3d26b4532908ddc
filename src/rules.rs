//! The company's own form rules: which validation rules the fields of its Concur employee form
//! (FormFields `Required`, `MaxLength`) imply, and the plan step that rejects the writes breaking
//! them. Pure: the fields, the plan and the mapping of the form's field ids to canonical fields
//! (which belongs to the Concur API the form was read from) are arguments, wherever they were
//! read or cached.

use crate::model::{Field, Op, OpKind, Rejection};
use crate::validate::CompanyRules;

/// One field of the company's Concur employee form as Concur lists it (User v1 FormFields), not
/// mapped to canonical fields: what the Concur client reads and the state database caches.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FormField {
    /// The form's id for the field, as Concur lists it (e.g. `LedgerKey`).
    pub id: String,
    pub label: String,
    pub control_type: String,
    pub data_type: String,
    pub max_length: Option<u32>,
    pub required: bool,
    pub custom: bool,
    pub sequence: Option<u32>,
}

impl FormField {
    /// What this field requires of a user record.
    pub fn rule(&self) -> FormRule<'_> {
        FormRule {
            id: &self.id,
            required: self.required,
            max_length: self.max_length,
        }
    }
}

/// What one field of the company's employee form requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormRule<'a> {
    /// The form's id for the field, as Concur lists it (e.g. `LedgerKey`).
    pub id: &'a str,
    pub required: bool,
    pub max_length: Option<u32>,
}

/// The validation rules form fields imply: required fields concur-sync can fill (employee and
/// login ids are always required anyway) and maximum lengths below the general ones. `field_of`
/// maps a form field id to the canonical field it stands for (`None`: not one concur-sync
/// sends); each rule keeps the form's id to name the field in messages.
pub fn company_rules<'a>(
    fields: impl IntoIterator<Item = FormRule<'a>>,
    field_of: impl Fn(&str) -> Option<Field>,
) -> CompanyRules {
    let mut rules = CompanyRules::default();
    for f in fields {
        let Some(field) = field_of(f.id) else {
            continue;
        };
        if f.required && !matches!(field, Field::EMPLOYEE_ID | Field::LOGIN_ID | Field::ACTIVE) {
            rules.required.push((field, f.id.to_owned()));
        }
        if let Some(max) = f.max_length
            && (max as usize) < field.spec().max_len
        {
            rules.max_len.push((field, max as usize, f.id.to_owned()));
        }
    }
    rules.required.sort_by_key(|(field, _)| *field);
    rules.required.dedup_by_key(|(field, _)| *field);
    rules.max_len.sort();
    rules
}

/// Rejects the planned creates, updates and reactivations that break the company's form rules
/// (Concur would refuse them); the rest of the plan, deactivations and passwords included, goes
/// through. Returns the kept operations and `rejections` with the new ones appended.
pub fn reject_breaking(
    rules: &CompanyRules,
    ops: Vec<Op>,
    mut rejections: Vec<Rejection>,
) -> (Vec<Op>, Vec<Rejection>) {
    let mut kept = Vec::with_capacity(ops.len());
    for op in ops {
        let broken = match op.kind {
            OpKind::Create | OpKind::Update | OpKind::Reactivate => {
                rules.rejections(&op.origin, &op.user)
            }
            OpKind::Deactivate | OpKind::Password => Vec::new(),
        };
        if broken.is_empty() {
            kept.push(op);
        } else {
            rejections.extend(broken);
        }
    }
    (kept, rejections)
}

#[cfg(test)]
mod tests;
