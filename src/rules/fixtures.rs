//! Rule fixtures: small event streams with the exact subjects a rule must fire on.
//!
//! A fixture file is TOML, one per rule, beside the rules in `fixtures/`:
//!
//! ```toml
//! rule = "logging.missing_response"
//! # policy = "other-policy.toml"   # optional; default: fixtures/policy.toml
//!
//! [[case]]
//! name = "a response exactly at the deadline counts"
//! events = '''
//! {"event_id": "q1", "event_type": "ai.request", "time": "2026-11-01T00:00:00Z", "request_id": "r1", ...}
//! {"event_id": "p1", "event_type": "ai.response", "time": "2026-11-01T00:05:00Z", "request_id": "r1", ...}
//! '''
//! fires = []
//! ```
//!
//! A fixture file may say `format = "litellm"` (or `otlp_json`): its events
//! are then records of that format, one per line, mapped as `scan --format`
//! maps them (`rules test --format` sets the default for a rules folder's
//! fixtures; built-in fixtures are `aiwatch`).
//!
//! Each case is scanned like a file (the watermark ends at the largest event
//! time) in one batch, in batches of one event, and with its lines in reverse
//! order inside the allowed lateness where the case spans less than it; every
//! run must fire on exactly `fires`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use arrow::array::AsArray as _;
use arrow::datatypes::TimestampNanosecondType;

use crate::decode::{DecodeOptions, Decoder, Formats};
use crate::engine::{Engine, EngineConfig};
use crate::event::{col, Origin, RawBatch};
use crate::formats::{Adapter, Format};
use crate::pipeline::{self, Evaluate, Totals};
use crate::policy::Policy;
use crate::rules::{Rule, BUILTIN_FIXTURES};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    rule: String,
    policy: Option<String>,
    /// The format of the events (default: the set's, `aiwatch` for built-in fixtures).
    format: Option<Format>,
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    events: String,
    fires: Vec<String>,
    /// Allowed lateness for this case (default 60 s).
    lateness: Option<u64>,
}

/// The verdict on one case.
#[derive(Debug)]
pub struct CaseResult {
    pub rule: String,
    pub file: String,
    pub case: String,
    /// `None` when every run fired exactly as expected.
    pub failure: Option<String>,
}

/// Fixture files: (name, text, default format), the policies they may name,
/// and the adapter mapping for fixtures in adapter formats.
pub struct FixtureSet {
    files: Vec<(String, String, Format)>,
    policies: HashMap<String, String>,
    adapter: Arc<Adapter>,
}

impl FixtureSet {
    /// The fixtures of the built-in pack.
    pub fn builtin() -> FixtureSet {
        let mut files = Vec::new();
        let mut policies = HashMap::new();
        for (path, text) in BUILTIN_FIXTURES {
            let name = Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if text.contains("[[case]]") {
                files.push((path.to_string(), text.to_string(), Format::Aiwatch));
            } else {
                policies.insert(name, text.to_string());
            }
        }
        FixtureSet { files, policies, adapter: Arc::default() }
    }

    /// Fixture files of this set that name no format are in `format`; adapter formats map with `adapter`.
    pub fn with_format(mut self, format: Format, adapter: Adapter) -> FixtureSet {
        for f in &mut self.files {
            f.2 = format;
        }
        self.adapter = Arc::new(adapter);
        self
    }

    /// The fixtures in `DIR/fixtures/` of a user rules folder, if any.
    pub fn load_dir(rules_dir: &Path) -> std::io::Result<FixtureSet> {
        let dir = rules_dir.join("fixtures");
        let mut set = FixtureSet { files: Vec::new(), policies: HashMap::new(), adapter: Arc::default() };
        if !dir.is_dir() {
            return Ok(set);
        }
        let mut paths: Vec<_> = std::fs::read_dir(&dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths.into_iter().filter(|p| p.extension().is_some_and(|x| x == "toml")) {
            let text = std::fs::read_to_string(&p)?;
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if text.contains("[[case]]") {
                set.files.push((p.display().to_string(), text, Format::Aiwatch));
            } else {
                set.policies.insert(name, text);
            }
        }
        Ok(set)
    }

    /// Adds `other`'s files and policies; its adapter mapping becomes the set's.
    pub fn merge(&mut self, other: FixtureSet) {
        self.files.extend(other.files);
        self.policies.extend(other.policies);
        self.adapter = other.adapter;
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Runs every case against the rule of the pack it names.
    pub async fn run(&self, pack: &[Rule]) -> Vec<CaseResult> {
        let mut out = Vec::new();
        for (file, text, default_format) in &self.files {
            let fail_file = |rule: &str, msg: String| CaseResult { rule: rule.into(), file: file.clone(), case: "(file)".into(), failure: Some(msg) };
            let fixture: FixtureFile = match toml::from_str(text) {
                Ok(f) => f,
                Err(e) => {
                    out.push(fail_file("?", e.to_string()));
                    continue;
                }
            };
            let Some(rule) = pack.iter().find(|r| r.id == fixture.rule) else {
                out.push(fail_file(&fixture.rule, format!("no rule with id `{}` in the pack", fixture.rule)));
                continue;
            };
            let policy_name = fixture.policy.as_deref().unwrap_or("policy.toml");
            let policy = match self.policies.get(policy_name).map(|t| Policy::parse(t, policy_name)) {
                Some(Ok(p)) => Arc::new(p),
                Some(Err(e)) => {
                    out.push(fail_file(&rule.id, format!("policy {policy_name}: {e}")));
                    continue;
                }
                None => {
                    out.push(fail_file(&rule.id, format!("policy {policy_name} not found beside the fixtures")));
                    continue;
                }
            };
            let format = fixture.format.unwrap_or(*default_format);
            if format == Format::OtlpProto {
                out.push(fail_file(&rule.id, "otlp_proto records are binary and cannot be written in a fixture; write them as otlp_json".into()));
                continue;
            }
            let formats = Formats { default: format, by_topic: HashMap::new(), adapter: self.adapter.clone() };
            for case in &fixture.case {
                let failure = run_case(rule, &policy, case, file, &formats).await.err();
                out.push(CaseResult { rule: rule.id.clone(), file: file.clone(), case: case.name.clone(), failure });
            }
        }
        out
    }
}

/// A case's lines as a raw batch, numbered as in the case.
fn raw_of(lines: &[(u64, &str)], file: &str) -> RawBatch {
    let mut raw = RawBatch::default();
    for (line, text) in lines {
        raw.push(text.as_bytes(), Origin::File { path: file.into(), line: *line });
    }
    raw
}

/// How a case is fed: its name, the lines in arrival order, the batch size,
/// whether every step spills the open obligations to disk, and the state's shards.
type Run<'a> = (String, Vec<(u64, &'a str)>, usize, bool, usize);

async fn fire(rule: &Rule, policy: &Arc<Policy>, (_, lines, batch, spill, shards): &Run<'_>, lateness: u64, file: &str, formats: &Formats) -> Result<BTreeSet<String>, String> {
    let mut config = EngineConfig { lateness_seconds: lateness, shards: *shards, ..Default::default() };
    if *spill {
        config.spill.memory_limit = 0;
        config.spill.min_ahead = 0;
    }
    let mut engine = Engine::new(policy.clone(), vec![rule.clone()], &config).await.map_err(|e| e.to_string())?;
    let mut decoder = Decoder::with_formats(DecodeOptions::default(), formats.clone());
    let mut totals = Totals::default();
    let mut fired = BTreeSet::new();
    for chunk in lines.chunks((*batch).max(1)) {
        let decoded = decoder.decode(&raw_of(chunk, file));
        let (report, dead) = pipeline::step(&mut engine, &mut totals, decoded, Evaluate::Now).await.map_err(|e| e.to_string())?;
        if let Some(d) = dead.first() {
            return Err(format!("fixture event at line {} is malformed: {}", d.origin, d.reason));
        }
        fired.extend(report.alerts.into_iter().map(|a| a.subject));
    }
    let report = engine.finish().await.map_err(|e| e.to_string())?;
    fired.extend(report.alerts.into_iter().map(|a| a.subject));
    Ok(fired)
}

async fn run_case(rule: &Rule, policy: &Arc<Policy>, case: &Case, file: &str, formats: &Formats) -> Result<(), String> {
    let lines: Vec<(u64, &str)> =
        case.events.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).map(|(i, l)| (i as u64 + 1, l)).collect();
    let expected: BTreeSet<String> = case.fires.iter().cloned().collect();
    let lateness = case.lateness.unwrap_or(60);
    let shards = crate::engine::state::DEFAULT_SHARDS;
    let mut runs: Vec<Run<'_>> = vec![
        ("one batch".into(), lines.clone(), lines.len(), false, shards),
        ("one batch, the state in a single shard".into(), lines.clone(), lines.len(), false, 1),
        ("batches of one event".into(), lines.clone(), 1, false, shards),
        ("batches of one event, open obligations spilled to disk at every step".into(), lines.clone(), 1, true, 3),
    ];
    // Reversed arrival is a legal order only when the whole case fits in the lateness.
    let mapped = Decoder::with_formats(DecodeOptions::default(), formats.clone()).decode(&raw_of(&lines, file));
    let times = mapped.events.column(col::TIME).as_primitive::<TimestampNanosecondType>();
    if let (Some(lo), Some(hi)) = (arrow::compute::min(times), arrow::compute::max(times)) {
        if hi - lo <= lateness as i64 * 1_000_000_000 {
            let mut rev = lines.clone();
            rev.reverse();
            runs.push(("reversed, one event per batch".into(), rev, 1, false, shards));
        }
    }
    for run in runs {
        let got = fire(rule, policy, &run, lateness, file, formats).await?;
        let how = &run.0;
        if got != expected {
            let missed: Vec<_> = expected.difference(&got).collect();
            let extra: Vec<_> = got.difference(&expected).collect();
            return Err(format!("{how}: expected {expected:?}, fired {got:?} (missed {missed:?}, unexpected {extra:?})"));
        }
    }
    Ok(())
}
