//! Builders and views the unit tests of several modules share.

use std::collections::BTreeMap;

use crate::model::{Op, OpKind, Rejection, User};
use crate::source::SourceItem;
use crate::source::ldap_map::Entry;

/// A user with employee id `id`, login `id@example.com` and last name `last`.
pub(crate) fn user_named(id: &str, last: &str) -> User {
    let mut u = User::new();
    u.set(crate::model::Field::EMPLOYEE_ID, id);
    u.set(crate::model::Field::LOGIN_ID, format!("{id}@example.com"));
    u.set(crate::model::Field::LAST_NAME, last);
    u
}

/// A planned operation on `user` with no rename, changes or password.
pub(crate) fn op(kind: OpKind, user: User, origin: &str) -> Op {
    Op {
        kind,
        employee_id: user.employee_id().to_owned(),
        user,
        old_login_id: None,
        old_employee_id: None,
        changes: Vec::new(),
        password: None,
        origin: origin.into(),
    }
}

/// An accepted source record's values by canonical field name; panics on a rejection.
pub(crate) fn fields(item: &SourceItem) -> BTreeMap<&'static str, String> {
    match item {
        SourceItem::Record(r) => r
            .values
            .iter()
            .map(|(f, v)| (f.name(), v.clone()))
            .collect(),
        SourceItem::Rejected(r) => panic!("rejected: {r}"),
    }
}

/// A source item's rejection; panics on an accepted record.
pub(crate) fn rejection(item: &SourceItem) -> &Rejection {
    match item {
        SourceItem::Rejected(r) => r,
        SourceItem::Record(r) => panic!("accepted: {:?}", r.origin),
    }
}

/// A directory entry read from `dn` (its origin too) with the given attribute values.
pub(crate) fn entry(dn: &str, attrs: &[(&str, &str)]) -> Entry {
    Entry {
        dn: dn.into(),
        origin: dn.into(),
        values: attrs
            .iter()
            .map(|(a, v)| (a.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect(),
        problems: vec![],
    }
}
