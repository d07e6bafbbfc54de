//! The archive as SQL: `events`, `alerts` and `dead_letters` as DataFusion
//! listing tables over the Parquet files, with `date` (`YYYY-MM-DD`, a string)
//! as the Hive partition column. A filter on `date` prunes at listing time, so
//! a query over one day opens only that day's files.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

use super::{Table, Target};

/// The listing table of `table` in the archive at `target`.
pub fn listing_table(target: &Target, table: Table) -> Result<ListingTable, DataFusionError> {
    let url = ListingTableUrl::parse(target.url(table.name()))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("date".to_string(), DataType::Utf8)]);
    let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(table.schema());
    ListingTable::try_new(config)
}

/// Registers the archive's store (when it is not the local disk) and its three tables in `ctx`.
pub fn register(ctx: &SessionContext, target: &Target) -> Result<(), DataFusionError> {
    if target.store_url.scheme() != "file" {
        ctx.runtime_env().register_object_store(&target.store_url, Arc::clone(&target.store));
    }
    for table in Table::ALL {
        ctx.register_table(table.name(), Arc::new(listing_table(target, table)?))?;
    }
    Ok(())
}
