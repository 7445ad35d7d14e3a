//! `sys_invocation_status` and `sys_invocation`: one row per invocation the node's partitions
//! keep, read from the status table when a query runs. A filter on `id` (`id = '…'` or
//! `id IN (…)`) is pushed down and reads only those statuses; any other scan reads the
//! statuses in id order, at most [`MAX_SCANNED_INVOCATIONS`] of them.
//!
//! The two tables differ in `status`: `sys_invocation_status` has the stored state (`inboxed`,
//! `scheduled`, `invoked`, `suspended`, `paused`, `completed`), `sys_invocation` the one the
//! reference's CLI shows (`pending`, `scheduled`, `running`, `suspended`, `paused`,
//! `completed`).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Date64Array, StringArray, UInt32Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema as ArrowSchema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::{MemTable, TableProvider, TableType};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use reprise_partition_processor::{
    InvocationResult, InvocationStatus, InvocationTarget, ResponseSink, RocksDbStore,
};
use reprise_schema::Schema;
use reprise_types::InvocationId;

use crate::QueryError;
use crate::registry::service_type_name;

/// The most statuses a scan of the invocation tables reads.
pub const MAX_SCANNED_INVOCATIONS: usize = 100_000;
/// Statuses read from the store at a time.
const PAGE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// `sys_invocation_status`: the stored state.
    Status,
    /// `sys_invocation`: the state as the CLI names it.
    Invocation,
}

#[derive(Debug, Clone)]
pub(crate) struct InvocationTable {
    store: RocksDbStore,
    schema: Arc<Schema>,
    flavor: Flavor,
    columns: SchemaRef,
}

impl InvocationTable {
    pub(crate) fn new(store: RocksDbStore, schema: Arc<Schema>, flavor: Flavor) -> Self {
        let text = |name: &str| Field::new(name, DataType::Utf8, true);
        let columns = Arc::new(ArrowSchema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("target", DataType::Utf8, false),
            Field::new("target_service_name", DataType::Utf8, false),
            text("target_service_key"),
            Field::new("target_handler_name", DataType::Utf8, false),
            Field::new("target_service_ty", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("created_at", DataType::Date64, true),
            text("invoked_by"),
            text("invoked_by_id"),
            text("pinned_deployment_id"),
            Field::new("pinned_service_protocol_version", DataType::UInt32, true),
            Field::new("retry_count", DataType::UInt64, true),
            text("last_failure"),
            Field::new("journal_length", DataType::UInt32, false),
            text("completion_result"),
            text("completion_failure"),
        ]));
        Self {
            store,
            schema,
            flavor,
            columns,
        }
    }

    /// The statuses a scan with `ids` pushed down (or none) reads.
    fn read(
        &self,
        ids: Option<BTreeSet<InvocationId>>,
    ) -> Result<Vec<(InvocationId, InvocationStatus)>, QueryError> {
        let unavailable = |err: reprise_partition_processor::StorageError| {
            QueryError::Unavailable(err.to_string())
        };
        if let Some(ids) = ids {
            let mut rows = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(status) = self.store.read_status(id).map_err(unavailable)? {
                    rows.push((id, status));
                }
            }
            return Ok(rows);
        }
        let mut rows = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .statuses_after(after, PAGE)
                .map_err(unavailable)?;
            after = page.last().map(|(id, _)| *id);
            let done = page.len() < PAGE;
            rows.extend(page);
            if rows.len() > MAX_SCANNED_INVOCATIONS {
                return Err(QueryError::TooLarge(format!(
                    "the query would read more than {MAX_SCANNED_INVOCATIONS} invocations: \
                     filter on `id` (id = '…' or id IN (…))"
                )));
            }
            if done {
                return Ok(rows);
            }
        }
    }

    fn batch(&self, rows: &[(InvocationId, InvocationStatus)]) -> Result<RecordBatch, QueryError> {
        let mut table = Columns::default();
        for (id, status) in rows {
            table.push(*id, status, self.flavor, &self.schema);
        }
        RecordBatch::try_new(self.columns.clone(), table.into_arrays())
            .map_err(|err| QueryError::Invalid(err.to_string()))
    }
}

/// The ids an `id = '…'` or `id IN ('…', …)` filter names, if `expr` is one.
fn pushed_ids(expr: &Expr) -> Option<BTreeSet<InvocationId>> {
    let is_id = |expr: &Expr| matches!(expr, Expr::Column(column) if column.name == "id");
    let literal = |expr: &Expr| match expr {
        Expr::Literal(ScalarValue::Utf8(Some(text)), _) => Some(text.clone()),
        _ => None,
    };
    let texts: Vec<String> = match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            if is_id(left) {
                vec![literal(right)?]
            } else if is_id(right) {
                vec![literal(left)?]
            } else {
                return None;
            }
        }
        Expr::InList(list) if !list.negated && is_id(&list.expr) => {
            list.list.iter().map(literal).collect::<Option<Vec<_>>>()?
        }
        _ => return None,
    };
    // A text that is not an id matches no row.
    Some(texts.iter().filter_map(|text| text.parse().ok()).collect())
}

#[async_trait]
impl TableProvider for InvocationTable {
    fn schema(&self) -> SchemaRef {
        self.columns.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: DataFusion applies the filter again to what the scan returns.
        Ok(filters
            .iter()
            .map(|filter| match pushed_ids(filter) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        // Filters are ANDed: the first that names ids bounds what is read.
        let ids = filters.iter().find_map(pushed_ids);
        let table = self.clone();
        // RocksDB reads run on the blocking pool, not on the runtime's workers.
        let batch = tokio::task::spawn_blocking(move || {
            let rows = table.read(ids)?;
            table.batch(&rows)
        })
        .await
        .map_err(|err| {
            DataFusionError::External(Box::new(QueryError::Unavailable(err.to_string())))
        })?
        .map_err(|err| DataFusionError::External(Box::new(err)))?;
        let memory = MemTable::try_new(self.columns.clone(), vec![vec![batch]])?;
        memory.scan(state, projection, &[], limit).await
    }
}

/// The columns of a batch, row by row.
#[derive(Default)]
struct Columns {
    id: Vec<String>,
    target: Vec<String>,
    service: Vec<String>,
    key: Vec<Option<String>>,
    handler: Vec<String>,
    service_ty: Vec<&'static str>,
    status: Vec<&'static str>,
    created_at: Vec<Option<i64>>,
    invoked_by: Vec<Option<&'static str>>,
    invoked_by_id: Vec<Option<String>>,
    deployment: Vec<Option<String>>,
    protocol_version: Vec<Option<u32>>,
    retry_count: Vec<Option<u64>>,
    last_failure: Vec<Option<String>>,
    journal_length: Vec<u32>,
    completion_result: Vec<Option<&'static str>>,
    completion_failure: Vec<Option<String>>,
}

impl Columns {
    fn push(
        &mut self,
        id: InvocationId,
        status: &InvocationStatus,
        flavor: Flavor,
        schema: &Schema,
    ) {
        let (target, journal_length) = match status {
            InvocationStatus::Completed {
                target,
                journal_length,
                ..
            } => (target, *journal_length),
            other => match other.in_flight() {
                Some(in_flight) => (&in_flight.target, in_flight.journal_length),
                None => return,
            },
        };
        self.id.push(id.to_string());
        self.target.push(target_text(target));
        self.service.push(target.service.clone());
        self.key.push(target.key.clone());
        self.handler.push(target.handler.clone());
        self.service_ty.push(schema.service(&target.service).map_or(
            if target.key.is_some() {
                "virtual_object"
            } else {
                "service"
            },
            |s| service_type_name(s.service.ty),
        ));
        self.status.push(status_name(status, flavor));
        self.journal_length.push(journal_length);
        let in_flight = status.in_flight();
        self.created_at
            .push(in_flight.map(|f| f.created_at.as_u64() as i64));
        let caller = in_flight.and_then(|f| {
            f.response_sinks.iter().find_map(|sink| match sink {
                ResponseSink::Invocation { caller, .. } => Some(*caller),
                ResponseSink::Ingress { .. } => None,
            })
        });
        self.invoked_by.push(
            Some(if caller.is_some() {
                "service"
            } else {
                "ingress"
            })
            .filter(|_| in_flight.is_some()),
        );
        self.invoked_by_id.push(caller.map(|id| id.to_string()));
        let pinned = in_flight.and_then(|f| f.deployment.as_ref());
        self.deployment
            .push(pinned.map(|d| d.deployment_id.clone()));
        self.protocol_version
            .push(pinned.map(|d| d.protocol_version));
        self.retry_count
            .push(in_flight.map(|f| u64::from(f.attempt)));
        self.last_failure
            .push(in_flight.and_then(|f| f.last_failure.clone()));
        let (result, failure) = match status {
            InvocationStatus::Completed {
                result: InvocationResult::Success(_),
                ..
            } => (Some("success"), None),
            InvocationStatus::Completed {
                result: InvocationResult::Failure { code, message },
                ..
            } => (Some("failure"), Some(format!("[{code}] {message}"))),
            _ => (None, None),
        };
        self.completion_result.push(result);
        self.completion_failure.push(failure);
    }

    fn into_arrays(self) -> Vec<ArrayRef> {
        vec![
            Arc::new(StringArray::from(self.id)),
            Arc::new(StringArray::from(self.target)),
            Arc::new(StringArray::from(self.service)),
            Arc::new(StringArray::from(self.key)),
            Arc::new(StringArray::from(self.handler)),
            Arc::new(StringArray::from(self.service_ty)),
            Arc::new(StringArray::from(self.status)),
            Arc::new(Date64Array::from(self.created_at)),
            Arc::new(StringArray::from(self.invoked_by)),
            Arc::new(StringArray::from(self.invoked_by_id)),
            Arc::new(StringArray::from(self.deployment)),
            Arc::new(UInt32Array::from(self.protocol_version)),
            Arc::new(UInt64Array::from(self.retry_count)),
            Arc::new(StringArray::from(self.last_failure)),
            Arc::new(UInt32Array::from(self.journal_length)),
            Arc::new(StringArray::from(self.completion_result)),
            Arc::new(StringArray::from(self.completion_failure)),
        ]
    }
}

/// `Service/handler`, or `Object/key/handler`, as the reference writes a target.
fn target_text(target: &InvocationTarget) -> String {
    match &target.key {
        Some(key) => format!("{}/{key}/{}", target.service, target.handler),
        None => format!("{}/{}", target.service, target.handler),
    }
}

fn status_name(status: &InvocationStatus, flavor: Flavor) -> &'static str {
    match (status, flavor) {
        (InvocationStatus::Inboxed { .. }, Flavor::Status) => "inboxed",
        (InvocationStatus::Inboxed { .. }, Flavor::Invocation) => "pending",
        (InvocationStatus::Invoked(_), Flavor::Status) => "invoked",
        (InvocationStatus::Invoked(_), Flavor::Invocation) => "running",
        (InvocationStatus::Scheduled(_), _) => "scheduled",
        (InvocationStatus::Suspended { .. }, _) => "suspended",
        (InvocationStatus::Paused(_), _) => "paused",
        (InvocationStatus::Completed { .. }, _) => "completed",
    }
}
