//! Fractal memory: the knowledge catalog (O-RAG on tantivy), chunking to a
//! token budget, and summaries over summaries.

pub mod catalog;
pub mod chunker;
pub mod index;
pub mod summary;
pub mod tokens;

pub use catalog::{Catalog, CatalogConfig, Document, IngestReport};
pub use index::{EntryKind, Hit, SearchQuery};
