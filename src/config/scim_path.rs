//! SCIM attribute paths as `[source.scim.attributes]` writes them (`userName`,
//! `name.givenName`, `emails[type eq "work"].value`, `urn:…:enterprise:2.0:User:costCenter`):
//! their syntax, parsed when the configuration is loaded. Finding a path's value in a resource
//! is the source's business.

/// The core User schema: its attributes sit at the top of a resource.
pub const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A value in a value filter: `type eq "work"`, `primary eq true`.
#[derive(Clone, Debug, PartialEq)]
pub enum FilterValue {
    Text(String),
    Bool(bool),
}

/// One parsed attribute path: `[schema:]attr[[sub eq value]][.sub]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AttrPath {
    text: String,
    schema: Option<String>,
    attr: String,
    filter: Option<(String, FilterValue)>,
    sub: Option<String>,
}

impl AttrPath {
    /// Parses a path; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<AttrPath, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty attribute path".into());
        }
        let (schema, rest) = if t.len() > 4 && t[..4].eq_ignore_ascii_case("urn:") {
            let head_end = t.find('[').unwrap_or(t.len());
            let head = &t[..head_end];
            // The attribute starts after the last ':' (before any '.' of a sub-attribute).
            let dot = head
                .rfind(':')
                .map_or(0, |c| head[c..].find('.').map_or(head.len(), |d| c + d));
            let colon = head[..dot.max(1)]
                .rfind(':')
                .ok_or_else(|| format!("{t:?}: a schema URN must be followed by :attribute"))?;
            (Some(t[..colon].to_owned()), &t[colon + 1..])
        } else {
            (None, t)
        };
        let name_end = rest.find(['[', '.']).unwrap_or(rest.len());
        let attr = &rest[..name_end];
        if !valid_name(attr) {
            return Err(format!("{t:?}: {attr:?} is not an attribute name"));
        }
        let mut tail = &rest[name_end..];
        let mut filter = None;
        if let Some(f) = tail.strip_prefix('[') {
            let close = f
                .find(']')
                .ok_or_else(|| format!("{t:?}: '[' without a closing ']'"))?;
            filter = Some(parse_filter(&f[..close]).map_err(|e| format!("{t:?}: {e}"))?);
            tail = &f[close + 1..];
        }
        let sub = match tail.strip_prefix('.') {
            Some(s) if valid_name(s) => Some(s.to_owned()),
            Some(s) => return Err(format!("{t:?}: {s:?} is not a sub-attribute name")),
            None if tail.is_empty() => None,
            None => return Err(format!("{t:?}: unexpected {tail:?}")),
        };
        Ok(AttrPath {
            text: t.to_owned(),
            schema,
            attr: attr.to_owned(),
            filter,
            sub,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for the enterprise `manager` (or `manager.value`): its value is the manager's SCIM
    /// id, which the reader resolves to the manager's employee id.
    pub fn is_manager_reference(&self) -> bool {
        self.attr.eq_ignore_ascii_case("manager")
            && self
                .sub
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case("value"))
    }

    /// The schema URN the attribute belongs to, when the path names one.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The attribute's name.
    pub fn attr(&self) -> &str {
        &self.attr
    }

    /// The value filter (`[key eq value]`) that picks one of several values, if any.
    pub fn filter(&self) -> Option<(&str, &FilterValue)> {
        self.filter.as_ref().map(|(k, v)| (k.as_str(), v))
    }

    /// The sub-attribute (`.value`), if any.
    pub fn sub(&self) -> Option<&str> {
        self.sub.as_deref()
    }
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

fn parse_filter(f: &str) -> Result<(String, FilterValue), String> {
    let f = f.trim();
    let lower = f.to_ascii_lowercase();
    let at = lower
        .find(" eq ")
        .ok_or_else(|| format!("value filter [{f}] must have the form [attribute eq value]"))?;
    let key = f[..at].trim();
    let raw = f[at + 4..].trim();
    if !valid_name(key) {
        return Err(format!("{key:?} is not an attribute name"));
    }
    let value = if let Some(s) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        FilterValue::Text(s.to_owned())
    } else if raw.eq_ignore_ascii_case("true") {
        FilterValue::Bool(true)
    } else if raw.eq_ignore_ascii_case("false") {
        FilterValue::Bool(false)
    } else {
        return Err(format!(
            "value filter [{f}]: the value must be \"quoted text\", true or false"
        ));
    };
    Ok((key.to_owned(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_and_reject_nonsense() {
        let p = AttrPath::parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        )
        .unwrap();
        assert_eq!(p.schema(), Some(ENTERPRISE));
        assert_eq!(p.attr(), "manager");
        assert_eq!(p.sub(), Some("value"));
        assert!(p.is_manager_reference());
        let p = AttrPath::parse("emails[type eq \"work\"].value").unwrap();
        assert_eq!(
            p.filter(),
            Some(("type", &FilterValue::Text("work".into())))
        );
        for bad in [
            "",
            "emails[type]",
            "emails[type eq work]",
            "a b",
            "emails[x eq \"y\"",
        ] {
            assert!(AttrPath::parse(bad).is_err(), "{bad}");
        }
    }
}
