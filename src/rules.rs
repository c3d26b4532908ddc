//! The company's own form rules: which validation rules the fields of its Concur employee form
//! (FormFields `Required`, `MaxLength`) imply. Pure: the fields are an argument, wherever they
//! were read or cached, and so is the mapping of the form's field ids to canonical fields, which
//! belongs to the Concur API the form was read from.

use crate::model::Field;
use crate::validate::CompanyRules;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, required: bool, max_length: Option<u32>) -> FormRule<'_> {
        FormRule {
            id,
            required,
            max_length,
        }
    }

    #[test]
    fn rules_name_the_form_field_and_skip_what_is_always_required() {
        let field_of = |id: &str| match id {
            "LedgerKey" => Some(Field::LEDGER),
            "OrgUnit1" => Some(Field::ORG_UNIT1),
            "OrgUnit2" => Some(Field::ORG_UNIT2),
            "EmpId" => Some(Field::EMPLOYEE_ID),
            _ => None,
        };
        let rules = company_rules(
            [
                rule("OrgUnit2", true, Some(48)),
                rule("LedgerKey", true, Some(20)),
                rule("EmpId", true, Some(10)),
                rule("OrgUnit1", false, Some(10)),
                rule("PmtMethodCode", true, Some(1)),
            ],
            field_of,
        );
        assert_eq!(
            rules.required,
            [
                (Field::LEDGER, "LedgerKey".to_owned()),
                (Field::ORG_UNIT2, "OrgUnit2".to_owned())
            ]
        );
        assert_eq!(
            rules.max_len,
            [
                (Field::EMPLOYEE_ID, 10, "EmpId".to_owned()),
                (Field::ORG_UNIT1, 10, "OrgUnit1".to_owned())
            ]
        );
    }
}
