use super::*;

#[test]
fn field_table_is_consistent() {
    for (i, f) in Field::all().enumerate() {
        assert_eq!(f.0 as usize, i);
        assert_eq!(Field::from_name(f.name()), Some(f));
    }
}

#[test]
fn user_set_get_and_hash() {
    let mut a = User::new();
    a.set(Field::LAST_NAME, "O'Brien");
    a.set(Field::EMPLOYEE_ID, "1");
    a.set(Field::FIRST_NAME, "");
    assert_eq!(a.iter().count(), 2);
    let mut b = User::new();
    b.set(Field::EMPLOYEE_ID, "1");
    b.set(Field::LAST_NAME, "O'Brien");
    assert_eq!(a.content_hash(), b.content_hash());
    b.set(Field::LAST_NAME, "OBrien");
    assert_ne!(a.content_hash(), b.content_hash());
    let ch = b.changes_from(&a);
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].old.as_deref(), Some("O'Brien"));
    assert!(a.is_active());
}

#[test]
fn secret_is_redacted() {
    let s = Secret::new("hunter2");
    assert!(!format!("{s:?} {s}").contains("hunter2"));
}
