//! `sys_service` and `sys_deployment`: the schema as tables, built for each query (the schema is
//! small and in memory).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, Date64Array, StringArray, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema as ArrowSchema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use reprise_schema::Schema;
use reprise_service_protocol::discovery::ServiceType;

use crate::QueryError;

/// The reference's name of a service type in the SQL tables.
pub(crate) fn service_type_name(ty: ServiceType) -> &'static str {
    match ty {
        ServiceType::Service => "service",
        ServiceType::VirtualObject => "virtual_object",
        ServiceType::Workflow => "workflow",
    }
}

fn table(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<Arc<MemTable>, QueryError> {
    let schema = Arc::new(ArrowSchema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|err| QueryError::Invalid(err.to_string()))?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

pub(crate) fn services(schema: &Schema) -> Result<Arc<MemTable>, QueryError> {
    let services: Vec<_> = schema.services().collect();
    table(
        vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("revision", DataType::UInt32, false),
            Field::new("public", DataType::Boolean, false),
            Field::new("ty", DataType::Utf8, false),
            Field::new("deployment_id", DataType::Utf8, false),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                services.iter().map(|s| s.service.name.clone()),
            )),
            Arc::new(UInt32Array::from_iter_values(
                services.iter().map(|s| s.revision),
            )),
            Arc::new(BooleanArray::from(vec![true; services.len()])),
            Arc::new(StringArray::from_iter_values(
                services.iter().map(|s| service_type_name(s.service.ty)),
            )),
            Arc::new(StringArray::from_iter_values(
                services.iter().map(|s| s.deployment_id.to_string()),
            )),
        ],
    )
}

pub(crate) fn deployments(schema: &Schema) -> Result<Arc<MemTable>, QueryError> {
    let deployments: Vec<_> = schema.deployments().collect();
    table(
        vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("ty", DataType::Utf8, false),
            Field::new("endpoint", DataType::Utf8, false),
            Field::new("created_at", DataType::Date64, false),
            Field::new("min_service_protocol_version", DataType::UInt32, false),
            Field::new("max_service_protocol_version", DataType::UInt32, false),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                deployments.iter().map(|d| d.id.to_string()),
            )),
            Arc::new(StringArray::from_iter_values(
                deployments.iter().map(|_| "http"),
            )),
            Arc::new(StringArray::from_iter_values(
                deployments.iter().map(|d| d.uri.clone()),
            )),
            Arc::new(Date64Array::from_iter_values(
                deployments.iter().map(|d| d.created_at.as_u64() as i64),
            )),
            Arc::new(UInt32Array::from_iter_values(
                deployments.iter().map(|d| d.min_protocol_version),
            )),
            Arc::new(UInt32Array::from_iter_values(
                deployments.iter().map(|d| d.max_protocol_version),
            )),
        ],
    )
}
