//! The service schema: which deployments are registered and which services and handlers they
//! provide. [`Schema`] is the registry and its rules, pure and deterministic; [`SchemaStore`]
//! keeps it in the metadata store (as the prost message of `proto/schema.proto`, `codec.rs`),
//! changing it only by compare-and-set on its version.
//!
//! Rules of registration (the reference system's, made explicit):
//! - a deployment is identified by its URI and additional headers; registering the same one
//!   again returns it unchanged, unless `force` overwrites it in place;
//! - a service registered by a new deployment gets a new revision served by that deployment;
//! - a breaking change to an existing service (another service type, a removed handler, a
//!   handler of another type) is refused unless `breaking` or `force` is set; adding handlers is
//!   not breaking.

mod codec;
mod registry;
mod store;

pub use codec::DecodeError;
pub use registry::{Deployment, RegisterOutcome, Registration, Schema, SchemaError, ServiceSchema};
pub use store::{SchemaStore, SchemaView, StoreError};
