//! SQL over a node's invocations, services and deployments, with DataFusion: the tables the
//! reference's clients query through the admin API's `POST /query` — `sys_invocation_status`
//! and `sys_invocation` (one row per invocation the partitions keep), `sys_service` and
//! `sys_deployment` (from the schema). [`QueryEngine::query`] plans and runs one statement;
//! [`json_rows`] is the reference's JSON answer, `{"rows": [...]}`.
//!
//! What a query may cost is bounded: a scan of the invocation tables reads at most
//! [`MAX_SCANNED_INVOCATIONS`] statuses (a filter on `id` reads only those), and an answer
//! holds at most [`MAX_ROWS`] rows; beyond either the query fails with an error that says so.

mod invocations;
mod registry;

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use reprise_partition_processor::RocksDbStore;
use reprise_schema::{Schema, SchemaView};

pub use invocations::MAX_SCANNED_INVOCATIONS;

/// The most rows an answer holds.
pub const MAX_ROWS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The statement cannot be planned or run (a syntax error, an unknown table or column).
    #[error("{0}")]
    Invalid(String),
    /// The statement would read or answer more than a query may.
    #[error("{0}")]
    TooLarge(String),
    /// The node's storage or schema cannot be read now.
    #[error("{0}")]
    Unavailable(String),
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(err: datafusion::error::DataFusionError) -> Self {
        // Errors of our tables come back wrapped; keep their kind.
        match err.find_root() {
            datafusion::error::DataFusionError::External(inner) => {
                match inner.downcast_ref::<QueryError>() {
                    Some(QueryError::TooLarge(message)) => QueryError::TooLarge(message.clone()),
                    Some(QueryError::Unavailable(message)) => {
                        QueryError::Unavailable(message.clone())
                    }
                    _ => QueryError::Invalid(err.to_string()),
                }
            }
            _ => QueryError::Invalid(err.to_string()),
        }
    }
}

/// Runs SQL over this node's tables. Cheap to clone.
#[derive(Clone)]
pub struct QueryEngine {
    store: RocksDbStore,
    schema: SchemaView,
}

impl QueryEngine {
    pub fn new(store: RocksDbStore, schema: SchemaView) -> Self {
        Self { store, schema }
    }

    /// Plans and runs one SQL statement; its result, as record batches.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let schema = self
            .schema
            .current()
            .await
            .map_err(|err| QueryError::Unavailable(format!("cannot read the schema: {err}")))?;
        run(&self.store, schema, sql).await
    }
}

/// Plans and runs one SQL statement over `store`'s invocations and `schema`'s services and
/// deployments.
pub async fn run(
    store: &RocksDbStore,
    schema: Arc<Schema>,
    sql: &str,
) -> Result<Vec<RecordBatch>, QueryError> {
    let ctx = SessionContext::new();
    for (name, flavor) in [
        ("sys_invocation_status", invocations::Flavor::Status),
        ("sys_invocation", invocations::Flavor::Invocation),
    ] {
        let table = invocations::InvocationTable::new(store.clone(), schema.clone(), flavor);
        ctx.register_table(name, Arc::new(table))?;
    }
    ctx.register_table("sys_service", registry::services(&schema)?)?;
    ctx.register_table("sys_deployment", registry::deployments(&schema)?)?;
    let frame = ctx.sql(sql).await?.limit(0, Some(MAX_ROWS + 1))?;
    let batches = frame.collect().await?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows > MAX_ROWS {
        return Err(QueryError::TooLarge(format!(
            "the answer has more than {MAX_ROWS} rows: add a LIMIT or a narrower WHERE"
        )));
    }
    Ok(batches)
}

/// The reference's JSON answer: `{"rows": [{column: value, ...}, ...]}`.
pub fn json_rows(batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let mut writer = arrow_json::ArrayWriter::new(Vec::new());
    for batch in batches {
        writer
            .write(batch)
            .map_err(|err| QueryError::Invalid(format!("cannot encode the answer: {err}")))?;
    }
    writer
        .finish()
        .map_err(|err| QueryError::Invalid(format!("cannot encode the answer: {err}")))?;
    let array = writer.into_inner();
    let mut out = Vec::with_capacity(array.len() + 10);
    out.extend_from_slice(b"{\"rows\":");
    if array.is_empty() {
        out.extend_from_slice(b"[]");
    } else {
        out.extend_from_slice(&array);
    }
    out.push(b'}');
    Ok(out)
}
