//! `ListObject` and `MapObject` from the SDK conformance contract: state as a list under one
//! key, and as one state key per map entry.

use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};

pub struct ListObject;

const LIST: &str = "list";

#[restate_sdk::object(name = "ListObject")]
impl ListObject {
    #[handler]
    async fn append(&self, ctx: ObjectContext<'_>, value: String) -> HandlerResult<()> {
        let mut list = ctx
            .get::<Json<Vec<String>>>(LIST)
            .await?
            .unwrap_or_default();
        list.0.push(value);
        ctx.set(LIST, list);
        Ok(())
    }

    #[handler]
    async fn get(&self, ctx: ObjectContext<'_>) -> HandlerResult<Json<Vec<String>>> {
        Ok(ctx
            .get::<Json<Vec<String>>>(LIST)
            .await?
            .unwrap_or_default())
    }

    /// Empties the list and returns what it held.
    #[handler]
    async fn clear(&self, ctx: ObjectContext<'_>) -> HandlerResult<Json<Vec<String>>> {
        let list = ctx
            .get::<Json<Vec<String>>>(LIST)
            .await?
            .unwrap_or_default();
        ctx.clear(LIST);
        Ok(list)
    }
}

pub struct MapObject;

#[derive(Serialize, Deserialize)]
pub struct Entry {
    key: String,
    value: String,
}

#[restate_sdk::object(name = "MapObject")]
impl MapObject {
    #[handler]
    async fn set(&self, ctx: ObjectContext<'_>, entry: Json<Entry>) -> HandlerResult<()> {
        let Entry { key, value } = entry.into_inner();
        ctx.set(&key, value);
        Ok(())
    }

    #[handler]
    async fn get(&self, ctx: ObjectContext<'_>, key: String) -> HandlerResult<String> {
        Ok(ctx.get::<String>(&key).await?.unwrap_or_default())
    }

    /// Clears every entry and returns them.
    #[handler(name = "clearAll")]
    async fn clear_all(&self, ctx: ObjectContext<'_>) -> HandlerResult<Json<Vec<Entry>>> {
        let mut entries = Vec::new();
        for key in ctx.get_keys().await? {
            let value = ctx.get::<String>(&key).await?.unwrap_or_default();
            entries.push(Entry { key, value });
        }
        ctx.clear_all();
        Ok(Json(entries))
    }
}
