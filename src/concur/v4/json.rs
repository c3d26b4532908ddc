//! Tolerant reading of v4 JSON answers: members are found by exact name first, then ignoring
//! case (SCIM attribute names are case-insensitive); `null` counts as absent; unknown members
//! are ignored. A member of the wrong type is an error naming its path, e.g.
//! `operations[0].status.completed: expected a boolean, found a string`.

use serde_json::Value;

use crate::concur::error::ConcurError;

/// Parses a JSON body (`application/json` or `application/scim+json`, a BOM allowed) whose
/// root must be an object; `what` names the document in the error.
pub(super) fn parse(body: &str, what: &str) -> Result<Value, ConcurError> {
    let value: Value = serde_json::from_str(body.trim_start_matches('\u{feff}'))
        .map_err(|e| ConcurError::Decode(format!("{what} is not JSON: {e}")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ConcurError::Decode(format!(
            "{what}: expected a JSON object, found {}",
            kind(&value)
        )))
    }
}

/// A JSON object being read, with its path for messages (empty at the root).
#[derive(Clone, Debug)]
pub(super) struct Obj<'a> {
    pub value: &'a Value,
    pub path: String,
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `parent.key`, or `key` at the root.
pub(super) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn wrong(path: &str, expected: &str, found: &Value) -> ConcurError {
    ConcurError::Decode(format!(
        "{path}: expected {expected}, found {}",
        kind(found)
    ))
}

/// A member of an object: exact name first, then ignoring case; `null` is absent.
pub(super) fn member<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(key)
        .or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

impl<'a> Obj<'a> {
    pub fn root(value: &'a Value) -> Obj<'a> {
        Obj {
            value,
            path: String::new(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        member(self.value, key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A string member; numbers and booleans are read as their text (Concur writes codes both
    /// as `"400"` and `400`).
    pub fn string(&self, key: &str) -> Result<Option<String>, ConcurError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(wrong(&join(&self.path, key), "a string", other)),
        }
    }

    /// A string member that must be a JSON string (no numbers read as text).
    pub fn strict_string(&self, key: &str) -> Result<Option<&'a str>, ConcurError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(wrong(&join(&self.path, key), "a string", other)),
        }
    }

    /// A boolean member; the strings `"true"`/`"false"` are accepted too.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConcurError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(wrong(&join(&self.path, key), "a boolean", other)),
        }
    }

    /// A non-negative integer member; a string of digits is accepted too.
    pub fn count(&self, key: &str) -> Result<Option<u64>, ConcurError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(Value::String(s)) if s.trim().parse::<u64>().is_ok() => {
                Ok(s.trim().parse::<u64>().ok())
            }
            Some(other) => Err(wrong(&join(&self.path, key), "a count", other)),
        }
    }

    /// An object member, read with its path.
    pub fn object(&self, key: &str) -> Result<Option<Obj<'a>>, ConcurError> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(Obj {
                value: v,
                path: join(&self.path, key),
            })),
            Some(other) => Err(wrong(&join(&self.path, key), "an object", other)),
        }
    }

    /// An array member (absent: empty).
    pub fn array(&self, key: &str) -> Result<&'a [Value], ConcurError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(wrong(&join(&self.path, key), "an array", other)),
        }
    }

    /// Every item of an array member as an object, with `path[i]` as its path.
    pub fn objects(&self, key: &str) -> Result<Vec<Obj<'a>>, ConcurError> {
        let base = join(&self.path, key);
        self.array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let path = format!("{base}[{i}]");
                match v {
                    Value::Object(_) => Ok(Obj { value: v, path }),
                    other => Err(wrong(&path, "an object", other)),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_are_found_ignoring_case_and_null_is_absent() {
        let v = json!({"Status": {"Completed": "true"}, "code": 400, "none": null, "n": "7"});
        let root = Obj::root(&v);
        let status = root.object("status").unwrap().unwrap();
        assert_eq!(status.path, "status");
        assert_eq!(status.bool("completed").unwrap(), Some(true));
        assert_eq!(root.string("code").unwrap().as_deref(), Some("400"));
        assert_eq!(root.string("none").unwrap(), None);
        assert_eq!(root.count("n").unwrap(), Some(7));
        assert!(root.array("missing").unwrap().is_empty());
    }

    #[test]
    fn wrong_types_name_the_path() {
        let v = json!({"status": {"completed": 3}, "ops": [{"a": 1}, 2], "id": {}});
        let root = Obj::root(&v);
        let status = root.object("status").unwrap().unwrap();
        let e = status.bool("completed").unwrap_err().to_string();
        assert!(
            e.contains("status.completed: expected a boolean, found a number"),
            "{e}"
        );
        let e = root.objects("ops").unwrap_err().to_string();
        assert!(
            e.contains("ops[1]: expected an object, found a number"),
            "{e}"
        );
        let e = root.string("id").unwrap_err().to_string();
        assert!(e.contains("id: expected a string, found an object"), "{e}");
        assert!(parse("[1]", "a status").is_err());
        assert!(parse("\u{feff}{}", "a status").is_ok());
        assert!(
            parse("nope", "a status")
                .unwrap_err()
                .to_string()
                .contains("a status is not JSON")
        );
    }
}
