//! The policy file (spec `policy.md`): what the organisation has promised about
//! vendors, tenant residency and retention, and who may change production AI
//! configuration.
//!
//! A policy is parsed strictly (unknown keys are errors, every error names the
//! file, the line and the field) and then resolved once into lookup tables the
//! engine and the SQL rules use for the whole run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// The kinds of stored artifact that can carry a retention period.
pub const ARTIFACT_KINDS: [&str; 5] = ["prompt", "output", "embedding", "transcript", "log"];

const SECONDS_PER_DAY: i64 = 86_400;

/// The longest retention period a policy may give (50 years). Event times end
/// before 2200 ([`crate::decode::MAX_EVENT_TIME_NS`]) and i64 nanoseconds in
/// 2262, so a time plus this plus every other interval the engine adds stays in range.
pub const MAX_RETENTION_DAYS: u32 = 18_250;

/// The longest response timeout a policy may give (30 days).
pub const MAX_RESPONSE_TIMEOUT_SECONDS: u32 = 30 * 86_400;

/// A policy that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid policy file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    vendor: Vec<RawVendor>,
    #[serde(default)]
    tenant_defaults: Option<RawTenantDefaults>,
    #[serde(default)]
    tenant: Vec<RawTenant>,
    #[serde(default)]
    change_authorization: Vec<RawChangeAuthorization>,
    #[serde(default)]
    change_management: Option<RawChangeManagement>,
    #[serde(default)]
    logging: Option<RawLogging>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVendor {
    provider: Spanned<String>,
    #[serde(default)]
    dpa_signed: bool,
    #[serde(default)]
    trains_on_customer_data: bool,
    #[serde(default)]
    allowed_data_classes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenantDefaults {
    allowed_regions: Option<Vec<String>>,
    retention_days: Option<RetentionDays>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    tenant_id: Spanned<String>,
    allowed_regions: Option<Vec<String>>,
    retention_days: Option<RetentionDays>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChangeAuthorization {
    actor_id: String,
    resource_types: Vec<String>,
    environments: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChangeManagement {
    approval_required_in: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    #[serde(default, deserialize_with = "response_timeout")]
    response_timeout_seconds: Option<u32>,
}

/// Reads an optional number and checks it lies in `lo..=hi`; toml adds the line.
fn in_range<'de, D: Deserializer<'de>>(d: D, key: &str, lo: u32, hi: u32) -> Result<Option<u32>, D::Error> {
    let v = u32::deserialize(d)?;
    if v < lo || v > hi {
        return Err(D::Error::custom(format!("`{key}` must be from {lo} to {hi}, found {v}")));
    }
    Ok(Some(v))
}

fn response_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    in_range(d, "logging.response_timeout_seconds", 1, MAX_RESPONSE_TIMEOUT_SECONDS)
}

fn retention<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    in_range(d, "retention_days", 0, MAX_RETENTION_DAYS)
}

/// Retention in whole days per artifact kind; a kind left out has no deadline.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionDays {
    #[serde(default, deserialize_with = "retention")]
    pub prompt: Option<u32>,
    #[serde(default, deserialize_with = "retention")]
    pub output: Option<u32>,
    #[serde(default, deserialize_with = "retention")]
    pub embedding: Option<u32>,
    #[serde(default, deserialize_with = "retention")]
    pub transcript: Option<u32>,
    #[serde(default, deserialize_with = "retention")]
    pub log: Option<u32>,
}

impl RetentionDays {
    /// The days for `kind`, or `None` when the kind has no deadline (or is not a known kind).
    pub fn days(&self, kind: &str) -> Option<u32> {
        match kind {
            "prompt" => self.prompt,
            "output" => self.output,
            "embedding" => self.embedding,
            "transcript" => self.transcript,
            "log" => self.log,
            _ => None,
        }
    }

    /// `self` with every kind that `over` names replaced by `over`'s value.
    fn merged_with(&self, over: &RetentionDays) -> RetentionDays {
        RetentionDays {
            prompt: over.prompt.or(self.prompt),
            output: over.output.or(self.output),
            embedding: over.embedding.or(self.embedding),
            transcript: over.transcript.or(self.transcript),
            log: over.log.or(self.log),
        }
    }
}

/// An assessed model provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vendor {
    pub provider: String,
    pub dpa_signed: bool,
    pub trains_on_customer_data: bool,
    pub allowed_data_classes: Vec<String>,
}

/// The effective residency and retention of one tenant (its entry merged over the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPolicy {
    pub allowed_regions: Vec<String>,
    pub retention_days: RetentionDays,
}

/// One (actor, resource type, environment) that is allowed to change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authorization {
    pub actor_id: String,
    pub resource_type: String,
    pub environment: String,
}

/// A validated policy, resolved for lookups.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where it was loaded from, for messages.
    pub source: String,
    pub vendors: Vec<Vendor>,
    pub defaults: TenantPolicy,
    /// Tenants with an entry of their own, already merged over `defaults`.
    pub tenants: BTreeMap<String, TenantPolicy>,
    pub authorizations: Vec<Authorization>,
    pub approval_required_in: Vec<String>,
    pub response_timeout_seconds: i64,
    tenant_index: HashMap<String, usize>,
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Policy::parse(&text, &path.display().to_string()).map_err(|message| PolicyError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses policy text; `source` names it in messages.
    pub fn parse(text: &str, source: &str) -> Result<Policy, String> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        let line_of = |span: std::ops::Range<usize>| text[..span.start.min(text.len())].lines().count().max(1);

        let mut seen = HashSet::new();
        let mut vendors = Vec::with_capacity(raw.vendor.len());
        for v in raw.vendor {
            let provider = v.provider.get_ref().clone();
            if provider.is_empty() {
                return Err(format!("line {}: field `vendor.provider` is empty; name the provider as events send it", line_of(v.provider.span())));
            }
            if !seen.insert(provider.clone()) {
                return Err(format!(
                    "line {}: field `vendor.provider`: provider {provider:?} is listed twice; keep one [[vendor]] entry per provider",
                    line_of(v.provider.span())
                ));
            }
            vendors.push(Vendor {
                provider,
                dpa_signed: v.dpa_signed,
                trains_on_customer_data: v.trains_on_customer_data,
                allowed_data_classes: v.allowed_data_classes,
            });
        }

        let raw_defaults = raw.tenant_defaults.unwrap_or_default();
        let defaults = TenantPolicy {
            allowed_regions: raw_defaults.allowed_regions.unwrap_or_default(),
            retention_days: raw_defaults.retention_days.unwrap_or_default(),
        };

        let mut tenants = BTreeMap::new();
        for t in raw.tenant {
            let id = t.tenant_id.get_ref().clone();
            if tenants.contains_key(&id) {
                return Err(format!(
                    "line {}: field `tenant.tenant_id`: tenant {id:?} is listed twice; merge its [[tenant]] entries",
                    line_of(t.tenant_id.span())
                ));
            }
            let merged = TenantPolicy {
                allowed_regions: t.allowed_regions.unwrap_or_else(|| defaults.allowed_regions.clone()),
                retention_days: match &t.retention_days {
                    Some(r) => defaults.retention_days.merged_with(r),
                    None => defaults.retention_days.clone(),
                },
            };
            tenants.insert(id, merged);
        }

        let mut authorizations = Vec::new();
        for a in raw.change_authorization {
            for resource_type in &a.resource_types {
                for environment in &a.environments {
                    authorizations.push(Authorization {
                        actor_id: a.actor_id.clone(),
                        resource_type: resource_type.clone(),
                        environment: environment.clone(),
                    });
                }
            }
        }

        let approval_required_in = raw
            .change_management
            .and_then(|c| c.approval_required_in)
            .unwrap_or_else(|| vec!["production".to_string()]);
        let response_timeout_seconds = raw.logging.and_then(|l| l.response_timeout_seconds).unwrap_or(300) as i64;

        let tenant_index = tenants.keys().enumerate().map(|(i, k)| (k.clone(), i)).collect();
        Ok(Policy {
            source: source.to_string(),
            vendors,
            defaults,
            tenants,
            authorizations,
            approval_required_in,
            response_timeout_seconds,
            tenant_index,
        })
    }

    /// The effective policy of a tenant: its own entry, or the defaults.
    pub fn tenant(&self, tenant_id: &str) -> &TenantPolicy {
        self.tenants.get(tenant_id).unwrap_or(&self.defaults)
    }

    /// Whether the tenant has a `[[tenant]]` entry of its own.
    pub fn has_tenant_entry(&self, tenant_id: &str) -> bool {
        self.tenant_index.contains_key(tenant_id)
    }

    /// Seconds an artifact of `kind` may be kept for `tenant_id`, `None` for no deadline.
    pub fn retention_seconds(&self, tenant_id: &str, kind: &str) -> Option<i64> {
        self.tenant(tenant_id).retention_days.days(kind).map(|d| d as i64 * SECONDS_PER_DAY)
    }

    /// The longest retention period of any tenant and kind, in seconds (0 when none).
    pub fn max_retention_seconds(&self) -> i64 {
        std::iter::once(&self.defaults)
            .chain(self.tenants.values())
            .flat_map(|t| ARTIFACT_KINDS.iter().filter_map(|k| t.retention_days.days(k)))
            .max()
            .map_or(0, |d| d as i64 * SECONDS_PER_DAY)
    }

    /// A small policy that approves nothing: every provider is unapproved.
    pub fn empty() -> Policy {
        Policy::parse("", "<empty policy>").expect("the empty policy is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[vendor]]
provider = "openai"
dpa_signed = true
trains_on_customer_data = false
allowed_data_classes = ["public", "pii"]

[tenant_defaults]
allowed_regions = ["us-east-1", "us-west-2"]
retention_days = { prompt = 30, output = 30, log = 90 }

[[tenant]]
tenant_id = "globex"
allowed_regions = ["eu-west-1"]
retention_days = { prompt = 7 }

[[change_authorization]]
actor_id = "user:alice"
resource_types = ["prompt_template", "model"]
environments = ["production", "staging"]
"#;

    #[test]
    fn tenant_entries_merge_over_defaults_key_by_key() {
        let p = Policy::parse(EXAMPLE, "t").unwrap();
        assert_eq!(p.tenant("globex").allowed_regions, vec!["eu-west-1"]);
        assert_eq!(p.retention_seconds("globex", "prompt"), Some(7 * 86_400));
        assert_eq!(p.retention_seconds("globex", "output"), Some(30 * 86_400));
        assert_eq!(p.retention_seconds("globex", "embedding"), None);
        assert_eq!(p.tenant("anyone").allowed_regions, vec!["us-east-1", "us-west-2"]);
        assert_eq!(p.authorizations.len(), 4);
        assert_eq!(p.approval_required_in, vec!["production"]);
        assert_eq!(p.response_timeout_seconds, 300);
    }

    #[test]
    fn absent_sections_take_the_documented_defaults() {
        let p = Policy::parse("", "t").unwrap();
        assert!(p.vendors.is_empty());
        assert!(p.tenant("x").allowed_regions.is_empty());
        assert_eq!(p.retention_seconds("x", "prompt"), None);
        assert_eq!(p.approval_required_in, vec!["production"]);
    }

    #[test]
    fn unknown_key_is_an_error_naming_line_and_field() {
        let err = Policy::parse("[[vendor]]\nprovider = \"x\"\ndpa_sgned = true\n", "t").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("dpa_sgned"), "{err}");
    }

    #[test]
    fn wrong_type_is_an_error_naming_line() {
        let err = Policy::parse("[logging]\nresponse_timeout_seconds = \"300\"\n", "t").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        let err = Policy::parse("[tenant_defaults]\nretention_days = { prompt = -1 }\n", "t").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn unknown_retention_kind_is_an_error() {
        let err = Policy::parse("[tenant_defaults]\nretention_days = { prompts = 3 }\n", "t").unwrap_err();
        assert!(err.contains("prompts"), "{err}");
    }

    #[test]
    fn duplicate_vendor_is_an_error_with_its_line() {
        let err = Policy::parse("[[vendor]]\nprovider = \"a\"\n[[vendor]]\nprovider = \"a\"\n", "t").unwrap_err();
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn values_that_would_overflow_are_refused_naming_key_and_line() {
        let err = Policy::parse("[tenant_defaults]\nretention_days = { prompt = 4000000000 }\n", "t").unwrap_err();
        assert!(err.contains("line 2") && err.contains("`retention_days`") && err.contains("18250"), "{err}");
        let err = Policy::parse("[[tenant]]\ntenant_id = \"a\"\nretention_days = { log = 18251 }\n", "t").unwrap_err();
        assert!(err.contains("line 3") && err.contains("`retention_days`"), "{err}");
        let err = Policy::parse("[logging]\nresponse_timeout_seconds = 0\n", "t").unwrap_err();
        assert!(err.contains("line 2") && err.contains("`logging.response_timeout_seconds`"), "{err}");
        let p = Policy::parse("[tenant_defaults]\nretention_days = { prompt = 18250, log = 0 }\n[logging]\nresponse_timeout_seconds = 2592000\n", "t").unwrap();
        assert_eq!(p.max_retention_seconds(), 18_250 * 86_400);
        assert_eq!(p.retention_seconds("x", "log"), Some(0));
    }
}
