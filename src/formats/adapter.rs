//! The mapping configuration of the adapter formats (`[adapter]`, spec
//! `adapters.md`): which source keys hold the tenant and the actor, provider
//! names, and regions by API host. Parsed strictly: an unknown key is an
//! error that names it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::engine::state::HashMap as Fast;

/// `[adapter]` as written in a config file; every key has the default of `adapters.md`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    /// `litellm`: the tenant is the first of these paths into the payload that has a value.
    #[serde(default = "default_tenant_keys")]
    pub tenant_keys: Vec<String>,
    /// `litellm`: the actor of a request is the first of these paths that has a value.
    #[serde(default = "default_actor_keys")]
    pub actor_keys: Vec<String>,
    /// `litellm`: a request tag starting with this names a data class (`data:pii` -> `pii`).
    #[serde(default = "default_data_class_tag_prefix")]
    pub data_class_tag_prefix: String,
    /// OTLP: the tenant is the first of these attributes (span, then resource) that has a value.
    #[serde(default = "default_otel_tenant_keys")]
    pub otel_tenant_keys: Vec<String>,
    /// OTLP: the actor of a request is the first of these attributes that has a value.
    #[serde(default = "default_otel_actor_keys")]
    pub otel_actor_keys: Vec<String>,
    /// Source provider name -> aiwatch provider name; adds to and overrides the defaults.
    #[serde(default)]
    pub providers: BTreeMap<String, String>,
    /// API host -> region, for hosts that do not name their region; wins over the host patterns.
    #[serde(default)]
    pub regions: BTreeMap<String, String>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
fn default_tenant_keys() -> Vec<String> {
    strings(&["metadata.user_api_key_team_id", "metadata.user_api_key_org_id"])
}
fn default_actor_keys() -> Vec<String> {
    strings(&["end_user", "metadata.user_api_key_end_user_id", "model_parameters.user", "metadata.user_api_key_user_id"])
}
fn default_data_class_tag_prefix() -> String {
    "data:".into()
}
fn default_otel_tenant_keys() -> Vec<String> {
    strings(&["tenant.id", "app.tenant.id"])
}
fn default_otel_actor_keys() -> Vec<String> {
    strings(&["enduser.id", "user.id"])
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig {
            tenant_keys: default_tenant_keys(),
            actor_keys: default_actor_keys(),
            data_class_tag_prefix: default_data_class_tag_prefix(),
            otel_tenant_keys: default_otel_tenant_keys(),
            otel_actor_keys: default_otel_actor_keys(),
            providers: BTreeMap::new(),
            regions: BTreeMap::new(),
        }
    }
}

/// A file given to `--adapter`: one `[adapter]` table and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdapterFile {
    #[serde(default)]
    adapter: AdapterConfig,
}

impl AdapterConfig {
    /// Reads the `[adapter]` table of `path`; errors name the file, the line and the key.
    pub fn load(path: &Path) -> anyhow::Result<AdapterConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read the adapter file {}: {e}", path.display()))?;
        let file: AdapterFile = toml::from_str(&text).map_err(|e| anyhow::anyhow!("adapter file {}: {e}", path.display()))?;
        file.adapter.check().map_err(|e| anyhow::anyhow!("adapter file {}: {e}", path.display()))?;
        Ok(file.adapter)
    }

    /// Checks what serde cannot: no empty key, no empty path segment.
    pub fn check(&self) -> Result<(), String> {
        for (name, keys) in [
            ("tenant_keys", &self.tenant_keys),
            ("actor_keys", &self.actor_keys),
            ("otel_tenant_keys", &self.otel_tenant_keys),
            ("otel_actor_keys", &self.otel_actor_keys),
        ] {
            if let Some(k) = keys.iter().find(|k| k.is_empty() || k.split('.').any(str::is_empty)) {
                return Err(format!("[adapter] {name}: the key {k:?} is empty or has an empty path segment"));
            }
        }
        Ok(())
    }
}

/// The default provider names of `adapters.md`: source name -> aiwatch name.
const PROVIDERS: [(&str, &str); 18] = [
    ("openai", "openai"),
    ("azure", "azure.ai.openai"),
    ("azure_ai", "azure.ai.inference"),
    ("az.ai.openai", "azure.ai.openai"),
    ("az.ai.inference", "azure.ai.inference"),
    ("bedrock", "aws.bedrock"),
    ("sagemaker", "aws.sagemaker"),
    ("vertex_ai", "gcp.vertex_ai"),
    ("vertex_ai_beta", "gcp.vertex_ai"),
    ("gemini", "gcp.gemini"),
    ("anthropic", "anthropic"),
    ("mistral", "mistral_ai"),
    ("cohere", "cohere"),
    ("cohere_chat", "cohere"),
    ("groq", "groq"),
    ("deepseek", "deepseek"),
    ("xai", "x_ai"),
    ("perplexity", "perplexity"),
];

/// The mapping configuration, resolved for lookups on the hot path.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// `litellm` paths, split at the dots.
    pub tenant_paths: Vec<Vec<String>>,
    pub actor_paths: Vec<Vec<String>>,
    pub data_class_tag_prefix: String,
    pub otel_tenant_keys: Vec<String>,
    pub otel_actor_keys: Vec<String>,
    /// Looked up once a payload or span: a fast keyed hash (provider names and hosts are not secret).
    providers: Fast<String, String>,
    /// Lowercase host -> region.
    regions: Fast<String, String>,
    /// The keys a `litellm` payload is looked up by, at any depth.
    pub(crate) litellm_keys: crate::formats::litellm::Keys,
}

impl Default for Adapter {
    fn default() -> Self {
        Adapter::new(&AdapterConfig::default())
    }
}

impl Adapter {
    pub fn new(c: &AdapterConfig) -> Adapter {
        let split = |keys: &[String]| keys.iter().map(|k| k.split('.').map(str::to_string).collect()).collect();
        let mut providers: Fast<String, String> = PROVIDERS.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        providers.extend(c.providers.iter().map(|(a, b)| (a.clone(), b.clone())));
        let (tenant_paths, actor_paths): (Vec<Vec<String>>, Vec<Vec<String>>) = (split(&c.tenant_keys), split(&c.actor_keys));
        Adapter {
            litellm_keys: crate::formats::litellm::Keys::of(tenant_paths.iter().chain(&actor_paths)),
            tenant_paths,
            actor_paths,
            data_class_tag_prefix: c.data_class_tag_prefix.clone(),
            otel_tenant_keys: c.otel_tenant_keys.clone(),
            otel_actor_keys: c.otel_actor_keys.clone(),
            providers,
            regions: c.regions.iter().map(|(h, r)| (h.to_ascii_lowercase(), r.clone())).collect(),
        }
    }

    /// Whether a `litellm` lookup looks into the object under this payload key
    /// (`metadata`, `hidden_params`, the first key of a configured path).
    pub fn looks_into(&self, key: &str) -> bool {
        matches!(key, "metadata" | "hidden_params") || self.tenant_paths.iter().chain(&self.actor_paths).any(|p| p.len() > 1 && p[0] == key)
    }

    /// The aiwatch provider name of a source provider name; other names pass through.
    pub fn provider<'s>(&'s self, source: &'s str) -> &'s str {
        self.providers.get(source).map_or(source, String::as_str)
    }

    /// The region of an API URL or host: the `[adapter.regions]` table, then the host patterns.
    pub fn region_of(&self, url: &str) -> Option<String> {
        let host = host_of(url)?;
        // Lowered only when it has capitals (a copy a payload, otherwise).
        let host: std::borrow::Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) { host.to_ascii_lowercase().into() } else { host.into() };
        if let Some(r) = self.regions.get(&*host) {
            return Some(r.clone());
        }
        region_from_host(&host).map(str::to_string)
    }
}

/// The host of a URL: any scheme removed, then everything from the first `/`, `:` or `?` dropped.
pub fn host_of(url: &str) -> Option<&str> {
    let rest = url.find("://").map_or(url, |i| &url[i + 3..]);
    let host = &rest[..rest.find(['/', ':', '?']).unwrap_or(rest.len())];
    (!host.is_empty()).then_some(host)
}

/// The region a provider host names: `bedrock-runtime.REGION.amazonaws.com`,
/// `bedrock.REGION.amazonaws.com`, `runtime.sagemaker.REGION.amazonaws.com`,
/// `REGION-aiplatform.googleapis.com`. REGION is one DNS label.
fn region_from_host(host: &str) -> Option<&str> {
    fn label(r: &str) -> Option<&str> {
        (!r.is_empty() && !r.contains('.')).then_some(r)
    }
    if let Some(mid) = host.strip_suffix(".amazonaws.com") {
        for prefix in ["bedrock-runtime.", "bedrock.", "runtime.sagemaker."] {
            if let Some(r) = mid.strip_prefix(prefix).and_then(label) {
                return Some(r);
            }
        }
    }
    host.strip_suffix("-aiplatform.googleapis.com").and_then(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_regions_follow_the_spec() {
        let a = Adapter::default();
        assert_eq!(host_of("https://bedrock-runtime.eu-west-1.amazonaws.com/model/x"), Some("bedrock-runtime.eu-west-1.amazonaws.com"));
        assert_eq!(host_of("us-central1-aiplatform.googleapis.com/v1/projects"), Some("us-central1-aiplatform.googleapis.com"));
        assert_eq!(host_of("http://localhost:4000?x=1"), Some("localhost"));
        assert_eq!(host_of("https://"), None);
        assert_eq!(a.region_of("https://bedrock-runtime.eu-west-1.amazonaws.com/model/x").as_deref(), Some("eu-west-1"));
        assert_eq!(a.region_of("https://bedrock.us-east-1.amazonaws.com").as_deref(), Some("us-east-1"));
        assert_eq!(a.region_of("https://runtime.sagemaker.ap-south-1.amazonaws.com/endpoints").as_deref(), Some("ap-south-1"));
        assert_eq!(a.region_of("https://europe-west4-aiplatform.googleapis.com/v1").as_deref(), Some("europe-west4"));
        assert_eq!(a.region_of("https://api.openai.com/v1"), None);
        assert_eq!(a.region_of("https://bedrock-runtime.amazonaws.com"), None);
        assert_eq!(a.region_of("https://aiplatform.googleapis.com"), None);
    }

    #[test]
    fn the_regions_table_wins_and_providers_add_to_the_defaults() {
        let c: AdapterFile = toml::from_str(
            "[adapter]\n[adapter.providers]\n\"my-gw\" = \"openai\"\nbedrock = \"bedrock-custom\"\n[adapter.regions]\n\"ACME.openai.azure.com\" = \"swedencentral\"\n\"bedrock-runtime.eu-west-1.amazonaws.com\" = \"eu-x\"\n",
        )
        .unwrap();
        let a = Adapter::new(&c.adapter);
        assert_eq!(a.provider("my-gw"), "openai");
        assert_eq!(a.provider("bedrock"), "bedrock-custom");
        assert_eq!(a.provider("azure"), "azure.ai.openai");
        assert_eq!(a.provider("somebody"), "somebody");
        assert_eq!(a.region_of("https://acme.openai.azure.com/openai/deployments").as_deref(), Some("swedencentral"));
        assert_eq!(a.region_of("bedrock-runtime.eu-west-1.amazonaws.com").as_deref(), Some("eu-x"));
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "[adapter]\ntenant_keys = [\"x\"]\ntenant_kyes = [\"y\"]\n").unwrap();
        let e = AdapterConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("tenant_kyes") && e.contains("line 3") && e.contains("a.toml"), "{e}");
        std::fs::write(&p, "[adapter]\nactor_keys = [\"a..b\"]\n").unwrap();
        let e = AdapterConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("actor_keys"), "{e}");
        std::fs::write(&p, "[adaptor]\n").unwrap();
        assert!(AdapterConfig::load(&p).unwrap_err().to_string().contains("adaptor"));
    }
}
