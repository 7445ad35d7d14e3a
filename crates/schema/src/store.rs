//! The schema's home: one value under [`SchemaStore::KEY`] in the metadata store. Changes read
//! the current value, apply a change to a copy and write it back only if nobody wrote in
//! between (compare-and-set on the version); a lost race is retried on the new value.

use std::sync::Arc;

use bytes::Bytes;
use reprise_metadata_server::{MetadataClient, MetadataError, Precondition};
use tokio::sync::{Mutex, watch};
use tracing::debug;

use crate::registry::Schema;

/// How often a change is retried after losing a race with another writer.
const MAX_ATTEMPTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum StoreError<E> {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("the stored schema is not readable: {0}")]
    Corrupt(String),
    #[error("the schema changed concurrently {MAX_ATTEMPTS} times in a row; try again")]
    Contended,
    /// The change itself refused.
    #[error(transparent)]
    Rejected(E),
}

#[derive(Clone)]
pub struct SchemaStore {
    metadata: MetadataClient,
}

impl SchemaStore {
    pub const KEY: &'static str = "schema";

    pub fn new(metadata: MetadataClient) -> Self {
        Self { metadata }
    }

    /// The current schema (empty before the first registration).
    pub async fn load(&self) -> Result<Schema, StoreError<std::convert::Infallible>> {
        Ok(self.load_versioned().await?.0)
    }

    async fn load_versioned<E>(&self) -> Result<(Schema, Option<u64>), StoreError<E>> {
        match self.metadata.get(Self::KEY).await? {
            None => Ok((Schema::default(), None)),
            Some(stored) => crate::codec::decode(&stored.value)
                .map(|schema| (schema, Some(stored.version)))
                .map_err(|err| StoreError::Corrupt(err.to_string())),
        }
    }

    /// Applies `change` to the current schema and stores the result. `change` may run more
    /// than once (after a lost race), so it must not have side effects.
    pub async fn update<T, E>(
        &self,
        mut change: impl FnMut(&mut Schema) -> Result<T, E>,
    ) -> Result<T, StoreError<E>> {
        for _ in 0..MAX_ATTEMPTS {
            let (mut schema, version) = self.load_versioned().await?;
            let before = schema.clone();
            let outcome = change(&mut schema).map_err(StoreError::Rejected)?;
            if schema == before {
                return Ok(outcome);
            }
            let bytes = crate::codec::encode(&schema);
            let precondition = match version {
                Some(version) => Precondition::MatchesVersion(version),
                None => Precondition::DoesNotExist,
            };
            match self
                .metadata
                .put(Self::KEY, Bytes::from(bytes), precondition)
                .await
            {
                Ok(_) => return Ok(outcome),
                Err(MetadataError::PreconditionFailed { .. }) => {
                    debug!("schema changed concurrently; retrying");
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(StoreError::Contended)
    }
}

/// The schema as of the latest applied write, cached: reading it costs a version comparison
/// unless the schema changed since the last read. Cheap to clone.
#[derive(Clone)]
pub struct SchemaView {
    store: SchemaStore,
    version: watch::Receiver<Option<u64>>,
    cached: Arc<Mutex<(Option<u64>, Arc<Schema>)>>,
}

impl SchemaView {
    pub fn new(store: SchemaStore) -> Self {
        let version = store.metadata.watch(SchemaStore::KEY);
        Self {
            store,
            version,
            cached: Arc::new(Mutex::new((None, Arc::new(Schema::default())))),
        }
    }

    /// The current schema: reflects every registration acknowledged before the call.
    pub async fn current(&self) -> Result<Arc<Schema>, StoreError<std::convert::Infallible>> {
        let wanted = *self.version.borrow();
        let mut cached = self.cached.lock().await;
        if wanted.is_none() || cached.0 != wanted {
            let (schema, version) = self.store.load_versioned().await?;
            *cached = (version, Arc::new(schema));
        }
        Ok(cached.1.clone())
    }
}
