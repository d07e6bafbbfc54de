//! Rule files: one SQL query with its metadata in a comment header.
//!
//! ```sql
//! -- id: vendor.unapproved
//! -- title: AI request sent to an unapproved vendor
//! -- category: vendor
//! -- severity: high
//! -- controls: CC9.2, CC6.7
//! -- description: A model call went to a provider with no signed DPA.
//! --   Indented comment lines continue the key above.
//! -- remediation: Sign a DPA or route the feature to an approved vendor.
//! -- runbook: https://wiki.example.com/soc2/vendor-unapproved
//! SELECT ...
//! ```
//!
//! The built-in pack (`queries/*.sql`) is compiled into the binary; `--rules DIR`
//! adds the `*.sql` files of a folder, and a user rule with a built-in's id
//! replaces the built-in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub mod fixtures;

include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));

pub const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "info"];

/// A rule file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct RuleError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// One rule: metadata and SQL, as written in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub category: String,
    pub severity: String,
    pub controls: Vec<String>,
    pub description: String,
    pub remediation: String,
    /// Where on-call reads what to do (`-- runbook:`, an http(s) URL); empty when not given.
    pub runbook_url: String,
    /// How far back in event time the rule looks into `history` (`-- horizon:`,
    /// e.g. `1h`, `90m`, `3600s`, `1d`): history keeps rows for the longest
    /// horizon of the loaded rules that read it, and for 24 h when one of them
    /// declares none.
    pub horizon_seconds: Option<i64>,
    /// The whole file text: the header is SQL comments, so line numbers in
    /// SQL errors are line numbers in the file.
    pub sql: String,
    /// Where it came from: `queries/x.sql` for built-ins, a path for user rules.
    pub file: String,
    pub builtin: bool,
}

impl Rule {
    /// Parses a rule file's text.
    pub fn parse(text: &str, file: &str, builtin: bool) -> Result<Rule, RuleError> {
        let err = |line: usize, message: String| RuleError { file: file.to_string(), line, message };
        let mut meta: BTreeMap<&'static str, (usize, String)> = BTreeMap::new();
        let mut last: Option<&'static str> = None;
        let mut body_seen = false;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let trimmed = line.trim_start();
            let Some(comment) = trimmed.strip_prefix("--") else {
                if !trimmed.is_empty() {
                    body_seen = true;
                    break;
                }
                continue;
            };
            // A continuation: an indented comment line right after a key.
            if comment.starts_with("  ") || comment.starts_with('\t') {
                if let Some(k) = last {
                    let v = &mut meta.get_mut(k).expect("last key exists").1;
                    if !v.is_empty() {
                        v.push(' ');
                    }
                    v.push_str(comment.trim());
                    continue;
                }
            }
            let comment = comment.trim();
            if comment.is_empty() {
                last = None;
                continue;
            }
            let Some((key, value)) = comment.split_once(':') else {
                last = None;
                continue; // an ordinary comment
            };
            let key = match key.trim() {
                "id" => "id",
                "title" => "title",
                "category" => "category",
                "severity" => "severity",
                "controls" => "controls",
                "description" => "description",
                "remediation" => "remediation",
                "horizon" => "horizon",
                "runbook" => "runbook",
                other if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !other.is_empty() => {
                    return Err(err(
                        n,
                        format!("unknown metadata key `{other}`; the keys are id, title, category, severity, controls, description, remediation, horizon, runbook"),
                    ))
                }
                _ => {
                    last = None;
                    continue;
                }
            };
            if meta.contains_key(key) {
                return Err(err(n, format!("metadata key `{key}` is given twice")));
            }
            meta.insert(key, (n, value.trim().to_string()));
            last = Some(key);
        }
        if !body_seen {
            return Err(err(text.lines().count().max(1), "the file has no SQL query after its metadata header".into()));
        }
        let id_line = meta.get("id").map(|m| m.0).unwrap_or(1);
        let horizon_line = meta.get("horizon").map(|m| m.0).unwrap_or(1);
        let sev_line = meta.get("severity").map(|m| m.0).unwrap_or(1);
        let runbook_line = meta.get("runbook").map(|m| m.0).unwrap_or(1);
        let mut take = |key: &'static str, required: bool| -> Result<String, RuleError> {
            match meta.remove(key) {
                Some((n, v)) if v.is_empty() && required => Err(err(n, format!("metadata key `{key}` is empty"))),
                Some((_, v)) => Ok(v),
                None if required => Err(err(1, format!("missing metadata `-- {key}: ...` in the header"))),
                None => Ok(String::new()),
            }
        };
        let id = take("id", true)?;
        if !id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(err(id_line, format!("rule id `{id}` may hold only letters, digits, '.', '_' and '-'")));
        }
        let title = take("title", true)?;
        let category = take("category", true)?;
        let severity = take("severity", true)?;
        if !SEVERITIES.contains(&severity.as_str()) {
            return Err(err(sev_line, format!("severity `{severity}` is not one of {}", SEVERITIES.join(", "))));
        }
        let controls = take("controls", false)?
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        let description = take("description", false)?;
        let remediation = take("remediation", false)?;
        let horizon = take("horizon", false)?;
        let runbook_url = take("runbook", false)?;
        if !runbook_url.is_empty() && !is_http_url(&runbook_url) {
            return Err(err(runbook_line, format!("runbook `{runbook_url}` is not an http:// or https:// URL")));
        }
        let horizon_seconds = if horizon.is_empty() {
            None
        } else {
            Some(parse_duration(&horizon).ok_or_else(|| {
                err(horizon_line, format!("horizon `{horizon}` is not a duration from 1s to 366d such as 3600s, 90m, 1h or 1d"))
            })?)
        };
        Ok(Rule {
            id,
            title,
            category,
            severity,
            controls,
            description,
            remediation,
            runbook_url,
            horizon_seconds,
            sql: text.to_string(),
            file: file.to_string(),
            builtin,
        })
    }
}

/// An absolute `http://` or `https://` URL with a host and no spaces.
pub fn is_http_url(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !s.chars().any(char::is_whitespace))
}

/// `3600s`, `90m`, `1h`, `1d` (a number and a unit), from 1 s to 366 days.
fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let unit = match s.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: i64 = s[..s.len() - 1].trim().parse().ok()?;
    let secs = n.checked_mul(unit)?;
    (1..=366 * 86_400).contains(&secs).then_some(secs)
}

/// The built-in rules, as compiled into the binary.
pub fn builtin() -> Vec<Rule> {
    BUILTIN_RULES
        .iter()
        .map(|(file, text)| Rule::parse(text, file, true).unwrap_or_else(|e| panic!("built-in rule is invalid: {e}")))
        .collect()
}

/// The `*.sql` files of a folder, in name order.
pub fn load_dir(dir: &Path) -> Result<Vec<Rule>, RuleError> {
    let read_err = |p: &Path, e: std::io::Error| RuleError { file: p.display().to_string(), line: 0, message: format!("cannot read: {e}") };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| read_err(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| read_err(p, e))?;
            Rule::parse(&text, &p.display().to_string(), false)
        })
        .collect()
}

/// The pack in force: the built-ins, with user rules added or replacing by id.
pub fn pack(user_dir: Option<&Path>) -> Result<Vec<Rule>, RuleError> {
    let mut rules = builtin();
    if let Some(dir) = user_dir {
        for user in load_dir(dir)? {
            if let Some(dup) = rules.iter().find(|r| !r.builtin && r.id == user.id) {
                return Err(RuleError {
                    file: user.file.clone(),
                    line: 1,
                    message: format!("rule id `{}` is already used by {}", user.id, dup.file),
                });
            }
            match rules.iter_mut().find(|r| r.id == user.id) {
                Some(slot) => *slot = user,
                None => rules.push(user),
            }
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "-- id: x.y\n-- title: T\n-- category: c\n-- severity: high\n-- controls: CC1, C2\n-- description: one\n--   two\n\nSELECT 1\n";

    #[test]
    fn header_is_parsed_with_continuations() {
        let r = Rule::parse(GOOD, "f.sql", false).unwrap();
        assert_eq!(r.id, "x.y");
        assert_eq!(r.controls, vec!["CC1", "C2"]);
        assert_eq!(r.description, "one two");
        assert_eq!(r.remediation, "");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = Rule::parse(&GOOD.replace("severity: high", "severity: urgent"), "f.sql", false).unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("f.sql", 4));
        let e = Rule::parse(&GOOD.replace("-- controls", "-- control"), "f.sql", false).unwrap_err();
        assert_eq!(e.line, 5);
        assert!(e.to_string().contains("unknown metadata key `control`"), "{e}");
        let e = Rule::parse("-- id: a\n", "f.sql", false).unwrap_err();
        assert!(e.message.contains("no SQL"), "{e}");
    }

    #[test]
    fn the_builtin_pack_has_the_thirteen_rules_of_the_spec() {
        let ids: Vec<String> = builtin().into_iter().map(|r| r.id).collect();
        for id in [
            "vendor.unapproved",
            "vendor.trains_on_data",
            "vendor.data_class",
            "vendor.region",
            "xtenant.context",
            "xtenant.response",
            "xtenant.conversation",
            "retention.region",
            "retention.expired",
            "change.unauthorized",
            "change.unreviewed",
            "logging.missing_response",
            "logging.missing_actor",
        ] {
            assert!(ids.contains(&id.to_string()), "{id} missing from {ids:?}");
        }
    }

    #[test]
    fn a_runbook_is_an_http_url_and_a_bad_one_names_its_line() {
        let head = "-- id: x.y\n-- title: t\n-- category: c\n-- severity: low\n";
        let rule = Rule::parse(&format!("{head}-- runbook: https://wiki.example.com/soc2/x-y\nSELECT 1"), "r.sql", false).unwrap();
        assert_eq!(rule.runbook_url, "https://wiki.example.com/soc2/x-y");
        assert_eq!(Rule::parse(&format!("{head}SELECT 1"), "r.sql", false).unwrap().runbook_url, "");
        for bad in ["wiki/x", "ftp://host/x", "https://", "https://host/a b"] {
            let e = Rule::parse(&format!("{head}-- runbook: {bad}\nSELECT 1"), "r.sql", false).unwrap_err();
            assert_eq!(e.line, 5, "{bad}: {e:?}");
            assert!(e.message.contains("runbook"), "{e}");
        }
    }

    #[test]
    fn a_horizon_is_a_duration_and_a_bad_one_names_its_line() {
        let head = "-- id: x.y\n-- title: t\n-- category: c\n-- severity: low\n";
        let rule = Rule::parse(&format!("{head}-- horizon: 90m\nSELECT 1"), "r.sql", false).unwrap();
        assert_eq!(rule.horizon_seconds, Some(5400));
        assert_eq!(Rule::parse(&format!("{head}SELECT 1"), "r.sql", false).unwrap().horizon_seconds, None);
        let e = Rule::parse(&format!("{head}-- horizon: soon\nSELECT 1"), "r.sql", false).unwrap_err();
        assert_eq!(e.line, 5, "{e:?}");
        assert!(Rule::parse(&format!("{head}-- horizon: 400d\nSELECT 1"), "r.sql", false).is_err());
    }
}
