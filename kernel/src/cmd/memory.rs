//! `ingest` and `search_memory`: the knowledge catalog.

use batos_actors::ActorError;
use batos_memory::{Catalog, Document, EntryKind, Hit, SearchQuery};
use rmpv::Value;

use super::{resolve, wire_error, Context};
use crate::protocol::{map, ErrorCode, ObjRef, WireError};

/// Longest source name.
const MAX_SOURCE_BYTES: usize = 1024;

pub(super) async fn ingest(
    ctx: &Context,
    documents: Vec<(String, String)>,
) -> Result<Value, WireError> {
    if documents.is_empty() {
        return Err(WireError::new(
            ErrorCode::BadRequest,
            "`documents` must not be empty",
        ));
    }
    for (i, (source, _)) in documents.iter().enumerate() {
        if source.trim().is_empty() || source.len() > MAX_SOURCE_BYTES {
            return Err(WireError::new(
                ErrorCode::BadRequest,
                format!(
                    "document {i}: `source` must be 1..={MAX_SOURCE_BYTES} bytes and not blank"
                ),
            ));
        }
    }
    let documents = documents
        .into_iter()
        .map(|(source, text)| Document { source, text })
        .collect();
    let report = ctx.catalog.ingest(documents).await.map_err(wire_error)?;
    Ok(map([
        ("documents", Value::from(report.documents as u64)),
        ("chunks", Value::from(report.chunks as u64)),
    ]))
}

pub(super) async fn search(
    ctx: &Context,
    query: String,
    limit: u64,
    source: Option<String>,
    kind: Option<String>,
) -> Result<Value, WireError> {
    search_blocking(ctx, move |catalog| {
        catalog.search(&SearchQuery {
            text: &query,
            limit: limit as usize,
            source: source.as_deref(),
            kind: kind.as_deref().and_then(EntryKind::parse),
        })
    })
    .await
}

/// Table 3's `find_related_summaries`: the summaries whose text is most
/// like the object's (`summary_text` or `source_text`), itself left out.
pub(super) async fn related(ctx: &Context, oid: ObjRef, limit: u64) -> Result<Value, WireError> {
    let oid = resolve(ctx, oid)?;
    let slots = ctx
        .space
        .read_committed(oid)
        .await
        .map_err(wire_error)?
        .ok_or_else(|| WireError::new(ErrorCode::NoSuchObject, oid.to_string()))?;
    let text = slots
        .iter()
        .find(|(n, _)| n == "summary_text" || n == "source_text")
        .and_then(|(_, v)| v.as_str())
        .ok_or_else(|| {
            WireError::new(
                ErrorCode::BadRequest,
                format!("object {oid} is not a MemoryChunk or ContextualSummary"),
            )
        })?
        .to_string();
    search_blocking(ctx, move |catalog| {
        catalog.related_summaries(&text, Some(oid), limit as usize)
    })
    .await
}

/// Runs a search of the catalog off the async threads; the hits as the wire has them.
async fn search_blocking(
    ctx: &Context,
    search: impl FnOnce(&Catalog) -> Result<Vec<Hit>, ActorError> + Send + 'static,
) -> Result<Value, WireError> {
    let catalog = ctx.catalog.clone();
    let hits = tokio::task::spawn_blocking(move || search(&catalog))
        .await
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?
        .map_err(wire_error)?;
    Ok(hits_value(hits))
}

fn hits_value(hits: Vec<Hit>) -> Value {
    let hits = hits
        .into_iter()
        .map(|h| {
            map([
                ("chunk", Value::from(h.oid)),
                ("source", Value::from(h.source)),
                ("score", Value::F64(f64::from(h.score))),
                ("snippet", Value::from(h.snippet)),
                ("kind", Value::from(h.kind.as_str())),
            ])
        })
        .collect();
    map([("hits", Value::Array(hits))])
}
