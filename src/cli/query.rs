//! `aiwatch query`: ad hoc SQL over events files, or over the Parquet archive,
//! and the policy tables, for audits.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use datafusion::datasource::MemTable;

use aiwatch::decode::{DecodeOptions, Decoder, Formats};
use aiwatch::engine::{session, EngineConfig};
use aiwatch::event::{col, events_schema};
use aiwatch::formats::Format;
use aiwatch::policy::Policy;
use aiwatch::sources::file::{Framing, LineReader};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Csv,
    Jsonl,
    /// Parquet (zstd); needs `--out`.
    Parquet,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Policy file whose tables (policy_vendors, policy_tenants, ...) the SQL may join (default: empty policy).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// How results are written.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Write the result to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The inputs' format: aiwatch (the default), litellm, otlp_json or
    /// otlp_proto. (`table`, `csv` and `jsonl` are still read as `--output`,
    /// which they were before.)
    #[arg(long, value_name = "NAME", default_value = "aiwatch")]
    pub format: String,
    /// A TOML file with an `[adapter]` table: how litellm and OTLP records map.
    #[arg(long, value_name = "FILE")]
    pub adapter: Option<PathBuf>,
    /// Query the Parquet archive in this directory or object store URL (made by
    /// `scan --archive`) instead of files: tables `events`, `alerts` and
    /// `dead_letters`, each with the partition column `date` ('YYYY-MM-DD').
    #[arg(long, value_name = "DIR_OR_URL", conflicts_with = "inputs")]
    pub archive: Option<String>,
    /// The SQL query; the table `events` holds every valid event of the inputs, duplicates dropped.
    pub sql: String,
    /// Inputs, plain or gzip (JSON Lines, or length-delimited for otlp_proto); `-` reads standard input.
    #[arg(required_unless_present = "archive", value_name = "INPUT")]
    pub inputs: Vec<String>,
}

/// Every valid event of the inputs, duplicates dropped.
fn read_inputs(inputs: &[String], format: Format, formats: Formats) -> anyhow::Result<Vec<RecordBatch>> {
    let mut decoder = Decoder::with_formats(DecodeOptions::default(), formats);
    let mut seen: HashSet<String> = HashSet::new();
    let mut batches = Vec::new();
    let mut dead = 0usize;
    for input in inputs {
        let mut reader = LineReader::open_framed(input, Framing::of(format)).with_context(|| format!("cannot open input {input}"))?;
        while let Some(raw) = reader.next_batch(65_536).with_context(|| format!("cannot read input {input}"))? {
            let d = decoder.decode(&raw);
            dead += d.dead_letters.len();
            let ids = d.events.column(col::EVENT_ID).as_string::<i32>();
            let keep: BooleanArray = ids.iter().map(|id| Some(seen.insert(id.unwrap_or_default().to_string()))).collect();
            batches.push(filter_record_batch(&d.events, &keep)?);
        }
    }
    if dead > 0 {
        tracing::warn!(dead_letters = dead, "malformed events were skipped; `aiwatch scan --dead-letter FILE` lists them");
    }
    Ok(batches)
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let policy = match &a.policy {
        Some(p) => Arc::new(Policy::load(p)?),
        None => Arc::new(Policy::empty()),
    };
    let (format, output) = match a.format.as_str() {
        "table" | "csv" | "jsonl" | "parquet" => {
            tracing::warn!("`--format {}` is read as `--output {}`; --format names the inputs' format now", a.format, a.format);
            let output = <Output as clap::ValueEnum>::from_str(&a.format, false).map_err(|e| anyhow::anyhow!(e))?;
            (Format::Aiwatch, output)
        }
        name => (name.parse::<Format>().map_err(|e| anyhow::anyhow!("--format: {e}"))?, a.output),
    };
    if output == Output::Parquet && a.out.is_none() {
        anyhow::bail!("--output parquet writes a file: add --out FILE");
    }
    let ctx = session(&policy, &EngineConfig::default())?;
    match &a.archive {
        Some(location) => {
            let target = aiwatch::archive::Target::open_existing(location)?;
            aiwatch::archive::tables::register(&ctx, &target).with_context(|| format!("cannot open the archive {location}"))?;
        }
        None => {
            let formats = super::formats(format, a.adapter.as_deref())?;
            let batches = read_inputs(&a.inputs, format, formats)?;
            ctx.register_table("events", Arc::new(MemTable::try_new(events_schema(), vec![batches])?))?;
        }
    }
    let df = ctx.sql(&a.sql).await.context("the query cannot be planned")?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let results: Vec<RecordBatch> = df.collect().await.context("the query failed")?;
    let mut out: Box<dyn Write + Send> = match &a.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create the output file {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    match output {
        Output::Table => writeln!(out, "{}", arrow::util::pretty::pretty_format_batches(&results)?)?,
        Output::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
            for b in &results {
                w.write(b)?;
            }
        }
        Output::Jsonl => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
            for b in &results {
                w.write(b)?;
            }
            w.finish()?;
        }
        Output::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .build();
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props))?;
            for b in &results {
                w.write(b)?;
            }
            w.close()?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
