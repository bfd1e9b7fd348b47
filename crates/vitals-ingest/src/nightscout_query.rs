//! The queries of Nightscout's API v3 (`GET /api/v3/{collection}?...`): conditions
//! `<field>$<op>=<value>` (`eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `in`, `nin`; a bare
//! `<field>=<value>` is `eq`), conditions on time fields turned into a time window,
//! `sort`/`sort$desc`, `limit`, `skip`, `fields`; and what a condition says of a document.
//! `$re` (regular expressions) is refused: a pattern from the network is not run here.
//! And API v1's `find[<field>][$gte|$gt|$lte|$lt]=` time bounds and `find[<field>]=`.

use std::collections::HashMap;

use serde_json::Value;

use crate::nightscout::find_time;

/// The most documents one read answers (Nightscout's `API3_MAX_LIMIT`).
pub const MAX_LIMIT: usize = 1000;

/// One search condition on a field: `<field>$<op>=<value>`, or `<field>=<value>`.
pub struct Condition {
    pub field: String,
    pub op: String,
    pub value: String,
}

const TIME_FIELDS: [&str; 5] = ["date", "created_at", "mills", "startDate", "dateString"];

impl Condition {
    /// Whether a document meets the condition.
    pub fn holds(&self, doc: &Value) -> bool {
        let Some(have) = doc.get(&self.field) else { return self.op == "ne" || self.op == "nin" };
        let text = match have {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let number = |s: &str| s.parse::<f64>().ok();
        let cmp = || match (have.as_f64(), number(&self.value)) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => Some(text.as_str().cmp(self.value.as_str())),
        };
        match self.op.as_str() {
            "eq" => text == self.value,
            "ne" => text != self.value,
            "in" => self.value.split('|').any(|v| v == text),
            "nin" => !self.value.split('|').any(|v| v == text),
            "gt" => cmp() == Some(std::cmp::Ordering::Greater),
            "gte" => matches!(cmp(), Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)),
            "lt" => cmp() == Some(std::cmp::Ordering::Less),
            "lte" => matches!(cmp(), Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)),
            // `re` and anything else were refused when the query was read.
            _ => false,
        }
    }
}

/// What a search asks: conditions, the time window they imply, order, page, fields.
pub struct Search {
    pub conditions: Vec<Condition>,
    /// Start times in `[from, to)`.
    pub window: (i64, i64),
    pub ascending: bool,
    pub limit: usize,
    pub skip: usize,
    pub fields: Option<String>,
}

/// Reads a query; the reason if it cannot be served.
pub fn search_of(q: &HashMap<String, String>) -> Result<Search, String> {
    let mut s = Search {
        conditions: Vec::new(),
        window: (i64::MIN, i64::MAX),
        ascending: false,
        limit: MAX_LIMIT,
        skip: 0,
        fields: None,
    };
    let mut keys: Vec<&String> = q.keys().collect();
    keys.sort();
    for k in keys {
        let v = &q[k];
        match k.as_str() {
            "limit" => {
                s.limit = v.parse::<usize>().map_err(|_| format!("limit {v:?} is not a count"))?.clamp(1, MAX_LIMIT)
            }
            "skip" => s.skip = v.parse().map_err(|_| format!("skip {v:?} is not a count"))?,
            "sort" => s.ascending = true,
            "sort$desc" => s.ascending = false,
            "fields" => s.fields = Some(v.clone()),
            "token" | "secret" | "now" => {}
            _ => {
                let (field, op) = k.split_once('$').unwrap_or((k.as_str(), "eq"));
                if !matches!(op, "eq" | "ne" | "gt" | "gte" | "lt" | "lte" | "in" | "nin") {
                    return Err(format!("{k}: operator ${op} is not supported"));
                }
                if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                    return Err(format!("{k}: not a field name"));
                }
                if TIME_FIELDS.contains(&field)
                    && let Some(t) = find_time(v)
                {
                    let (from, to) = &mut s.window;
                    match op {
                        "gt" => *from = (*from).max(t.saturating_add(1)),
                        "gte" => *from = (*from).max(t),
                        "lt" => *to = (*to).min(t),
                        "lte" => *to = (*to).min(t.saturating_add(1)),
                        "eq" => (*from, *to) = ((*from).max(t), (*to).min(t.saturating_add(1))),
                        _ => {}
                    }
                    // A time on a document is in ms, a date or both: the window decides.
                    continue;
                }
                s.conditions.push(Condition { field: field.to_owned(), op: op.to_owned(), value: v.clone() });
            }
        }
    }
    Ok(s)
}

/// Keeps only the `fields` asked for (comma-separated; `_all` or nothing: every field).
pub fn project(doc: Value, fields: Option<&str>) -> Value {
    let Some(list) = fields.filter(|f| !f.is_empty() && *f != "_all") else { return doc };
    let keep: Vec<&str> = list.split(',').map(str::trim).collect();
    match doc {
        Value::Object(o) => Value::Object(o.into_iter().filter(|(k, _)| keep.contains(&k.as_str())).collect()),
        other => other,
    }
}

fn bound(q: &HashMap<String, String>, field: &str, op: &str) -> Option<i64> {
    q.get(&format!("find[{field}][{op}]")).and_then(|v| find_time(v))
}

/// The bounds of `find[<field>][$gte|$gt|$lte|$lt]` on any of `fields`, as `[from, to)`
/// within `[from, to)`.
pub fn time_bounds(q: &HashMap<String, String>, fields: &[&str], (mut from, mut to): (i64, i64)) -> (i64, i64) {
    for field in fields {
        if let Some(t) = bound(q, field, "$gte") {
            from = from.max(t);
        }
        if let Some(t) = bound(q, field, "$gt") {
            from = from.max(t.saturating_add(1));
        }
        if let Some(t) = bound(q, field, "$lte") {
            to = to.min(t.saturating_add(1));
        }
        if let Some(t) = bound(q, field, "$lt") {
            to = to.min(t);
        }
    }
    (from, to)
}

/// The first `find[<field>]=<value>` of a query that is an equality (not a time bound);
/// refused unless the field is a plain name.
pub fn equality_find(q: &HashMap<String, String>) -> Result<Option<(String, String)>, String> {
    let mut found: Vec<(String, String)> = q
        .iter()
        .filter_map(|(k, v)| {
            let field = k.strip_prefix("find[")?.strip_suffix(']')?;
            (!field.contains('[') && !field.contains(']')).then(|| (field.to_owned(), v.clone()))
        })
        .collect();
    found.sort();
    match found.into_iter().next() {
        Some((k, _)) if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {
            Err(format!("find[{k}]: only a plain field name can be matched"))
        }
        first => Ok(first),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn searches_read_windows_conditions_order_and_pages() {
        let s = search_of(&q(&[("date$gt", "1000"), ("date$lte", "5000"), ("type", "sgv"), ("sort", "date")]))
            .expect("reads");
        assert_eq!(s.window, (1001, 5001));
        assert!(s.ascending);
        assert_eq!(s.conditions.len(), 1);
        assert!(s.conditions[0].holds(&json!({"type": "sgv"})));
        assert!(!s.conditions[0].holds(&json!({"type": "mbg"})));
        let s = search_of(&q(&[("created_at$gte", "2025-11-22T02:00:00Z"), ("limit", "5000")])).expect("reads");
        assert_eq!((s.window.0, s.limit), (1_763_776_800_000, MAX_LIMIT));
        let s = search_of(&q(&[("sgv$gte", "100"), ("eventType$in", "Note|Meal Bolus")])).expect("reads");
        let (sgv, kind) = (&s.conditions[1], &s.conditions[0]);
        assert!(sgv.holds(&json!({"sgv": 100})) && !sgv.holds(&json!({"sgv": 99})));
        assert!(kind.holds(&json!({"eventType": "Meal Bolus"})) && !kind.holds(&json!({"eventType": "Temp Basal"})));
        assert!(search_of(&q(&[("notes$re", ".*")])).is_err(), "regular expressions are refused");
        assert!(search_of(&q(&[("a b", "1")])).is_err());
        assert!(search_of(&q(&[("limit", "many")])).is_err());
    }

    #[test]
    fn v1_finds_give_time_bounds_and_one_equality() {
        let q = q(&[
            ("find[created_at][$gte]", "2025-11-22"),
            ("find[date][$lt]", "1763780400000"),
            ("find[device]", "loop://iPhone"),
            ("count", "3"),
        ]);
        assert_eq!(
            time_bounds(&q, &["created_at", "date"], (i64::MIN, i64::MAX)),
            (1_763_769_600_000, 1_763_780_400_000)
        );
        assert_eq!(equality_find(&q), Ok(Some(("device".to_owned(), "loop://iPhone".to_owned()))));
        let odd = [("find[a\"b]".to_owned(), "1".to_owned())].into();
        assert!(equality_find(&odd).is_err());
        assert_eq!(time_bounds(&q, &["mills"], (0, 10)), (0, 10), "other fields leave the window");
    }

    #[test]
    fn fields_keep_only_what_is_asked() {
        let doc = json!({"sgv": 100, "date": 1, "device": "x"});
        assert_eq!(project(doc.clone(), Some("sgv,date")), json!({"sgv": 100, "date": 1}));
        assert_eq!(project(doc.clone(), Some("_all")), doc);
        assert_eq!(project(doc.clone(), None), doc);
    }
}
