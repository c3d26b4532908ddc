//! User v1's names for the canonical fields: the `UserProfile` element of every [`Field`], in
//! the order the encoder sends them. The FormFields `Id`s of the company's employee form are
//! the same names, so this table also maps the form to canonical fields.

use crate::model::{FIELD_COUNT, Field};

/// Every canonical field with its `UserProfile` element, in the order a record sends them
/// (the keys first; the encoder puts `Password` after `Active`).
pub(super) const PROFILE: [(Field, &str); FIELD_COUNT] = [
    (Field::EMPLOYEE_ID, "EmpId"),
    (Field::LOGIN_ID, "LoginId"),
    (Field::LOCALE, "LocaleName"),
    (Field::ACTIVE, "Active"),
    (Field::FIRST_NAME, "FirstName"),
    (Field::LAST_NAME, "LastName"),
    (Field::MIDDLE_INITIAL, "Mi"),
    (Field::EMAIL, "EmailAddress"),
    (Field::LEDGER, "LedgerKey"),
    (Field::ORG_UNIT1, "OrgUnit1"),
    (Field::ORG_UNIT2, "OrgUnit2"),
    (Field::ORG_UNIT3, "OrgUnit3"),
    (Field::ORG_UNIT4, "OrgUnit4"),
    (Field::ORG_UNIT5, "OrgUnit5"),
    (Field::ORG_UNIT6, "OrgUnit6"),
    (Field::CUSTOM1, "Custom1"),
    (Field::CUSTOM2, "Custom2"),
    (Field::CUSTOM3, "Custom3"),
    (Field::CUSTOM4, "Custom4"),
    (Field::CUSTOM5, "Custom5"),
    (Field::CUSTOM6, "Custom6"),
    (Field::CUSTOM7, "Custom7"),
    (Field::CUSTOM8, "Custom8"),
    (Field::CUSTOM9, "Custom9"),
    (Field::CUSTOM10, "Custom10"),
    (Field::CUSTOM11, "Custom11"),
    (Field::CUSTOM12, "Custom12"),
    (Field::CUSTOM13, "Custom13"),
    (Field::CUSTOM14, "Custom14"),
    (Field::CUSTOM15, "Custom15"),
    (Field::CUSTOM16, "Custom16"),
    (Field::CUSTOM17, "Custom17"),
    (Field::CUSTOM18, "Custom18"),
    (Field::CUSTOM19, "Custom19"),
    (Field::CUSTOM20, "Custom20"),
    (Field::CUSTOM21, "Custom21"),
    (Field::COUNTRY, "CtryCode"),
    (Field::CASH_ADVANCE_ACCOUNT_CODE, "CashAdvanceAccountCode"),
    (Field::CURRENCY, "CrnKey"),
    (Field::COUNTRY_SUBDIVISION, "CtrySubCode"),
    (Field::EXPENSE_USER, "ExpenseUser"),
    (Field::EXPENSE_APPROVER, "ExpenseApprover"),
    (Field::TRIP_USER, "TripUser"),
    (Field::INVOICE_USER, "InvoiceUser"),
    (Field::INVOICE_APPROVER, "InvoiceApprover"),
    (Field::MANAGER_EMPLOYEE_ID, "ExpenseApproverEmployeeID"),
];

/// The `UserProfile` element of a canonical field, e.g. `LedgerKey` for `ledger`.
pub fn element(field: Field) -> &'static str {
    PROFILE
        .iter()
        .find(|(f, _)| *f == field)
        .map_or("", |(_, name)| name)
}

/// The canonical field a `UserProfile` element (or FormFields `Id`) stands for, ignoring case.
pub fn field(element: &str) -> Option<Field> {
    PROFILE
        .iter()
        .find(|(_, name)| name.eq_ignore_ascii_case(element))
        .map(|(f, _)| *f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_one_element() {
        for f in Field::all() {
            assert_eq!(PROFILE.iter().filter(|(p, _)| *p == f).count(), 1, "{f}");
            assert!(!element(f).is_empty(), "{f}");
            assert_eq!(field(&element(f).to_uppercase()), Some(f));
        }
        assert_eq!(element(Field::LEDGER), "LedgerKey");
        assert_eq!(field("PmtMethodCode"), None);
    }
}
