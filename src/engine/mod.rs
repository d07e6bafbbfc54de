//! The engine: decoded event batches in, alerts out.
//!
//! Each rule's SQL is planned once, at start, against the tables below; every
//! step then refreshes the live tables from the event-time state and executes
//! the rules' plans concurrently. A step costs what its batch (and the state
//! rows sharing keys with it) costs, never what the whole state holds.
//!
//! | table | holds, at each step |
//! |---|---|
//! | `events` | the step's new events (duplicates dropped) |
//! | `history` | `ai.request`/`ai.response` events of the last 24 h sharing a `request_id` with `events`, plus those of `events` |
//! | `conversations` | for each `conversation_id` of the step's `ai.request`s, the requests of the last 24 h that stand for it (per tenant; see [`state::History`]) |
//! | `due_requests` | requests whose response deadline the watermark has just passed |
//! | `due_artifacts` | stored artifacts whose retention deadline the watermark has just passed |
//! | `policy_*` | the policy (see [`tables::register_policy`]) |

pub mod checkpoint;
pub mod spill;
pub mod state;
pub mod tables;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayRef, AsArray, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampNanosecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampNanosecondType};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableProvider;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::alert::{self, Alert, Evidence};
use crate::event::{events_schema, Origin};
use crate::policy::Policy;
use crate::rules::Rule;
pub use state::SpillConfig;
use state::{HashMap, HashSet, Obligation, State, StateStats, StepInput};
use tables::LiveTable;

/// Engine settings that are not the policy or the rules.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How far behind the largest event time seen an event may still arrive.
    pub lateness_seconds: u64,
    /// Memory DataFusion may use to evaluate one step.
    pub memory_limit_bytes: usize,
    /// When the event-time state spills open obligations to disk, and where.
    pub spill: SpillConfig,
    /// Key-hash shards of the state (a checkpoint keeps its own count).
    pub shards: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { lateness_seconds: 60, memory_limit_bytes: 1 << 30, spill: SpillConfig::default(), shards: state::DEFAULT_SHARDS }
    }
}

/// A rule that cannot be planned, or a step that failed to evaluate.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{file}:{line}: rule `{rule}`: {message}")]
    Rule { rule: String, file: String, line: usize, message: String },
    #[error("rule `{rule}` failed on this batch: {source}")]
    Evaluate { rule: String, source: datafusion::error::DataFusionError },
    #[error("{0}")]
    Setup(#[from] datafusion::error::DataFusionError),
}

/// The columns a rule's query must return.
pub const OUTPUT_COLUMNS: &str =
    "subject (string), time (timestamp), event_ids (list of strings or one string); optional: tenant_id (string), summary (string)";

struct CompiledRule {
    rule: Arc<Rule>,
    /// Planned once; each step executes a copy with its operator state reset.
    plan: Arc<dyn ExecutionPlan>,
    /// Live tables the plan reads; when all are empty the rule cannot fire and is skipped.
    reads: Vec<Arc<LiveTable>>,
}

/// What one step produced.
#[derive(Debug, Default)]
pub struct StepReport {
    pub alerts: Vec<Alert>,
    /// New events evaluated (after dropping duplicates).
    pub events: usize,
    pub duplicates: usize,
    pub late: usize,
    /// Evaluation time of each rule that ran, by rule id.
    pub rule_times: Vec<(String, Duration)>,
    /// Rules that failed on this step (each also raised an `aiwatch.rule_error` alert).
    pub rule_errors: Vec<String>,
    pub watermark: Option<i64>,
    /// The new events evaluated (duplicates dropped), for the evidence archive.
    pub accepted: Vec<RecordBatch>,
}

impl StepReport {
    /// Adds a later step's report to this one.
    fn absorb(&mut self, later: StepReport) {
        self.alerts.extend(later.alerts);
        self.events += later.events;
        self.duplicates += later.duplicates;
        self.late += later.late;
        self.rule_times.extend(later.rule_times);
        self.rule_errors.extend(later.rule_errors);
        self.watermark = later.watermark.or(self.watermark);
        self.accepted.extend(later.accepted);
    }
}

struct LiveTables {
    events: Arc<LiveTable>,
    history: Arc<LiveTable>,
    conversations: Arc<LiveTable>,
    due_requests: Arc<LiveTable>,
    due_artifacts: Arc<LiveTable>,
}

/// A session with the policy registered, shared by the engine and `aiwatch query`.
pub fn session(policy: &Arc<Policy>, config: &EngineConfig) -> Result<SessionContext, EngineError> {
    let runtime = RuntimeEnvBuilder::new().with_memory_limit(config.memory_limit_bytes, 1.0).build_arc()?;
    let session_config = SessionConfig::new()
        // Rules run side by side, one task each; splitting a step's few thousand rows further only adds repartitioning.
        .with_target_partitions(1)
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config_rt(session_config, runtime);
    tables::register_policy(&ctx, policy)?;
    Ok(ctx)
}

fn due_schema(key: &str, start: &str, met: &str, met_event: &str, kind: Option<&str>) -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let mut fields = vec![
        Field::new(key, DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, true),
    ];
    if let Some(kind) = kind {
        fields.push(Field::new(kind, DataType::Utf8, true));
    }
    fields.extend([
        Field::new("event_id", DataType::Utf8, false),
        Field::new(start, ts(), false),
        Field::new("deadline", ts(), false),
        Field::new(met, ts(), true),
        Field::new(met_event, DataType::Utf8, true),
        Field::new("origin_source", DataType::Utf8, false),
        Field::new("origin_partition", DataType::Int32, true),
        Field::new("origin_position", DataType::Int64, false),
    ]);
    Arc::new(Schema::new(fields))
}

fn due_requests_schema() -> SchemaRef {
    due_schema("request_id", "requested_at", "responded_at", "response_event_id", None)
}

fn due_artifacts_schema() -> SchemaRef {
    due_schema("artifact_id", "stored_at", "deleted_at", "deletion_event_id", Some("artifact_kind"))
}

fn due_batch(schema: &SchemaRef, due: &[Obligation], with_kind: bool) -> RecordBatch {
    let mut key = StringBuilder::new();
    let mut tenant = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut event = StringBuilder::new();
    let mut start = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut deadline = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut met = TimestampNanosecondBuilder::new().with_timezone("UTC");
    let mut met_event = StringBuilder::new();
    let mut src = StringBuilder::new();
    let mut part = Int32Builder::new();
    let mut pos = Int64Builder::new();
    for o in due {
        key.append_value(o.key());
        tenant.append_option(o.tenant_id());
        kind.append_option(o.kind());
        event.append_value(o.event_id());
        start.append_value(o.start);
        deadline.append_value(o.deadline);
        met.append_option(o.met.as_ref().map(|m| m.0));
        met_event.append_option(o.met.as_ref().map(|m| &*m.1));
        let (s, p, q) = o.origin.columns();
        src.append_value(s);
        part.append_option(p);
        pos.append_value(q);
    }
    let mut cols: Vec<ArrayRef> = vec![Arc::new(key.finish()), Arc::new(tenant.finish())];
    if with_kind {
        cols.push(Arc::new(kind.finish()));
    }
    cols.extend([
        Arc::new(event.finish()) as ArrayRef,
        Arc::new(start.finish()),
        Arc::new(deadline.finish()),
        Arc::new(met.finish()),
        Arc::new(met_event.finish()),
        Arc::new(src.finish()),
        Arc::new(part.finish()),
        Arc::new(pos.finish()),
    ]);
    RecordBatch::try_new(schema.clone(), cols).expect("due columns match their schema")
}

/// Where in the file a DataFusion/sqlparser message points ("Line: 12"), if anywhere.
fn error_line(message: &str, rule: &Rule) -> usize {
    if let Some(rest) = message.split("Line: ").nth(1) {
        if let Ok(n) = rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse() {
            return n;
        }
    }
    // A planning error names the unknown field or table: point at its first use.
    for marker in ["No field named ", "table '", "Invalid function '"] {
        if let Some(rest) = message.split(marker).nth(1) {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.').collect();
            let name = name.trim_end_matches('.').rsplit('.').next().unwrap_or_default();
            if !name.is_empty() {
                if let Some(i) = rule.sql.lines().position(|l| !l.trim_start().starts_with("--") && l.contains(name)) {
                    return i + 1;
                }
            }
        }
    }
    // Otherwise the first line of the query itself.
    rule.sql
        .lines()
        .position(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with("--")
        })
        .map_or(1, |i| i + 1)
}

/// The streaming rule engine.
pub struct Engine {
    task_ctx: Arc<TaskContext>,
    rules: Vec<CompiledRule>,
    live: LiveTables,
    /// `None` only while a pipelined step's state work runs (see [`Engine::push`]).
    state: Option<State>,
    /// A step whose state work is done and whose rules have not run yet.
    pending: Option<StepInput>,
    policy: Arc<Policy>,
    /// Violations already emitted in this run, with their event time.
    emitted: HashMap<(usize, String), i64>,
    emitted_swept: i64,
    /// Changes to `emitted` since the last checkpoint.
    emitted_log: Vec<checkpoint::EmittedOp>,
    /// History segments already written by a checkpoint (they never change).
    persisted_segments: HashSet<u64>,
    /// The live segments of the checkpoint before the latest (their files are kept).
    previous_segments: HashSet<u64>,
    /// The files of the latest durable checkpoint.
    durable: Option<checkpoint::Chains>,
}

/// How long an emitted violation is remembered to suppress repeats (7 days of event time).
const EMITTED_MEMORY: i64 = 7 * 86_400 * state::NANOS_PER_SEC;

impl Engine {
    /// Plans every rule against the engine's tables; fails naming the file and line of a broken rule.
    pub async fn new(policy: Arc<Policy>, rules: Vec<Rule>, config: &EngineConfig) -> Result<Engine, EngineError> {
        let ctx = session(&policy, config)?;
        // Physical plans are made once and re-executed every step; dynamic
        // filters keep state between executions that a reset does not clear.
        ctx.sql("SET datafusion.optimizer.enable_dynamic_filter_pushdown = false").await?;
        let live = LiveTables {
            events: LiveTable::new(events_schema()),
            history: LiveTable::new(state::history_schema()),
            conversations: LiveTable::new(state::conversations_schema()),
            due_requests: LiveTable::new(due_requests_schema()),
            due_artifacts: LiveTable::new(due_artifacts_schema()),
        };
        ctx.register_table("events", live.events.clone())?;
        ctx.register_table("history", live.history.clone())?;
        ctx.register_table("conversations", live.conversations.clone())?;
        ctx.register_table("due_requests", live.due_requests.clone())?;
        ctx.register_table("due_artifacts", live.due_artifacts.clone())?;
        let session = ctx.state();

        let mut compiled = Vec::with_capacity(rules.len());
        let mut history_columns = Vec::new();
        for rule in rules {
            let fail = |message: String| EngineError::Rule {
                rule: rule.id.clone(),
                file: rule.file.clone(),
                line: error_line(&message, &rule),
                message,
            };
            let plan = session.create_logical_plan(&rule.sql).await.map_err(|e| fail(e.to_string()))?;
            if matches!(
                plan,
                LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) | LogicalPlan::Statement(_) | LogicalPlan::Explain(_) | LogicalPlan::DescribeTable(_)
            ) {
                return Err(fail("a rule must be a single SELECT query".into()));
            }
            check_output(plan.schema().as_arrow()).map_err(fail)?;
            let plan = session.optimize(&plan).map_err(|e| fail(e.to_string()))?;
            let physical = session.query_planner().create_physical_plan(&plan, &session).await.map_err(|e| fail(e.to_string()))?;
            let mut names = Vec::new();
            plan.apply_with_subqueries(|node| {
                if let LogicalPlan::TableScan(scan) = node {
                    let name = scan.table_name.table().to_string();
                    if name == "history" {
                        // The columns this rule reads from history: history keeps only those (and its keys).
                        match &scan.projection {
                            Some(p) => history_columns.extend(p.iter().copied()),
                            None => history_columns.extend(0..events_schema().fields().len()),
                        }
                    }
                    names.push(name);
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .map_err(|e| fail(e.to_string()))?;
            let reads = names
                .iter()
                .filter_map(|n| match n.as_str() {
                    "events" => Some(live.events.clone()),
                    "history" => Some(live.history.clone()),
                    "conversations" => Some(live.conversations.clone()),
                    "due_requests" => Some(live.due_requests.clone()),
                    "due_artifacts" => Some(live.due_artifacts.clone()),
                    _ => None,
                })
                .collect();
            compiled.push(CompiledRule { rule: Arc::new(rule), plan: physical, reads });
        }
        let task_ctx = session.task_ctx();
        let horizon = history_horizon(&compiled, &live);
        Ok(Engine {
            task_ctx,
            rules: compiled,
            live,
            state: Some(State::new(config.lateness_seconds, &policy, &history_columns, horizon, config.spill.clone(), config.shards)),
            pending: None,
            policy,
            emitted: HashMap::default(),
            emitted_swept: i64::MIN,
            emitted_log: Vec::new(),
            persisted_segments: HashSet::default(),
            previous_segments: HashSet::default(),
            durable: None,
        })
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|r| r.rule.as_ref())
    }

    pub fn state(&self) -> &State {
        self.state.as_ref().expect("the state is back after every step")
    }

    fn state_mut(&mut self) -> &mut State {
        self.state.as_mut().expect("the state is back after every step")
    }

    /// The state's entries by kind (emitted violations included) and an estimate of its bytes.
    pub fn state_stats(&self) -> StateStats {
        let mut s = self.state().stats();
        s.entries.push(("emitted_violations", self.emitted.len()));
        // Subjects are ids: about 40 bytes of text each.
        let emitted = self.emitted.capacity() * (std::mem::size_of::<((usize, String), i64)>() + 1) + self.emitted.len() * 40;
        s.bytes += emitted;
        s.parts.push(("emitted", emitted));
        s
    }

    /// Evaluates one batch of decoded events (schema [`events_schema`]).
    pub async fn step(&mut self, events: RecordBatch) -> Result<StepReport, EngineError> {
        self.step_held(events, None).await
    }

    /// Like [`Engine::step`], with the watermark held at or below `hold` minus
    /// the lateness (see [`State::step`]); `i64::MIN` holds it where it is.
    pub async fn step_held(&mut self, events: RecordBatch, hold: Option<i64>) -> Result<StepReport, EngineError> {
        let mut report = self.flush().await?;
        let policy = self.policy.clone();
        let input = self.state_mut().step(events, &policy, hold);
        report.absorb(self.evaluate(input).await?);
        Ok(report)
    }

    /// A pipelined step: takes `events` into the state on a blocking thread
    /// while the rules evaluate the previous step, so both cores work. Returns
    /// the report of the previous step (empty on the first); [`Engine::flush`]
    /// or [`Engine::finish`] evaluates the last one. The answer is the one
    /// [`Engine::step_held`] gives. The state already holds `events` when this
    /// returns, so flush before a checkpoint.
    pub async fn push(&mut self, events: RecordBatch, hold: Option<i64>) -> Result<StepReport, EngineError> {
        let mut state = self.state.take().expect("the state is back after every step");
        let policy = self.policy.clone();
        let prepare = tokio::task::spawn_blocking(move || {
            let input = state.step(events, &policy, hold);
            (state, input)
        });
        let report = match self.pending.take() {
            Some(input) => self.evaluate(input).await,
            None => Ok(StepReport::default()),
        };
        match prepare.await {
            Ok((state, input)) => {
                self.state = Some(state);
                self.pending = Some(input);
            }
            // The state step panicked: a bug, not an input problem; there is no state to go on with.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
        report
    }

    /// Evaluates the pending step of [`Engine::push`], if any.
    pub async fn flush(&mut self) -> Result<StepReport, EngineError> {
        match self.pending.take() {
            Some(input) => self.evaluate(input).await,
            None => Ok(StepReport::default()),
        }
    }

    /// Ends a finite input: the pending step is evaluated, the watermark moves
    /// to the largest event time seen and the deadlines it passes are evaluated.
    pub async fn finish(&mut self) -> Result<StepReport, EngineError> {
        let mut report = self.flush().await?;
        let input = self.state_mut().finish();
        report.absorb(self.evaluate(input).await?);
        Ok(report)
    }

    async fn evaluate(&mut self, input: StepInput) -> Result<StepReport, EngineError> {
        let due_requests = due_batch(&self.live.due_requests.schema(), &input.due_requests, false);
        let due_artifacts = due_batch(&self.live.due_artifacts.schema(), &input.due_artifacts, true);
        self.live.events.set(vec![input.events.clone()]);
        self.live.history.set(input.history.iter().cloned().collect());
        self.live.conversations.set(input.conversations.iter().cloned().collect());
        self.live.due_requests.set(vec![due_requests]);
        self.live.due_artifacts.set(vec![due_artifacts]);

        let mut tasks = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            if !r.reads.is_empty() && r.reads.iter().all(|t| t.is_empty()) {
                continue;
            }
            let (task_ctx, plan) = (self.task_ctx.clone(), r.plan.clone());
            tasks.push((
                i,
                tokio::spawn(async move {
                    let started = Instant::now();
                    let batches = collect(reset_plan_states(plan)?, task_ctx).await?;
                    Ok::<_, datafusion::error::DataFusionError>((batches, started.elapsed()))
                }),
            ));
        }
        // A rule that fails does not stop the others: its failure becomes an alert of its own.
        let mut results = Vec::with_capacity(tasks.len());
        let mut failed = Vec::new();
        for (i, task) in tasks {
            let outcome = task.await.unwrap_or_else(|e| {
                Err(datafusion::error::DataFusionError::Internal(format!("rule evaluation stopped unexpectedly: {e}")))
            });
            match outcome {
                Ok((batches, took)) => results.push((i, batches, took)),
                Err(source) => failed.push((i, source)),
            }
        }
        // Drop the step's data from the tables: it is owned by the state or done with.
        for t in [&self.live.events, &self.live.history, &self.live.conversations, &self.live.due_requests, &self.live.due_artifacts] {
            t.set(Vec::new());
        }

        let watermark = input.watermark;
        let detected_at = alert::now();
        let mut report = StepReport {
            events: input.events.num_rows(),
            duplicates: input.duplicates,
            late: input.late,
            watermark,
            accepted: if input.events.num_rows() > 0 { vec![input.events.clone()] } else { Vec::new() },
            ..Default::default()
        };
        for (i, batches, took) in results {
            let rule = self.rules[i].rule.clone();
            report.rule_times.push((rule.id.clone(), took));
            let mut alerts = Vec::new();
            let collected: Result<(), _> =
                batches.iter().try_for_each(|b| self.collect_alerts(i, b, &detected_at, input.max_seen, &mut alerts));
            match collected {
                Ok(()) => report.alerts.extend(alerts),
                Err(source) => failed.push((i, source)),
            }
        }
        for (i, error) in failed {
            let rule = self.rules[i].rule.clone();
            tracing::error!(rule = %rule.id, file = %rule.file, error = %error, "rule failed on a step; the other rules' alerts stand");
            report.rule_errors.push(rule.id.clone());
            report.alerts.push(rule_error_alert(&rule, &error, &input, &detected_at));
        }
        if !report.alerts.is_empty() {
            let touched: Vec<&RecordBatch> = input.history.iter().chain(&input.conversations).collect();
            let origins = OriginIndex::build(&report.alerts, &input.events, &touched, [&input.due_requests, &input.due_artifacts]);
            report.alerts = std::mem::take(&mut report.alerts).into_iter().map(|a| a.with_origins(|id| origins.get(id))).collect();
        }
        self.forget_emitted(watermark);
        Ok(report)
    }

    fn collect_alerts(
        &mut self,
        i: usize,
        batch: &RecordBatch,
        detected_at: &str,
        max_seen: Option<i64>,
        out: &mut Vec<Alert>,
    ) -> Result<(), datafusion::error::DataFusionError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let rule = self.rules[i].rule.clone();
        let utf8 = |name: &str| -> Result<Option<ArrayRef>, datafusion::error::DataFusionError> {
            Ok(match batch.column_by_name(name) {
                Some(c) => Some(cast(c, &DataType::Utf8)?),
                None => None,
            })
        };
        let subject = utf8("subject")?.expect("checked at planning");
        let subject = subject.as_string::<i32>();
        let tenant = utf8("tenant_id")?;
        let summary = utf8("summary")?;
        let time = cast(
            batch.column_by_name("time").expect("checked at planning"),
            &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        )?;
        let time = time.as_primitive::<TimestampNanosecondType>();
        let ids_col = batch.column_by_name("event_ids").expect("checked at planning");
        let ids_list = cast(ids_col, &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))).ok();
        let ids_one = if ids_list.is_none() { Some(cast(ids_col, &DataType::Utf8)?) } else { None };

        for row in 0..batch.num_rows() {
            if subject.is_null(row) {
                continue;
            }
            let subj = subject.value(row);
            let key = (i, subj.to_string());
            if self.emitted.contains_key(&key) {
                continue;
            }
            // Remembered by the violation's own event time: the watermark may not exist yet.
            let at = if time.is_null(row) { max_seen.unwrap_or(i64::MAX) } else { time.value(row) };
            self.emitted.insert(key, at);
            if self.durable.is_some() {
                self.emitted_log.push(checkpoint::EmittedOp::Add(rule.id.clone(), subj.to_string(), at));
            }
            let event_ids: Vec<String> = match (&ids_list, &ids_one) {
                (Some(l), _) => {
                    let l = l.as_list::<i32>();
                    if l.is_null(row) {
                        Vec::new()
                    } else {
                        let v = l.value(row);
                        let v = v.as_string::<i32>();
                        v.iter().flatten().map(str::to_string).collect()
                    }
                }
                (None, Some(s)) => {
                    let s = s.as_string::<i32>();
                    if s.is_null(row) { Vec::new() } else { vec![s.value(row).to_string()] }
                }
                (None, None) => Vec::new(),
            };
            let text = |c: &Option<ArrayRef>| {
                c.as_ref().and_then(|c| {
                    let c = c.as_string::<i32>();
                    c.is_valid(row).then(|| c.value(row).to_string())
                })
            };
            let summary = text(&summary).unwrap_or_else(|| format!("{}: {}", rule.title, subj));
            out.push(Alert {
                alert_id: alert::alert_id(&rule.id, subj),
                rule_id: rule.id.clone(),
                category: rule.category.clone(),
                severity: rule.severity.clone(),
                subject: subj.to_string(),
                tenant_id: text(&tenant),
                time: if time.is_null(row) { detected_at.to_string() } else { alert::format_time(time.value(row)) },
                detected_at: detected_at.to_string(),
                summary,
                controls: rule.controls.clone(),
                evidence: Evidence { event_ids, events: Vec::new() },
                title: rule.title.clone(),
                remediation: rule.remediation.clone(),
            });
        }
        Ok(())
    }

    fn forget_emitted(&mut self, watermark: Option<i64>) {
        let Some(w) = watermark else { return };
        let cutoff = w.saturating_sub(EMITTED_MEMORY);
        if cutoff.saturating_sub(self.emitted_swept) >= 3600 * state::NANOS_PER_SEC {
            self.emitted.retain(|_, at| *at >= cutoff);
            self.emitted_swept = cutoff;
            if self.durable.is_some() {
                self.emitted_log.push(checkpoint::EmittedOp::Sweep(cutoff));
            }
        }
    }
}

/// The alert raised when a rule fails on a step: names the rule and where the
/// step's events came from (per source and partition, the first and last
/// position), so the batch can be found and replayed. Its subject is the rule
/// and those positions, so a replay of the same batch gives the same `alert_id`.
fn rule_error_alert(rule: &Rule, error: &datafusion::error::DataFusionError, input: &StepInput, detected_at: &str) -> Alert {
    let mut spans: std::collections::BTreeMap<(String, Option<i32>), (i64, i64)> = Default::default();
    let events = &input.events;
    let by_name = |name: &str| events.column_by_name(name).expect("origin columns").clone();
    let (source, partition, position) = (by_name("origin_source"), by_name("origin_partition"), by_name("origin_position"));
    let (source, partition, position) =
        (source.as_string::<i32>(), partition.as_primitive::<arrow::datatypes::Int32Type>(), position.as_primitive::<arrow::datatypes::Int64Type>());
    for i in 0..events.num_rows() {
        let p = position.value(i);
        let span = spans.entry((source.value(i).to_string(), partition.is_valid(i).then(|| partition.value(i)))).or_insert((p, p));
        *span = (span.0.min(p), span.1.max(p));
    }
    let mut place: Vec<String> = spans
        .iter()
        .map(|((s, p), (a, b))| match p {
            Some(p) => format!("{s}[{p}]@{a}..{b}"),
            None => format!("{s}:{a}..{b}"),
        })
        .collect();
    if place.is_empty() {
        // A step with no new events: deadlines that came due.
        let due: Vec<&str> = input.due_requests.iter().chain(&input.due_artifacts).map(|o| o.event_id()).take(5).collect();
        place.push(format!("deadlines due at watermark {} (events {})", input.watermark.map_or("none".into(), alert::format_time), due.join(", ")));
    }
    let place = place.join(", ");
    let subject = format!("{} {place}", rule.id);
    Alert {
        alert_id: alert::alert_id(RULE_ERROR, &subject),
        rule_id: RULE_ERROR.to_string(),
        category: "aiwatch".into(),
        severity: "high".into(),
        tenant_id: None,
        time: input.max_seen.map_or_else(|| detected_at.to_string(), alert::format_time),
        detected_at: detected_at.to_string(),
        summary: format!("rule {} ({}) failed on the events of {place}: {error}. The other rules' alerts for these events were emitted.", rule.id, rule.file),
        controls: vec!["CC7.2".into()],
        evidence: Evidence { event_ids: Vec::new(), events: Vec::new() },
        title: "A rule failed to evaluate".into(),
        remediation: format!("Fix the rule file {} (`aiwatch rules check`, `aiwatch rules test`) or the events it fails on, then replay these positions with `aiwatch scan`.", rule.file),
        subject,
    }
}

/// How long history keeps rows: the longest `horizon` of the rules that read
/// `history`, 24 h for one that declares none, nothing when none reads it.
fn history_horizon(rules: &[CompiledRule], live: &LiveTables) -> i64 {
    rules
        .iter()
        .filter(|r| r.reads.iter().any(|t| Arc::ptr_eq(t, &live.history)))
        .map(|r| r.rule.horizon_seconds.map_or(state::HISTORY_HORIZON, |s| s.saturating_mul(state::NANOS_PER_SEC)))
        .max()
        .unwrap_or(0)
}

/// The rule id of the alert raised when a rule fails on a step.
pub const RULE_ERROR: &str = "aiwatch.rule_error";

/// Checks a rule's output columns against [`OUTPUT_COLUMNS`].
fn check_output(schema: &Schema) -> Result<(), String> {
    let is_string = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let field = |name: &str| schema.field_with_name(name).ok();
    let mut problems = Vec::new();
    match field("subject") {
        Some(f) if is_string(f.data_type()) => {}
        Some(f) => problems.push(format!("column `subject` must be a string, not {}", f.data_type())),
        None => problems.push("column `subject` is missing".into()),
    }
    match field("time") {
        Some(f) if matches!(f.data_type(), DataType::Timestamp(_, _)) => {}
        Some(f) => problems.push(format!("column `time` must be a timestamp, not {}", f.data_type())),
        None => problems.push("column `time` is missing".into()),
    }
    match field("event_ids") {
        Some(f) if is_string(f.data_type()) => {}
        Some(f) if matches!(f.data_type(), DataType::List(i) | DataType::LargeList(i) if is_string(i.data_type())) => {}
        Some(f) => problems.push(format!("column `event_ids` must be a list of strings, not {}", f.data_type())),
        None => problems.push("column `event_ids` is missing".into()),
    }
    for name in ["tenant_id", "summary"] {
        if let Some(f) = field(name) {
            if !is_string(f.data_type()) && f.data_type() != &DataType::Null {
                problems.push(format!("column `{name}` must be a string, not {}", f.data_type()));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}; a rule returns {OUTPUT_COLUMNS}", problems.join("; ")))
    }
}

/// Origins of the evidence events of a step's alerts, found by one pass over
/// what the step touched (only when it raised alerts).
struct OriginIndex {
    map: HashMap<String, Origin>,
}

impl OriginIndex {
    fn build(alerts: &[Alert], events: &RecordBatch, touched: &[&RecordBatch], due: [&Vec<Obligation>; 2]) -> OriginIndex {
        let wanted: HashSet<&str> = alerts.iter().flat_map(|a| a.evidence.event_ids.iter().map(String::as_str)).collect();
        let mut map = HashMap::default();
        for b in std::iter::once(events).chain(touched.iter().copied()) {
            let by_name = |name: &str| b.column_by_name(name).expect("origin columns are kept");
            let (ids, source, partition, position) = (by_name("event_id"), by_name("origin_source"), by_name("origin_partition"), by_name("origin_position"));
            let (ids, source) = (ids.as_string::<i32>(), source.as_string::<i32>());
            let (partition, position) = (partition.as_primitive::<arrow::datatypes::Int32Type>(), position.as_primitive::<arrow::datatypes::Int64Type>());
            for i in 0..b.num_rows() {
                let id = ids.value(i);
                if wanted.contains(id) && !map.contains_key(id) {
                    let p = partition.is_valid(i).then(|| partition.value(i));
                    map.insert(id.to_string(), Origin::from_columns(source.value(i), p, position.value(i)));
                }
            }
        }
        for o in due.into_iter().flatten() {
            if wanted.contains(o.event_id()) {
                map.entry(o.event_id().to_string()).or_insert_with(|| o.origin.clone());
            }
            if let (Some((_, id)), Some(origin)) = (&o.met, &o.met_origin) {
                if wanted.contains(&**id) {
                    map.entry(id.to_string()).or_insert_with(|| origin.clone());
                }
            }
        }
        OriginIndex { map }
    }

    fn get(&self, id: &str) -> Option<&Origin> {
        self.map.get(id)
    }
}
