//! The world generated traffic comes from: data classes, vendors and their models, regions,
//! tenants, actors, config resources and who may change them. Must agree with
//! `demo-policy.toml` (a test checks).

pub(super) const PUBLIC: u8 = 1;
pub(super) const INTERNAL: u8 = 2;
pub(super) const CUSTOMER_DATA: u8 = 4;
pub(super) const PII: u8 = 8;
pub(super) const PHI: u8 = 16;
pub(super) const PCI: u8 = 32;
pub(super) const SECRETS: u8 = 64;
/// "Data classes that are customer data" (rules.md).
pub(super) const CUSTOMER: u8 = CUSTOMER_DATA | PII | PHI | PCI;
pub(super) const CLASS_NAMES: [&str; 7] = ["public", "internal", "customer_data", "pii", "phi", "pci", "secrets"];

pub(super) struct Provider {
    pub(super) name: &'static str,
    /// Has a `[[vendor]]` entry in the demo policy.
    pub(super) listed: bool,
    pub(super) dpa: bool,
    pub(super) trains: bool,
    pub(super) allowed: u8,
    /// Weight in compliant traffic.
    pub(super) weight: u32,
    pub(super) chat: &'static [&'static str],
    pub(super) embed: &'static [&'static str],
}

pub(super) const P_OPENAI: u8 = 0;
pub(super) const P_ANTHROPIC: u8 = 1;
pub(super) const P_BEDROCK: u8 = 2;
pub(super) const P_VERTEX: u8 = 3;
pub(super) const P_COHERE: u8 = 4;
pub(super) const P_MISTRAL: u8 = 5;
pub(super) const P_FIRST_UNLISTED: u8 = 6;

pub(super) const PROVIDERS: [Provider; 11] = [
    Provider {
        name: "openai",
        listed: true,
        dpa: true,
        trains: false,
        allowed: PUBLIC | INTERNAL | CUSTOMER_DATA | PII,
        weight: 40,
        chat: &["gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini"],
        embed: &["text-embedding-3-small", "text-embedding-3-large"],
    },
    Provider {
        name: "anthropic",
        listed: true,
        dpa: true,
        trains: false,
        allowed: PUBLIC | INTERNAL | CUSTOMER_DATA | PII | PHI,
        weight: 28,
        chat: &["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"],
        embed: &[],
    },
    Provider {
        name: "aws.bedrock",
        listed: true,
        dpa: true,
        trains: false,
        allowed: PUBLIC | INTERNAL | CUSTOMER_DATA | PII | PHI | PCI,
        weight: 17,
        chat: &["anthropic.claude-3-5-sonnet-20240620-v1:0", "meta.llama3-1-70b-instruct-v1:0", "amazon.nova-pro-v1:0"],
        embed: &["amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"],
    },
    Provider {
        name: "gcp.vertex_ai",
        listed: true,
        dpa: true,
        trains: false,
        allowed: PUBLIC | INTERNAL | CUSTOMER_DATA | PII,
        weight: 8,
        chat: &["gemini-2.5-flash", "gemini-2.5-pro"],
        embed: &["text-embedding-005"],
    },
    Provider {
        name: "cohere",
        listed: true,
        dpa: true,
        trains: true,
        allowed: PUBLIC | INTERNAL | CUSTOMER_DATA,
        weight: 7,
        chat: &["command-r-plus", "command-a-03-2025"],
        embed: &["embed-english-v3.0", "embed-multilingual-v3.0"],
    },
    Provider {
        name: "mistral_ai",
        listed: true,
        dpa: false,
        trains: false,
        allowed: PUBLIC | INTERNAL,
        weight: 0,
        chat: &["mistral-large-latest", "mistral-small-latest"],
        embed: &["mistral-embed"],
    },
    Provider { name: "azure.ai.openai", listed: false, dpa: false, trains: false, allowed: 0, weight: 0, chat: &["gpt-4o"], embed: &["text-embedding-3-small"] },
    Provider { name: "deepseek", listed: false, dpa: false, trains: false, allowed: 0, weight: 0, chat: &["deepseek-chat", "deepseek-reasoner"], embed: &[] },
    Provider {
        name: "together_ai",
        listed: false,
        dpa: false,
        trains: false,
        allowed: 0,
        weight: 0,
        chat: &["meta-llama/Llama-3.3-70B-Instruct-Turbo"],
        embed: &["BAAI/bge-large-en-v1.5"],
    },
    Provider { name: "groq", listed: false, dpa: false, trains: false, allowed: 0, weight: 0, chat: &["llama-3.3-70b-versatile"], embed: &[] },
    Provider { name: "x_ai", listed: false, dpa: false, trains: false, allowed: 0, weight: 0, chat: &["grok-3"], embed: &[] },
];

pub(super) const REGIONS: [&str; 9] = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1", "sa-east-1", "ap-south-1", "ca-central-1", "eu-north-1"];

/// Artifact kinds, in this order everywhere.
pub(super) const KINDS: [&str; 5] = ["prompt", "output", "embedding", "transcript", "log"];
pub(super) const K_PROMPT: u8 = 0;
pub(super) const K_OUTPUT: u8 = 1;
pub(super) const K_EMBEDDING: u8 = 2;
pub(super) const K_TRANSCRIPT: u8 = 3;
pub(super) const K_LOG: u8 = 4;

pub(super) struct Tenant {
    pub(super) id: &'static str,
    /// Indexes into REGIONS; the first is the home region.
    pub(super) regions: &'static [u8],
    /// Days per kind (KINDS order), the policy's tenant entry merged over the defaults.
    pub(super) retention: [Option<u32>; 5],
    /// Data classes this tenant's prompts carry.
    pub(super) profile: u8,
    pub(super) weight: u32,
}

const DEFAULT_REGIONS: &[u8] = &[0, 1];
const DEFAULT_RETENTION: [Option<u32>; 5] = [Some(0), Some(1), None, Some(1), Some(1)];
const BASE_PROFILE: u8 = PUBLIC | INTERNAL | CUSTOMER_DATA | PII;

pub(super) const TENANTS: [Tenant; 11] = [
    Tenant { id: "acme", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE, weight: 20 },
    Tenant { id: "globex", regions: &[2, 3], retention: [Some(0), Some(1), Some(30), Some(1), Some(1)], profile: BASE_PROFILE, weight: 12 },
    Tenant { id: "müller-gmbh", regions: &[3], retention: [Some(0), Some(1), None, Some(0), Some(1)], profile: BASE_PROFILE, weight: 8 },
    Tenant { id: "東京-ai", regions: &[4, 1], retention: DEFAULT_RETENTION, profile: BASE_PROFILE, weight: 8 },
    Tenant { id: "initech", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE | PCI, weight: 10 },
    Tenant { id: "umbrella", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE, weight: 8 },
    Tenant { id: "Acme-Labs", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE, weight: 5 },
    Tenant { id: "northwind-health", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE | PHI, weight: 8 },
    Tenant { id: "são-paulo-saúde", regions: &[5, 0], retention: DEFAULT_RETENTION, profile: BASE_PROFILE | PHI, weight: 5 },
    Tenant { id: "hooli", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE, weight: 10 },
    Tenant { id: "stark-industries", regions: DEFAULT_REGIONS, retention: DEFAULT_RETENTION, profile: BASE_PROFILE, weight: 6 },
];
pub(super) const T_MULLER: u8 = 2;

/// Principals that call models. Services first.
pub(super) const ACTORS: [&str; 14] = [
    "svc:support-bot",
    "svc:summarizer",
    "svc:code-assist",
    "svc:translator",
    "svc:rag-indexer",
    "svc:search-api",
    "user:alice",
    "user:bob",
    "user:dana",
    "user:eve",
    "user:jürgen",
    "user:さくら",
    "user:oğuz",
    "user:priya",
];
pub(super) const ACTOR_WEIGHTS: [u32; 14] = [30, 18, 12, 6, 2, 2, 4, 4, 4, 4, 4, 4, 3, 3];
pub(super) const A_RAG_INDEXER: u8 = 4;
pub(super) const A_SEARCH_API: u8 = 5;
/// Actor codes for a missing actor: field absent, `null`, or `""`.
pub(super) const ACTOR_ABSENT: u8 = 250;
pub(super) const ACTOR_NULL: u8 = 251;
pub(super) const ACTOR_EMPTY: u8 = 252;

pub(super) const RTYPES: [&str; 8] = ["prompt_template", "model", "parameter", "api_key", "vendor_endpoint", "safety_setting", "retention_setting", "access_policy"];
pub(super) const RESOURCES: [&[&str]; 8] = [
    &["prompt_template/support-bot", "prompt_template/summarizer", "prompt_template/code-review"],
    &["model/support-bot", "model/summarizer", "model/embeddings"],
    &["parameter/support-bot.temperature", "parameter/summarizer.max_tokens", "parameter/rag.top_k"],
    &["api_key/openai-prod", "api_key/anthropic-prod", "api_key/bedrock-prod"],
    &["vendor_endpoint/bedrock-us-east-1", "vendor_endpoint/vertex-europe-west4", "vendor_endpoint/openai-eu"],
    &["safety_setting/pii-redaction", "safety_setting/jailbreak-filter", "safety_setting/output-moderation"],
    &["retention_setting/transcripts", "retention_setting/prompt-logs"],
    &["access_policy/rag-index", "access_policy/admin-console"],
];
pub(super) const ENV_PRODUCTION: u8 = 0;
pub(super) const ENV_STAGING: u8 = 1;
pub(super) const ENVS: [&str; 2] = ["production", "staging"];

/// People and services that make config changes; the first four have authorizations.
pub(super) const CHANGE_ACTORS: [&str; 8] = ["user:alice", "user:bob", "svc:deployer", "user:carol", "user:dana", "user:mallory", "svc:ci-runner", "user:eve"];
/// (actor index in CHANGE_ACTORS, resource types, environments): the policy's [[change_authorization]].
pub(super) const AUTH: [(u8, &[u8], &[u8]); 4] = [
    (0, &[0, 1, 2], &[ENV_PRODUCTION, ENV_STAGING]),
    (1, &[0], &[ENV_STAGING]),
    (2, &[1, 2, 4, 5, 3], &[ENV_PRODUCTION, ENV_STAGING]),
    (3, &[3, 7, 6], &[ENV_PRODUCTION]),
];
pub(super) const REVIEWERS: [&str; 5] = ["user:carol", "user:dave", "user:erin", "user:frank", "user:alice"];

pub(super) fn authorized(actor: u8, rtype: u8, env: u8) -> bool {
    AUTH.iter().any(|(a, types, envs)| *a == actor && types.contains(&rtype) && envs.contains(&env))
}

pub(super) const WORDS: [&str; 16] = [
    "florp", "zindle", "quaxor", "mirtle", "bronvik", "yestal", "parmidge", "oobleck", "snorvel", "tindra", "gwomp", "velliq", "drusk", "plimmet", "harvox",
    "ozzle",
];
pub(super) const CANARY: &str = "CANARY-PROMPT-TEXT-7f3a9c";
