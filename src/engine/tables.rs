//! The tables and functions rules see: the live engine tables, whose contents
//! change every step while the rules' plans stay the same, and the policy as
//! reference tables and lookup functions.

use std::fmt;
use std::sync::{Arc, RwLock};

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Builder, ListBuilder, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::memory::MemTable;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{create_udf, ColumnarValue, Expr, Volatility};
use datafusion::physical_plan::memory::{LazyBatchGenerator, LazyMemoryExec};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::policy::Policy;

/// A table whose rows are replaced at every engine step. Plans are made once
/// against it, logical and physical; each execution of a plan reads what the
/// table holds at that moment (its scan is a [`LazyMemoryExec`] whose
/// generator takes the current batches when the plan is executed).
pub struct LiveTable {
    schema: SchemaRef,
    batches: Arc<RwLock<Vec<RecordBatch>>>,
}

/// The scan of a [`LiveTable`]: each reset (each execution) takes the table's
/// current batches and hands them out one by one.
#[derive(Debug)]
struct LiveBatches {
    table: Arc<RwLock<Vec<RecordBatch>>>,
    /// The batches still to hand out, last first.
    left: Vec<RecordBatch>,
}

impl fmt::Display for LiveBatches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LiveBatches")
    }
}

impl LazyBatchGenerator for LiveBatches {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn generate_next_batch(&mut self) -> DfResult<Option<RecordBatch>> {
        Ok(self.left.pop())
    }

    fn reset_state(&self) -> Arc<parking_lot::RwLock<dyn LazyBatchGenerator>> {
        let mut left = self.table.read().expect("live table lock").clone();
        left.reverse();
        Arc::new(parking_lot::RwLock::new(LiveBatches { table: self.table.clone(), left }))
    }
}

impl fmt::Debug for LiveTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveTable").field("schema", &self.schema).finish_non_exhaustive()
    }
}

impl LiveTable {
    pub fn new(schema: SchemaRef) -> Arc<LiveTable> {
        Arc::new(LiveTable { schema, batches: Arc::new(RwLock::new(Vec::new())) })
    }

    pub fn set(&self, batches: Vec<RecordBatch>) {
        *self.batches.write().expect("live table lock") = batches;
    }

    pub fn batches(&self) -> Vec<RecordBatch> {
        self.batches.read().expect("live table lock").clone()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.read().expect("live table lock").iter().all(|b| b.num_rows() == 0)
    }
}

#[async_trait]
impl TableProvider for LiveTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let generator = LiveBatches { table: self.batches.clone(), left: Vec::new() };
        let exec = LazyMemoryExec::try_new(self.schema.clone(), vec![Arc::new(parking_lot::RwLock::new(generator))])?;
        Ok(Arc::new(exec.with_projection(projection.cloned())))
    }
}

fn utf8_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn string_list<'a>(rows: impl Iterator<Item = &'a [String]>) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for row in rows {
        for s in row {
            b.values().append_value(s);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn mem_table(ctx: &SessionContext, name: &str, schema: Schema, columns: Vec<ArrayRef>) -> DfResult<()> {
    let schema = Arc::new(schema);
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))?;
    Ok(())
}

/// Registers the policy as tables (`policy_*`) and lookup functions (`tenant_*`).
pub fn register_policy(ctx: &SessionContext, policy: &Arc<Policy>) -> DfResult<()> {
    let p = policy;
    mem_table(
        ctx,
        "policy_vendors",
        Schema::new(vec![
            Field::new("provider", DataType::Utf8, false),
            Field::new("dpa_signed", DataType::Boolean, false),
            Field::new("trains_on_customer_data", DataType::Boolean, false),
            Field::new("allowed_data_classes", utf8_list(), false),
        ]),
        vec![
            Arc::new(StringArray::from_iter_values(p.vendors.iter().map(|v| &v.provider))),
            Arc::new(BooleanArray::from_iter(p.vendors.iter().map(|v| Some(v.dpa_signed)))),
            Arc::new(BooleanArray::from_iter(p.vendors.iter().map(|v| Some(v.trains_on_customer_data)))),
            string_list(p.vendors.iter().map(|v| v.allowed_data_classes.as_slice())),
        ],
    )?;

    // One row per tenant with an entry, already merged over the defaults; the
    // defaults themselves are the row with a NULL tenant_id.
    let rows: Vec<(Option<&String>, &crate::policy::TenantPolicy)> =
        std::iter::once((None, &p.defaults)).chain(p.tenants.iter().map(|(k, v)| (Some(k), v))).collect();
    let mut retention: Vec<ArrayRef> = Vec::new();
    for kind in crate::policy::ARTIFACT_KINDS {
        let mut b = Int64Builder::new();
        for (_, t) in &rows {
            b.append_option(t.retention_days.days(kind).map(i64::from));
        }
        retention.push(Arc::new(b.finish()));
    }
    let mut fields = vec![Field::new("tenant_id", DataType::Utf8, true), Field::new("allowed_regions", utf8_list(), false)];
    fields.extend(crate::policy::ARTIFACT_KINDS.iter().map(|k| Field::new(format!("retention_days_{k}"), DataType::Int64, true)));
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter(rows.iter().map(|(k, _)| k.map(String::as_str)))),
        string_list(rows.iter().map(|(_, t)| t.allowed_regions.as_slice())),
    ];
    columns.extend(retention);
    mem_table(ctx, "policy_tenants", Schema::new(fields), columns)?;

    mem_table(
        ctx,
        "policy_change_authorizations",
        Schema::new(vec![
            Field::new("actor_id", DataType::Utf8, false),
            Field::new("resource_type", DataType::Utf8, false),
            Field::new("environment", DataType::Utf8, false),
        ]),
        vec![
            Arc::new(StringArray::from_iter_values(p.authorizations.iter().map(|a| &a.actor_id))),
            Arc::new(StringArray::from_iter_values(p.authorizations.iter().map(|a| &a.resource_type))),
            Arc::new(StringArray::from_iter_values(p.authorizations.iter().map(|a| &a.environment))),
        ],
    )?;

    mem_table(
        ctx,
        "policy_approval_required",
        Schema::new(vec![Field::new("environment", DataType::Utf8, false)]),
        vec![Arc::new(StringArray::from_iter_values(p.approval_required_in.iter()))],
    )?;

    mem_table(
        ctx,
        "policy_settings",
        Schema::new(vec![Field::new("response_timeout_seconds", DataType::Int64, false)]),
        vec![Arc::new(arrow::array::Int64Array::from(vec![p.response_timeout_seconds]))],
    )?;

    // tenant_allowed_regions(tenant_id): the tenant's effective list; NULL for a NULL tenant.
    let pol = policy.clone();
    ctx.register_udf(create_udf(
        "tenant_allowed_regions",
        vec![DataType::Utf8],
        utf8_list(),
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let tenants = as_strings(&arrays[0])?;
            let mut b = ListBuilder::new(StringBuilder::new());
            for t in tenants.iter() {
                match t {
                    Some(t) => {
                        for r in &pol.tenant(t).allowed_regions {
                            b.values().append_value(r);
                        }
                        b.append(true);
                    }
                    None => b.append(false),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(b.finish())))
        }),
    ));

    // tenant_region_allowed(tenant_id, region): whether the region is in the
    // tenant's effective list; NULL when either is NULL. What
    // `array_has(tenant_allowed_regions(t), r)` says, without building a list
    // for every row (the built-in region rules call it on every request).
    let pol = policy.clone();
    ctx.register_udf(create_udf(
        "tenant_region_allowed",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (tenants, regions) = (as_strings(&arrays[0])?, as_strings(&arrays[1])?);
            let allowed: BooleanArray = tenants
                .iter()
                .zip(regions.iter())
                .map(|(t, r)| {
                    let (t, r) = (t?, r?);
                    Some(pol.tenant(t).allowed_regions.iter().any(|a| a == r))
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(allowed)))
        }),
    ));

    // tenant_retention_days(tenant_id, artifact_kind): days, or NULL for no deadline.
    let pol = policy.clone();
    ctx.register_udf(create_udf(
        "tenant_retention_days",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let (tenants, kinds) = (as_strings(&arrays[0])?, as_strings(&arrays[1])?);
            let mut b = Int64Builder::with_capacity(tenants.len());
            for (t, k) in tenants.iter().zip(kinds.iter()) {
                b.append_option(match (t, k) {
                    (Some(t), Some(k)) => pol.tenant(t).retention_days.days(k).map(i64::from),
                    _ => None,
                });
            }
            Ok(ColumnarValue::Array(Arc::new(b.finish())))
        }),
    ));
    Ok(())
}

fn as_strings(a: &ArrayRef) -> DfResult<&StringArray> {
    a.as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| DataFusionError::Execution(format!("expected a string argument, got {}", a.data_type())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tenant_region_allowed(t, r)` says what `array_has(tenant_allowed_regions(t), r)` says, NULLs included.
    #[tokio::test]
    async fn tenant_region_allowed_answers_as_array_has_of_the_tenant_list() {
        let policy = Arc::new(
            Policy::parse(
                "[[vendor]]\nprovider = \"openai\"\ndpa_signed = true\ntrains_on_customer_data = false\nallowed_data_classes = []\n\n\
                 [tenant_defaults]\nallowed_regions = [\"us\", \"eu\"]\n\n[[tenant]]\ntenant_id = \"acme\"\nallowed_regions = [\"eu\"]\n",
                "test",
            )
            .unwrap(),
        );
        let ctx = SessionContext::new();
        register_policy(&ctx, &policy).unwrap();
        let sql = "SELECT t, r, tenant_region_allowed(t, r) AS fast, array_has(tenant_allowed_regions(t), r) AS slow FROM (VALUES \
                   ('acme', 'eu'), ('acme', 'us'), ('other', 'us'), ('other', 'apac'), (NULL, 'eu'), ('acme', NULL), (NULL, NULL)) AS v(t, r)";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let b = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let bools = |i: usize| b.column(i).as_any().downcast_ref::<BooleanArray>().unwrap().iter().collect::<Vec<_>>();
        assert_eq!(bools(2), [Some(true), Some(false), Some(true), Some(false), None, None, None]);
        // Where both tenant and region are known, the two agree.
        for (fast, slow) in bools(2).into_iter().zip(bools(3)).take(4) {
            assert_eq!(fast, slow);
        }
    }
}
