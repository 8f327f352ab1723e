//! The text index of the knowledge catalog, on tantivy.
//!
//! The index is derived data: the image holds every chunk and summary, and
//! the index can always be rebuilt from it. Each index commit carries the
//! catalog's `memory_seq` (the count of memory transactions applied) as its
//! payload; on start the catalog compares it with the image's and rebuilds
//! the index when they differ (see `catalog.rs`).

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, Value as _, FAST, INDEXED, STORED, STRING, TEXT,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use batos_object::value::Oid;

/// Heap of the index writer (tantivy splits it across its threads).
const WRITER_HEAP_BYTES: usize = 64 * 1024 * 1024;
/// Longest snippet, in characters.
const SNIPPET_CHARS: usize = 200;

/// Whether an entry is a chunk or a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A `MemoryChunk`: ingested text.
    Chunk,
    /// A `ContextualSummary`.
    Summary,
}

impl EntryKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Chunk => "chunk",
            EntryKind::Summary => "summary",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<EntryKind> {
        match name {
            "chunk" => Some(EntryKind::Chunk),
            "summary" => Some(EntryKind::Summary),
            _ => None,
        }
    }
}

/// One indexed entry.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The object holding the text.
    pub oid: Oid,
    /// The document source it belongs to.
    pub source: &'a str,
    /// Chunk or summary.
    pub kind: EntryKind,
    /// The text searched.
    pub text: &'a str,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The chunk or summary object.
    pub oid: Oid,
    /// Its source.
    pub source: String,
    /// Chunk or summary.
    pub kind: EntryKind,
    /// BM25 score.
    pub score: f32,
    /// The best passage, matched words in `**bold**`.
    pub snippet: String,
}

/// A search.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery<'a> {
    /// Words (BM25, any may match), `"phrases"` and `+required` words.
    pub text: &'a str,
    /// At most this many hits.
    pub limit: usize,
    /// Only this source.
    pub source: Option<&'a str>,
    /// Only this kind.
    pub kind: Option<EntryKind>,
}

/// Why the index failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The query does not parse.
    #[error("bad query: {0}")]
    BadQuery(String),
    /// Tantivy failed.
    #[error("memory index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
}

#[derive(Clone, Copy)]
struct Fields {
    oid: Field,
    source: Field,
    kind: Field,
    text: Field,
}

/// The index: one writer (the catalog's worker) and shared readers.
pub struct MemoryIndex {
    index: Index,
    reader: IndexReader,
    writer: parking_lot::Mutex<IndexWriter>,
    fields: Fields,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        oid: b.add_u64_field("oid", INDEXED | STORED | FAST),
        source: b.add_text_field("source", STRING | STORED),
        kind: b.add_text_field("kind", STRING | STORED),
        text: b.add_text_field("text", TEXT | STORED),
    };
    (b.build(), fields)
}

impl MemoryIndex {
    /// Opens (or creates) the index in `dir`. An index with another schema
    /// or that cannot be read is recreated empty (it is rebuilt from the image).
    pub fn open(dir: &Path) -> Result<MemoryIndex, IndexError> {
        std::fs::create_dir_all(dir).map_err(|e| tantivy::TantivyError::IoError(e.into()))?;
        let (schema, fields) = schema();
        let index = match Self::open_existing(dir, &schema) {
            Ok(index) => index,
            Err(err) => {
                tracing::warn!(error = %err, dir = %dir.display(), "memory index unreadable; recreating it (it is rebuilt from the image)");
                for entry in std::fs::read_dir(dir)
                    .map_err(|e| tantivy::TantivyError::IoError(e.into()))?
                    .flatten()
                {
                    let _ = std::fs::remove_file(entry.path());
                }
                Index::create_in_dir(dir, schema.clone())?
            }
        };
        let writer = index.writer(WRITER_HEAP_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(MemoryIndex {
            index,
            reader,
            writer: parking_lot::Mutex::new(writer),
            fields,
        })
    }

    fn open_existing(dir: &Path, schema: &Schema) -> Result<Index, tantivy::TantivyError> {
        let directory = MmapDirectory::open(dir)
            .map_err(|e| tantivy::TantivyError::SystemError(e.to_string()))?;
        let index = Index::open_or_create(directory, schema.clone())?;
        index.load_metas()?;
        Ok(index)
    }

    /// The `memory_seq` of the last commit (0 for an empty index).
    pub fn committed_seq(&self) -> u64 {
        self.index
            .load_metas()
            .ok()
            .and_then(|m| m.payload)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// Removes every entry of `source` (chunks and summaries).
    pub fn delete_source(&self, source: &str) {
        let term = Term::from_field_text(self.fields.source, source);
        self.writer.lock().delete_term(term);
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<(), IndexError> {
        self.writer.lock().delete_all_documents()?;
        Ok(())
    }

    /// Adds an entry (visible after [`MemoryIndex::commit`]).
    pub fn add(&self, entry: &Entry<'_>) -> Result<(), IndexError> {
        let f = self.fields;
        self.writer.lock().add_document(doc!(
            f.oid => entry.oid,
            f.source => entry.source,
            f.kind => entry.kind.as_str(),
            f.text => entry.text,
        ))?;
        Ok(())
    }

    /// Commits everything added or deleted since the last commit, records
    /// `seq`, and makes it visible to searches.
    pub fn commit(&self, seq: u64) -> Result<(), IndexError> {
        {
            let mut writer = self.writer.lock();
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&seq.to_string());
            prepared.commit()?;
        }
        self.reader.reload()?;
        Ok(())
    }

    /// Searches; best hits first.
    pub fn search(&self, q: &SearchQuery<'_>) -> Result<Vec<Hit>, IndexError> {
        let f = self.fields;
        if q.text.trim().is_empty() {
            return Err(IndexError::BadQuery("the query is empty".into()));
        }
        // Words are OR'ed (BM25 ranks); people type natural text, so the
        // parse is lenient: syntax it cannot read is taken as plain words.
        let parser = QueryParser::for_index(&self.index, vec![f.text]);
        let (user, _errors) = parser.parse_query_lenient(q.text);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, user.box_clone())];
        if let Some(source) = q.source {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.source, source),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if let Some(kind) = q.kind {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.kind, kind.as_str()),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher.search(
            &query,
            &TopDocs::with_limit(q.limit.max(1)).order_by_score(),
        )?;
        let mut snippets = SnippetGenerator::create(&searcher, &*user, f.text)?;
        snippets.set_max_num_chars(SNIPPET_CHARS);
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr)?;
            let oid = doc.get_first(f.oid).and_then(|v| v.as_u64()).unwrap_or(0);
            let source = doc
                .get_first(f.source)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let kind = doc
                .get_first(f.kind)
                .and_then(|v| v.as_str())
                .and_then(EntryKind::parse)
                .unwrap_or(EntryKind::Chunk);
            let mut snippet = render_snippet(&snippets.snippet_from_doc(&doc));
            if snippet.is_empty() {
                let text = doc
                    .get_first(f.text)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                snippet = prefix_chars(text, SNIPPET_CHARS).to_string();
            }
            hits.push(Hit {
                oid,
                source,
                kind,
                score,
                snippet,
            });
        }
        Ok(hits)
    }
}

/// A snippet as plain text with matched words in `**bold**`; the start of
/// the text when nothing matched (e.g. a filter-only query).
fn render_snippet(snippet: &tantivy::snippet::Snippet) -> String {
    let text = snippet.fragment();
    let mut out = String::with_capacity(text.len() + 8);
    let mut pos = 0;
    for range in snippet.highlighted() {
        out.push_str(&text[pos..range.start]);
        out.push_str("**");
        out.push_str(&text[range.clone()]);
        out.push_str("**");
        pos = range.end;
    }
    out.push_str(&text[pos..]);
    out
}

/// The first `n` characters of `text`.
fn prefix_chars(text: &str, n: usize) -> &str {
    match text.char_indices().nth(n) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}
