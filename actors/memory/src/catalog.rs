//! The knowledge catalog (`knowledge_catalog_obj`): ingest, chunk, index,
//! summarize and search, with the image as the source of truth.
//!
//! One worker thread owns every write: it takes queued ingests in batches
//! (whatever is waiting, up to a limit), writes each batch's objects in one
//! image transaction, then indexes them in one index commit, and only then
//! acknowledges the requests, so ingested text is searchable on the reply.
//! When no ingest waits, it summarizes sources in the background.
//!
//! Crash consistency: a source's chunks, its source object and its
//! directory entry are one image transaction, so the image has a source
//! fully or not at all. Every memory transaction bumps the catalog's
//! `memory_seq`, and every index commit records the `memory_seq` it
//! reflects. On start, an index whose recorded `memory_seq` differs from
//! the image's is rebuilt from the image, so it never shows a half source.
//!
//! A summary tree is published in two steps so that a source's `summary`
//! slot means its tree is searchable, and every search hit names an object
//! that exists: one transaction writes the tree with the source's
//! `summary_pending` pointing at its top, the index commits it, and a second
//! transaction links it (`summary`, and the chunks' `parent_summary*`). A
//! tree left pending by a crash is indexed and linked on the next start.
//!
//! Objects (slot names per the seed's Table 3):
//! - `MemoryChunk`: `source_text`, `token_count`, `metadata` (`source`,
//!   `index`, `offset`, `tokenizer`), `source_object`, `parent_summary*`.
//! - `ContextualSummary`: `summary_text`, `child_chunks*`, `level`,
//!   `source`, `token_count`, `summarizer`, `parent_summary*` (not at the top).
//! - `MemorySource`: `name`, `chunks`, `generation`, `bytes`, `tokens`,
//!   `summary` (the top summary, once summarized and searchable),
//!   `summary_pending` (between writing a tree and linking it).
//! - Directory shards: `sources` (source name → `MemorySource`); the
//!   catalog holds `shards`, the prototypes and `memory_seq`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use futures::executor::block_on;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use tokio::sync::oneshot;

use super::chunker;
use super::index::{Entry, EntryKind, Hit, MemoryIndex, SearchQuery};
use super::summary::{groups, Summarizer};
use super::tokens::SharedCounter;
use batos_actors::space::ObjectSpace;
use batos_object::changes::Changes;
use batos_object::error::ActorError;
use batos_object::roots;
use batos_object::value::{
    as_ref, find_slot as slot, make_ref, ref_array, ref_oids, string_map, Oid, Value, PARENT_SLOT,
};

/// Directory shards: a source's entry lives in shard `hash(source) % SHARDS`,
/// so an ingest rewrites a small map, not one holding every source.
const SHARDS: usize = 64;

/// Sources summarized together (one image transaction, one index commit).
const SUMMARY_BATCH_SOURCES: usize = 64;

/// Settings of the catalog.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// Where the index lives.
    pub index_dir: PathBuf,
    /// Token budget of a chunk.
    pub chunk_tokens: usize,
    /// Children per summary.
    pub summary_fanout: usize,
    /// Token budget of a summary.
    pub summary_tokens: usize,
    /// Most documents written in one batch (one image transaction and one index commit).
    pub max_batch_documents: usize,
    /// Ingest requests waiting beyond this are refused (`overloaded`).
    pub max_queue: usize,
    /// Summarize new sources in the background.
    pub background_summaries: bool,
}

/// One document to ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its name; ingesting a source again replaces its chunks.
    pub source: String,
    /// Its text.
    pub text: String,
}

/// What an ingest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestReport {
    /// Documents ingested.
    pub documents: usize,
    /// Chunks created.
    pub chunks: usize,
}

/// A source as the catalog knows it.
#[derive(Debug, Clone, Default)]
struct SourceInfo {
    oid: Oid,
    generation: u64,
    chunks: Vec<Oid>,
    summary: Option<Oid>,
}

/// The memory objects' prototypes and the directory.
#[derive(Debug, Clone, Copy)]
struct Prototypes {
    chunk: Oid,
    summary: Oid,
    source: Oid,
}

/// Where an ingest's outcome goes.
type IngestReply = oneshot::Sender<Result<IngestReport, ActorError>>;
/// A waiting ingest: its documents and where to reply.
type Pending = (Vec<Document>, IngestReply);

enum Job {
    Ingest {
        documents: Vec<Document>,
        reply: IngestReply,
    },
    /// Summarize these sources now (all pending ones when empty), then reply.
    Summarize {
        sources: Vec<String>,
        reply: oneshot::Sender<Result<usize, ActorError>>,
    },
}

#[derive(Clone)]
struct CatalogMetrics {
    documents: IntCounter,
    chunks: IntCounter,
    bytes: IntCounter,
    summaries: IntCounter,
    batch_seconds: Histogram,
    search_seconds: Histogram,
    queue: IntGauge,
    pending_summaries: IntGauge,
    damaged: IntCounter,
}

impl CatalogMetrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = CatalogMetrics {
            documents: IntCounter::new("batos_memory_documents_total", "Documents ingested")?,
            chunks: IntCounter::new("batos_memory_chunks_total", "MemoryChunk objects created")?,
            bytes: IntCounter::new(
                "batos_memory_ingested_bytes_total",
                "Bytes of text ingested",
            )?,
            summaries: IntCounter::new(
                "batos_memory_summaries_total",
                "ContextualSummary objects created",
            )?,
            batch_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "batos_memory_ingest_batch_seconds",
                    "Time to write and index one ingest batch",
                )
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16)?),
            )?,
            search_seconds: Histogram::with_opts(
                HistogramOpts::new("batos_memory_search_seconds", "search_memory latency")
                    .buckets(prometheus::exponential_buckets(0.00005, 2.0, 16)?),
            )?,
            queue: IntGauge::new("batos_memory_ingest_queue", "Ingest requests waiting")?,
            pending_summaries: IntGauge::new(
                "batos_memory_pending_summaries",
                "Sources waiting to be summarized",
            )?,
            damaged: IntCounter::new(
                "batos_memory_damaged_total",
                "Damaged memory structures found and left out (missing objects, looping trees)",
            )?,
        };
        registry.register(Box::new(m.documents.clone()))?;
        registry.register(Box::new(m.chunks.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.summaries.clone()))?;
        registry.register(Box::new(m.batch_seconds.clone()))?;
        registry.register(Box::new(m.search_seconds.clone()))?;
        registry.register(Box::new(m.queue.clone()))?;
        registry.register(Box::new(m.pending_summaries.clone()))?;
        registry.register(Box::new(m.damaged.clone()))?;
        Ok(m)
    }
}

/// Handle to the catalog; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    jobs: Sender<Job>,
    counter: SharedCounter,
    chunk_tokens: usize,
    index: Arc<MemoryIndex>,
    metrics: CatalogMetrics,
    max_queue: usize,
    background_summaries: bool,
    /// True while the worker rebuilds the index after start.
    rebuilding: tokio::sync::watch::Receiver<bool>,
}

impl Catalog {
    /// Opens the catalog: loads its directory from the image and starts the
    /// worker, which first rebuilds the index if it does not match the image
    /// (the catalog answers meanwhile: see [`Catalog::is_rebuilding`]).
    pub async fn open(
        space: ObjectSpace,
        config: CatalogConfig,
        counter: SharedCounter,
        summarizer: Arc<dyn Summarizer>,
        registry: &Registry,
    ) -> Result<Catalog, ActorError> {
        let metrics = CatalogMetrics::new(registry).map_err(ActorError::internal)?;
        let index = {
            let dir = config.index_dir.clone();
            Arc::new(
                tokio::task::spawn_blocking(move || MemoryIndex::open(&dir))
                    .await
                    .map_err(ActorError::internal)?
                    .map_err(ActorError::internal)?,
            )
        };
        let (jobs, rx) = crossbeam_channel::unbounded();
        let (ready_tx, ready_rx) = oneshot::channel();
        let max_queue = config.max_queue;
        let chunk_tokens = config.chunk_tokens;
        let background_summaries = config.background_summaries;
        let worker_counter = counter.clone();
        let worker_index = index.clone();
        let worker_metrics = metrics.clone();
        let (worker_rebuilding, rebuilding) = tokio::sync::watch::channel(false);
        std::thread::Builder::new()
            .name("batos-memory".into())
            .spawn(move || {
                let worker = Worker::load(
                    space,
                    config,
                    worker_counter,
                    summarizer,
                    worker_index,
                    worker_metrics,
                );
                match worker {
                    Ok((mut worker, unlinked)) => {
                        // The kernel serves while the index is rebuilt (a
                        // large one takes long): searches say so until then,
                        // ingests wait their turn in the queue.
                        let stale = worker.index.committed_seq() != worker.seq;
                        worker_rebuilding.send_replace(stale || !unlinked.is_empty());
                        let _ = ready_tx.send(Ok(()));
                        match worker.recover(stale, unlinked) {
                            Ok(()) => {
                                worker_rebuilding.send_replace(false);
                            }
                            Err(err) => tracing::error!(
                                error = %err,
                                "rebuilding the memory index failed; searches stay unavailable"
                            ),
                        }
                        worker.run(rx);
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                    }
                }
            })
            .map_err(ActorError::internal)?;
        ready_rx
            .await
            .map_err(|_| ActorError::internal("the memory worker died while loading"))??;
        Ok(Catalog {
            jobs,
            counter,
            chunk_tokens,
            index,
            metrics,
            max_queue,
            background_summaries,
            rebuilding,
        })
    }

    /// Whether the index is being rebuilt from the image (after a start
    /// that found it behind): searches are `unavailable` until it is done.
    pub fn is_rebuilding(&self) -> bool {
        *self.rebuilding.borrow()
    }

    /// Waits until the index can be searched (for the kernel's own
    /// searches, which would rather wait than fail).
    pub async fn searchable(&self) {
        let mut rebuilding = self.rebuilding.clone();
        let _ = rebuilding.wait_for(|r| !*r).await;
    }

    fn check_searchable(&self) -> Result<(), ActorError> {
        if self.is_rebuilding() {
            return Err(ActorError::Unavailable(
                "the memory index is being rebuilt from the image; retry shortly (ping says when it is done)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether the worker summarizes new sources by itself between ingests
    /// (`[memory] background_summaries`); otherwise the heartbeat asks it to.
    pub fn summarizes_in_background(&self) -> bool {
        self.background_summaries
    }

    /// How `ingest` would chunk `text` (same budget and token counter).
    pub fn chunk(&self, text: &str) -> Vec<chunker::Chunk> {
        chunker::chunk(text, self.chunk_tokens, &*self.counter)
    }

    /// Ingests documents; returns once they are durable and searchable.
    pub async fn ingest(&self, documents: Vec<Document>) -> Result<IngestReport, ActorError> {
        if self.jobs.len() >= self.max_queue {
            return Err(ActorError::Overloaded(format!(
                "{} ingest requests are waiting; retry later",
                self.jobs.len()
            )));
        }
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Ingest { documents, reply })
            .map_err(|_| ActorError::Unavailable("the knowledge catalog is shut down".into()))?;
        self.metrics.queue.set(self.jobs.len() as i64);
        rx.await
            .map_err(|_| ActorError::internal("the memory worker dropped an ingest"))?
    }

    /// Summarizes `sources` (every source not yet summarized when empty)
    /// now; returns the summaries created.
    pub async fn summarize(&self, sources: Vec<String>) -> Result<usize, ActorError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Summarize { sources, reply })
            .map_err(|_| ActorError::Unavailable("the knowledge catalog is shut down".into()))?;
        rx.await
            .map_err(|_| ActorError::internal("the memory worker dropped a summary job"))?
    }

    /// Searches the index (blocking: call it off the actor threads).
    pub fn search(&self, query: &SearchQuery<'_>) -> Result<Vec<Hit>, ActorError> {
        self.check_searchable()?;
        let started = Instant::now();
        let hits = self.index.search(query).map_err(|e| match e {
            super::index::IndexError::BadQuery(m) => ActorError::BadRequest(m),
            other => ActorError::internal(other),
        })?;
        self.metrics
            .search_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(hits)
    }

    /// Summaries whose text is most like `text` (Table 3's
    /// `find_related_summaries`), `exclude` left out.
    pub fn related_summaries(
        &self,
        text: &str,
        exclude: Option<Oid>,
        limit: usize,
    ) -> Result<Vec<Hit>, ActorError> {
        let query: String = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() >= 3)
            .take(64)
            .collect::<Vec<_>>()
            .join(" ");
        if query.is_empty() {
            return Ok(Vec::new());
        }
        let mut hits = self.search(&SearchQuery {
            text: &query,
            limit: limit + 1,
            source: None,
            kind: Some(EntryKind::Summary),
        })?;
        hits.retain(|h| Some(h.oid) != exclude);
        hits.truncate(limit);
        Ok(hits)
    }
}

/// The single writer.
struct Worker {
    space: ObjectSpace,
    config: CatalogConfig,
    counter: SharedCounter,
    summarizer: Arc<dyn Summarizer>,
    index: Arc<MemoryIndex>,
    metrics: CatalogMetrics,
    catalog: Oid,
    genesis: Oid,
    traits: Oid,
    seq: u64,
    protos: Option<Prototypes>,
    shards: Vec<Oid>,
    /// Shard oid → its `sources` map (source → MemorySource oid).
    shard_maps: HashMap<Oid, BTreeMap<String, Oid>>,
    sources: HashMap<String, SourceInfo>,
    /// Sources with chunks but no summary yet, in name order.
    pending: BTreeSet<String>,
}

/// A written summary tree: its source, its top, and each chunk with the
/// level-1 summary above it (the links made once the tree is searchable).
struct Tree {
    source: String,
    top: Oid,
    leaves: Vec<(Oid, Oid)>,
}

fn shard_of(source: &str) -> usize {
    // FNV-1a: stable across runs and versions (it decides where entries live).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in source.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

impl Worker {
    fn load(
        space: ObjectSpace,
        config: CatalogConfig,
        counter: SharedCounter,
        summarizer: Arc<dyn Summarizer>,
        index: Arc<MemoryIndex>,
        metrics: CatalogMetrics,
    ) -> Result<(Worker, Vec<(String, Oid)>), ActorError> {
        let mut worker = Worker {
            catalog: space.root(roots::KNOWLEDGE_CATALOG)?,
            genesis: space.root(roots::GENESIS)?,
            traits: space.root(roots::TRAITS)?,
            space,
            config,
            counter,
            summarizer,
            index,
            metrics,
            seq: 0,
            protos: None,
            shards: Vec::new(),
            shard_maps: HashMap::new(),
            sources: HashMap::new(),
            pending: BTreeSet::new(),
        };
        let unlinked = worker.load_directory()?;
        worker
            .metrics
            .pending_summaries
            .set(worker.pending.len() as i64);
        Ok((worker, unlinked))
    }

    /// Brings the index up to the image (`stale`) and links the summary
    /// trees a crash left unlinked; runs once the kernel is serving.
    fn recover(&mut self, stale: bool, unlinked: Vec<(String, Oid)>) -> Result<(), ActorError> {
        if stale {
            self.rebuild_index()?;
        }
        if !unlinked.is_empty() {
            tracing::info!(
                sources = unlinked.len(),
                "linking summary trees a crash left unlinked"
            );
            let trees = unlinked
                .into_iter()
                .map(|(source, top)| self.stored_tree(source, top))
                .collect::<Result<Vec<_>, _>>()?;
            self.link_trees(&trees)?;
        }
        Ok(())
    }

    fn read(&self, oid: Oid) -> Result<Vec<(String, Value)>, ActorError> {
        self.read_opt(oid)?
            .ok_or_else(|| ActorError::internal(format!("memory object {oid} is missing")))
    }

    fn read_opt(&self, oid: Oid) -> Result<Option<Vec<(String, Value)>>, ActorError> {
        block_on(self.space.read_committed(oid))
    }

    /// Reports a damaged structure found while loading (an object a `$ref`
    /// names is missing, a tree loops): the damaged part is left out and
    /// the catalog serves on.
    fn damaged(&self, what: String) {
        tracing::error!(damage = %what, "memory structure damaged; leaving that part out");
        self.metrics.damaged.inc();
    }

    /// Marks the directory shards and the prototypes (so every chunk,
    /// summary and source) as the kernel's own: no client changes them.
    fn protect_structure(&self) {
        let protos = self
            .protos
            .map(|p| vec![p.chunk, p.summary, p.source])
            .unwrap_or_default();
        self.space.protect(&self.shards, &protos);
    }

    /// Loads the directory; returns the summary trees written but not yet
    /// linked (a crash between the two steps), as (source, top).
    fn load_directory(&mut self) -> Result<Vec<(String, Oid)>, ActorError> {
        let mut unlinked = Vec::new();
        let catalog = self.read(self.catalog)?;
        self.seq = slot(&catalog, "memory_seq")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        self.shards = ref_oids(slot(&catalog, "shards"));
        let proto = |name| slot(&catalog, name).and_then(as_ref);
        if let (Some(chunk), Some(summary), Some(source)) = (
            proto("chunk_prototype"),
            proto("summary_prototype"),
            proto("source_prototype"),
        ) {
            self.protos = Some(Prototypes {
                chunk,
                summary,
                source,
            });
        }
        self.protect_structure();
        for shard in self.shards.clone() {
            let Some(slots) = self.read_opt(shard)? else {
                self.damaged(format!(
                    "directory shard {shard} is missing; its sources are left out"
                ));
                continue;
            };
            let mut entries = BTreeMap::new();
            if let Some(Value::Map(pairs)) = slot(&slots, "sources") {
                for (k, v) in pairs {
                    if let (Some(name), Some(oid)) = (k.as_str(), as_ref(v)) {
                        entries.insert(name.to_string(), oid);
                    }
                }
            }
            let mut missing = Vec::new();
            for (name, oid) in &entries {
                let Some(s) = self.read_opt(*oid)? else {
                    self.damaged(format!(
                        "source {name:?} names object {oid}, which is missing"
                    ));
                    missing.push(name.clone());
                    continue;
                };
                let mut info = SourceInfo {
                    oid: *oid,
                    generation: slot(&s, "generation").and_then(Value::as_u64).unwrap_or(0),
                    chunks: ref_oids(slot(&s, "chunks")),
                    summary: slot(&s, "summary").and_then(as_ref),
                };
                if info.summary.is_none() {
                    if let Some(top) = slot(&s, "summary_pending").and_then(as_ref) {
                        // Written, perhaps indexed, not linked: finish it.
                        info.summary = Some(top);
                        unlinked.push((name.clone(), top));
                    }
                }
                if info.summary.is_none() && !info.chunks.is_empty() {
                    self.pending.insert(name.clone());
                }
                self.sources.insert(name.clone(), info);
            }
            // The shard's next rewrite drops the dangling entries.
            for name in missing {
                entries.remove(&name);
            }
            self.shard_maps.insert(shard, entries);
        }
        Ok(unlinked)
    }

    /// Rebuilds the index from the image: every chunk and summary of every source.
    fn rebuild_index(&self) -> Result<(), ActorError> {
        let started = Instant::now();
        tracing::info!(
            index_seq = self.index.committed_seq(),
            image_seq = self.seq,
            sources = self.sources.len(),
            "memory index does not match the image; rebuilding it"
        );
        self.index.clear().map_err(ActorError::internal)?;
        let mut entries = 0usize;
        for (name, info) in &self.sources {
            for chunk in &info.chunks {
                let Some(text) = self.chunk_text(*chunk)? else {
                    self.damaged(format!(
                        "source {name:?} lists chunk {chunk}, which is missing"
                    ));
                    continue;
                };
                self.index_entry(*chunk, name, EntryKind::Chunk, &text)?;
                entries += 1;
            }
            if let Some(top) = info.summary {
                self.walk_tree(top, |summary, s| {
                    let text = slot(s, "summary_text")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    entries += 1;
                    self.index_entry(summary, name, EntryKind::Summary, text)
                })?;
            }
        }
        self.index.commit(self.seq).map_err(ActorError::internal)?;
        tracing::info!(
            entries,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "memory index rebuilt"
        );
        Ok(())
    }

    /// A chunk's text (`None`: the chunk is missing).
    fn chunk_text(&self, chunk: Oid) -> Result<Option<String>, ActorError> {
        Ok(self.read_opt(chunk)?.map(|s| {
            slot(&s, "source_text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        }))
    }

    /// Visits every summary of the tree under `top`, top-down, with its
    /// slots, once each: a missing summary or a loop is reported and
    /// left out.
    fn walk_tree(
        &self,
        top: Oid,
        mut visit: impl FnMut(Oid, &[(String, Value)]) -> Result<(), ActorError>,
    ) -> Result<(), ActorError> {
        let mut stack = vec![top];
        let mut seen = HashSet::new();
        while let Some(summary) = stack.pop() {
            if !seen.insert(summary) {
                self.damaged(format!(
                    "the summary tree under {top} reaches {summary} twice (a loop)"
                ));
                continue;
            }
            let Some(s) = self.read_opt(summary)? else {
                self.damaged(format!(
                    "the summary tree under {top} names {summary}, which is missing"
                ));
                continue;
            };
            visit(summary, &s)?;
            if slot(&s, "level").and_then(Value::as_u64).unwrap_or(1) > 1 {
                stack.extend(ref_oids(slot(&s, "child_chunks*")));
            }
        }
        Ok(())
    }

    /// The tree under `top` as the image holds it.
    fn stored_tree(&self, source: String, top: Oid) -> Result<Tree, ActorError> {
        let mut leaves = Vec::new();
        self.walk_tree(top, |summary, s| {
            if slot(s, "level").and_then(Value::as_u64).unwrap_or(1) <= 1 {
                let chunks = ref_oids(slot(s, "child_chunks*"));
                leaves.extend(chunks.into_iter().map(|chunk| (chunk, summary)));
            }
            Ok(())
        })?;
        Ok(Tree {
            source,
            top,
            leaves,
        })
    }

    fn index_entry(
        &self,
        oid: Oid,
        source: &str,
        kind: EntryKind,
        text: &str,
    ) -> Result<(), ActorError> {
        self.index
            .add(&Entry {
                oid,
                source,
                kind,
                text,
            })
            .map_err(ActorError::internal)
    }

    fn run(mut self, jobs: Receiver<Job>) {
        loop {
            let job = if self.config.background_summaries && !self.pending.is_empty() {
                match jobs.try_recv() {
                    Ok(job) => Some(job),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return,
                }
            } else {
                match jobs.recv() {
                    Ok(job) => Some(job),
                    Err(_) => return,
                }
            };
            match job {
                None => {
                    // A batch of pending sources, then look at the queue again.
                    let names: Vec<String> = self
                        .pending
                        .iter()
                        .take(SUMMARY_BATCH_SOURCES)
                        .cloned()
                        .collect();
                    if let Err(err) = self.summarize_sources(&names) {
                        tracing::error!(error = %err, "summarizing sources failed; they stay unsummarized until restart");
                        for name in &names {
                            self.pending.remove(name);
                        }
                    }
                }
                Some(Job::Ingest { documents, reply }) => {
                    let mut batch = vec![(documents, reply)];
                    let mut count: usize = batch[0].0.len();
                    let mut deferred = None;
                    while count < self.config.max_batch_documents {
                        match jobs.try_recv() {
                            Ok(Job::Ingest { documents, reply }) => {
                                count += documents.len();
                                batch.push((documents, reply));
                            }
                            Ok(Job::Summarize { sources, reply }) => {
                                deferred = Some((sources, reply));
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.ingest_batch(batch);
                    if let Some((sources, reply)) = deferred {
                        self.summarize_now(sources, reply);
                    }
                    self.metrics.queue.set(jobs.len() as i64);
                }
                Some(Job::Summarize { sources, reply }) => self.summarize_now(sources, reply),
            }
            self.metrics
                .pending_summaries
                .set(self.pending.len() as i64);
        }
    }

    /// Summarizes `sources` (every pending one when empty) and replies
    /// with the number of summaries made.
    fn summarize_now(
        &mut self,
        sources: Vec<String>,
        reply: oneshot::Sender<Result<usize, ActorError>>,
    ) {
        let names: Vec<String> = if sources.is_empty() {
            self.pending.iter().cloned().collect()
        } else {
            sources
        };
        let names: Vec<String> = names
            .into_iter()
            .filter(|n| self.pending.contains(n))
            .collect();
        let mut made = 0;
        let mut result = Ok(());
        for batch in names.chunks(SUMMARY_BATCH_SOURCES) {
            match self.summarize_sources(batch) {
                Ok(n) => made += n,
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        let _ = reply.send(result.map(|()| made));
    }

    /// Creates the prototypes and directory shards (first ingest only).
    fn structure(&self, changes: &mut Changes) -> (Prototypes, Vec<Oid>, bool) {
        if let Some(protos) = self.protos {
            if self.shards.len() == SHARDS {
                return (protos, self.shards.clone(), false);
            }
        }
        let proto = |changes: &mut Changes, name: &str, parent: Oid| {
            let oid = self.space.allocate_oid();
            changes.create(
                oid,
                vec![
                    (PARENT_SLOT.to_string(), ref_array(&[parent])),
                    ("name".to_string(), Value::from(name)),
                ],
            );
            oid
        };
        let protos = Prototypes {
            chunk: proto(changes, "MemoryChunk", self.genesis),
            summary: proto(changes, "ContextualSummary", self.genesis),
            source: proto(changes, "MemorySource", self.genesis),
        };
        let shards: Vec<Oid> = (0..SHARDS)
            .map(|i| {
                let oid = self.space.allocate_oid();
                changes.create(
                    oid,
                    vec![
                        (PARENT_SLOT.to_string(), ref_array(&[self.traits])),
                        ("shard".to_string(), Value::from(i as u64)),
                        ("sources".to_string(), Value::Map(Vec::new())),
                    ],
                );
                oid
            })
            .collect();
        changes.set(self.catalog, "chunk_prototype", make_ref(protos.chunk));
        changes.set(self.catalog, "summary_prototype", make_ref(protos.summary));
        changes.set(self.catalog, "source_prototype", make_ref(protos.source));
        changes.set(self.catalog, "shards", ref_array(&shards));
        (protos, shards, true)
    }

    /// Table 3's methods on the prototypes, as accessor methods (real
    /// WebAssembly, installed like any other method).
    fn install_prototype_methods(&self, protos: Prototypes) {
        let methods = [
            (protos.chunk, "getSummary", "getParent_summary*"),
            (protos.chunk, "getSource", "getSource_object"),
            (protos.summary, "getChildren", "getChild_chunks*"),
            (protos.summary, "getSummary", "getParent_summary*"),
        ];
        for (oid, selector, accessor) in methods {
            let Some(method) = batos_sandbox::synthesis::synthesize(accessor, 0) else {
                continue;
            };
            let code = batos_actors::space::MethodCode::Wat(method.wat);
            if let Err(err) = block_on(self.space.create_method(oid, selector.into(), code)) {
                tracing::warn!(oid, selector, error = %err, "installing a memory prototype method failed");
            }
        }
    }

    fn ingest_batch(&mut self, batch: Vec<Pending>) {
        let started = Instant::now();
        let mut changes = Changes::new();
        let (protos, shards, created_structure) = self.structure(&mut changes);
        let mut staged: BTreeMap<String, (SourceInfo, Vec<String>)> = BTreeMap::new();
        let mut shard_maps: HashMap<Oid, BTreeMap<String, Oid>> = HashMap::new();
        let mut reports = Vec::with_capacity(batch.len());
        let mut bytes = 0u64;
        let seq = self.seq + 1;
        for (documents, _) in &batch {
            let mut report = IngestReport::default();
            for doc in documents {
                let chunks = chunker::chunk(&doc.text, self.config.chunk_tokens, &*self.counter);
                let previous = staged
                    .get(&doc.source)
                    .map(|(info, _)| info.clone())
                    .or_else(|| self.sources.get(&doc.source).cloned());
                let chunk_oids: Vec<Oid> =
                    chunks.iter().map(|_| self.space.allocate_oid()).collect();
                let source_oid = match &previous {
                    Some(prev) => {
                        for old in &prev.chunks {
                            changes.set(*old, "retired", Value::Boolean(true));
                        }
                        prev.oid
                    }
                    None => {
                        let oid = self.space.allocate_oid();
                        changes.create(
                            oid,
                            vec![
                                (PARENT_SLOT.to_string(), ref_array(&[protos.source])),
                                ("name".to_string(), Value::from(doc.source.as_str())),
                            ],
                        );
                        let shard = shards[shard_of(&doc.source)];
                        shard_maps
                            .entry(shard)
                            .or_insert_with(|| {
                                self.shard_maps.get(&shard).cloned().unwrap_or_default()
                            })
                            .insert(doc.source.clone(), oid);
                        oid
                    }
                };
                let tokenizer = self.counter.name().to_string();
                let mut total_tokens = 0u64;
                for (i, (chunk, oid)) in chunks.iter().zip(&chunk_oids).enumerate() {
                    total_tokens += chunk.tokens as u64;
                    changes.create(
                        *oid,
                        vec![
                            (PARENT_SLOT.to_string(), ref_array(&[protos.chunk])),
                            ("source_text".to_string(), Value::from(chunk.text.as_str())),
                            ("token_count".to_string(), Value::from(chunk.tokens as u64)),
                            (
                                "metadata".to_string(),
                                string_map(vec![
                                    ("source", Value::from(doc.source.as_str())),
                                    ("index", Value::from(i as u64)),
                                    ("offset", Value::from(chunk.offset as u64)),
                                    ("tokenizer", Value::from(tokenizer.as_str())),
                                ]),
                            ),
                            ("source_object".to_string(), make_ref(source_oid)),
                        ],
                    );
                }
                let generation = previous.as_ref().map_or(1, |p| p.generation + 1);
                changes.set(source_oid, "chunks", ref_array(&chunk_oids));
                changes.set(source_oid, "generation", Value::from(generation));
                changes.set(source_oid, "bytes", Value::from(doc.text.len() as u64));
                changes.set(source_oid, "tokens", Value::from(total_tokens));
                changes.set(source_oid, "memory_seq", Value::from(seq));
                changes.remove(source_oid, "summary");
                changes.remove(source_oid, "summary_pending");
                bytes += doc.text.len() as u64;
                report.documents += 1;
                report.chunks += chunks.len();
                let texts = chunks.into_iter().map(|c| c.text);
                staged.insert(
                    doc.source.clone(),
                    (
                        SourceInfo {
                            oid: source_oid,
                            generation,
                            chunks: chunk_oids.clone(),
                            summary: None,
                        },
                        texts.collect(),
                    ),
                );
            }
            reports.push(report);
        }
        for (shard, entries) in &shard_maps {
            let value = string_map(entries.iter().map(|(k, v)| (k.as_str(), make_ref(*v))));
            changes.set(*shard, "sources", value);
        }
        changes.set(self.catalog, "memory_seq", Value::from(seq));
        if let Err(err) = block_on(self.space.apply(changes)) {
            for (_, reply) in batch {
                let _ = reply.send(Err(err.clone()));
            }
            return;
        }
        // Durable: adopt the new state, then make it searchable.
        self.seq = seq;
        if created_structure {
            self.protos = Some(protos);
            self.shards = shards;
            self.protect_structure();
            self.install_prototype_methods(protos);
        }
        self.shard_maps.extend(shard_maps);
        let indexed = (|| -> Result<(), ActorError> {
            for (name, (info, texts)) in &staged {
                self.index.delete_source(name);
                for (oid, text) in info.chunks.iter().zip(texts) {
                    self.index_entry(*oid, name, EntryKind::Chunk, text)?;
                }
            }
            self.index.commit(seq).map_err(ActorError::internal)
        })();
        let documents: usize = reports.iter().map(|r| r.documents).sum();
        let chunks: usize = reports.iter().map(|r| r.chunks).sum();
        for (name, (info, _)) in staged {
            if !info.chunks.is_empty() {
                self.pending.insert(name.clone());
            } else {
                self.pending.remove(&name);
            }
            self.sources.insert(name, info);
        }
        // A reply means durable *and* searchable: when neither the commit
        // nor a rebuild made the batch searchable, say so instead of ok.
        let searchable = match indexed {
            Ok(()) => Ok(()),
            Err(err) => {
                tracing::error!(error = %err, "indexing an ingest batch failed; rebuilding the index from the image");
                self.rebuild_index().map_err(|rebuild| {
                    tracing::error!(error = %rebuild, "rebuilding the memory index failed");
                    ActorError::Unavailable(format!(
                        "the documents are stored but not searchable: indexing failed ({err}) and \
                         so did rebuilding the index ({rebuild}); it is rebuilt at the next start"
                    ))
                })
            }
        };
        self.metrics.documents.inc_by(documents as u64);
        self.metrics.chunks.inc_by(chunks as u64);
        self.metrics.bytes.inc_by(bytes);
        self.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        for ((_, reply), report) in batch.into_iter().zip(reports) {
            let _ = reply.send(searchable.clone().map(|()| report));
        }
    }

    /// Builds the summary trees of `names` (those still pending) in one
    /// image transaction and one index commit: per source, chunks grouped
    /// under level-1 summaries, those under level-2 ones, up to one top
    /// summary.
    fn summarize_sources(&mut self, names: &[String]) -> Result<usize, ActorError> {
        let Some(protos) = self.protos else {
            return Ok(0);
        };
        let seq = self.seq + 1;
        let mut changes = Changes::new();
        let mut created: Vec<(Oid, String, String)> = Vec::new();
        let mut trees: Vec<Tree> = Vec::new();
        for name in names {
            let info = match self.sources.get(name) {
                Some(info) if !info.chunks.is_empty() => info.clone(),
                _ => {
                    self.pending.remove(name);
                    continue;
                }
            };
            let tree = self.plan_tree(name, &info, protos, &mut changes, &mut created)?;
            changes.set(info.oid, "summary_pending", make_ref(tree.top));
            trees.push(tree);
        }
        if trees.is_empty() {
            return Ok(0);
        }
        changes.set(self.catalog, "memory_seq", Value::from(seq));
        block_on(self.space.apply(changes))?;
        self.seq = seq;
        for (oid, source, text) in &created {
            self.index_entry(*oid, source, EntryKind::Summary, text)?;
        }
        if let Err(err) = self.index.commit(seq) {
            tracing::error!(error = %err, "indexing summaries failed; rebuilding the index from the image");
            for tree in &trees {
                if let Some(entry) = self.sources.get_mut(&tree.source) {
                    entry.summary = Some(tree.top);
                }
            }
            if let Err(err) = self.rebuild_index() {
                // The trees stay pending in the image; the next start
                // indexes and links them.
                for tree in &trees {
                    self.pending.remove(&tree.source);
                }
                return Err(err);
            }
        }
        self.link_trees(&trees)?;
        self.metrics.summaries.inc_by(created.len() as u64);
        Ok(created.len())
    }

    /// Links searchable summary trees to their sources: the source's
    /// `summary` (its `summary_pending` dropped) and each chunk's
    /// `parent_summary*`, in one transaction.
    fn link_trees(&mut self, trees: &[Tree]) -> Result<(), ActorError> {
        let mut changes = Changes::new();
        for tree in trees {
            let Some(info) = self.sources.get(&tree.source) else {
                continue;
            };
            for (chunk, summary) in &tree.leaves {
                changes.set(*chunk, "parent_summary*", make_ref(*summary));
            }
            changes.set(info.oid, "summary", make_ref(tree.top));
            changes.remove(info.oid, "summary_pending");
        }
        block_on(self.space.apply(changes))?;
        for tree in trees {
            if let Some(entry) = self.sources.get_mut(&tree.source) {
                entry.summary = Some(tree.top);
            }
            self.pending.remove(&tree.source);
        }
        Ok(())
    }

    /// Adds one source's summary tree to `changes` (chunks not yet linked).
    fn plan_tree(
        &self,
        name: &str,
        info: &SourceInfo,
        protos: Prototypes,
        changes: &mut Changes,
        created: &mut Vec<(Oid, String, String)>,
    ) -> Result<Tree, ActorError> {
        let mut nodes: Vec<(Oid, String)> = Vec::with_capacity(info.chunks.len());
        for chunk in &info.chunks {
            let text = self.chunk_text(*chunk)?.ok_or_else(|| {
                ActorError::internal(format!(
                    "source {name:?} lists chunk {chunk}, which is missing"
                ))
            })?;
            nodes.push((*chunk, text));
        }
        let mut leaves = Vec::with_capacity(info.chunks.len());
        let summarizer = self.summarizer.name();
        let mut level = 1u64;
        loop {
            let mut next = Vec::new();
            for group in groups(nodes.len(), self.config.summary_fanout) {
                let members = &nodes[group];
                let texts: Vec<&str> = members.iter().map(|(_, t)| t.as_str()).collect();
                let text = self
                    .summarizer
                    .summarize(&texts, self.config.summary_tokens)
                    .map_err(|e| ActorError::internal(format!("summarizer: {e}")))?;
                let oid = self.space.allocate_oid();
                let children: Vec<Oid> = members.iter().map(|(o, _)| *o).collect();
                changes.create(
                    oid,
                    vec![
                        (PARENT_SLOT.to_string(), ref_array(&[protos.summary])),
                        ("summary_text".to_string(), Value::from(text.as_str())),
                        ("child_chunks*".to_string(), ref_array(&children)),
                        ("level".to_string(), Value::from(level)),
                        ("source".to_string(), Value::from(name)),
                        (
                            "token_count".to_string(),
                            Value::from(self.counter.count(&text) as u64),
                        ),
                        ("summarizer".to_string(), Value::from(summarizer.as_str())),
                    ],
                );
                if level > 1 {
                    for child in children {
                        changes.set(child, "parent_summary*", make_ref(oid));
                    }
                } else {
                    // Chunks are linked once the tree is searchable.
                    leaves.extend(children.into_iter().map(|chunk| (chunk, oid)));
                }
                created.push((oid, name.to_string(), text.clone()));
                next.push((oid, text));
            }
            if next.len() == 1 {
                return Ok(Tree {
                    source: name.to_string(),
                    top: next[0].0,
                    leaves,
                });
            }
            nodes = next;
            level += 1;
        }
    }
}
