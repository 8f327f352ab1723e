//! Fractal memory through the bridge: ingest, BM25 search with snippets and
//! filters, re-ingest replacing a source, all-or-nothing sources across
//! kill -9, and summary trees whose leaves are exactly the chunks.

use std::collections::BTreeSet;

use crate::harness::*;

fn doc(source: &str, text: &str) -> Value {
    map(&[("source", s(source)), ("text", s(text))])
}

fn ingest(c: &Client, docs: Vec<Value>) -> Value {
    c.ok("ingest", &[("documents", Value::Array(docs))])
}

/// Chunk hits only (summaries, built in the background, would race the
/// counts), unless `fields` names a kind.
fn search(c: &Client, fields: &[(&str, Value)]) -> Vec<Value> {
    let mut fields = fields.to_vec();
    if !fields.iter().any(|(k, _)| *k == "kind") {
        fields.push(("kind", s("chunk")));
    }
    must(&c.ok("search_memory", &fields), "hits")
        .as_array()
        .expect("hits is an array")
        .clone()
}

fn hit_sources(hits: &[Value]) -> Vec<String> {
    hits.iter()
        .map(|h| must(h, "source").as_str().expect("source").to_string())
        .collect()
}

fn refs(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array of refs, got {v}"))
        .iter()
        .map(ref_oid)
        .collect()
}

const ZOO: &str = "The zebra grazes at dawn. Its stripes confuse the flies.\n\n\
                   A striped horse is not a zebra, the keeper says.";
const KITCHEN: &str = "Knead the dough for ten minutes. Let it rise twice.\n\n\
                       Bake the loaf until the crust sings.";
const HARBOR: &str = "Ships leave the harbor at high tide. The zebra crossing by the quay is busy.";

#[test]
fn ingest_then_search_finds_the_right_chunks_and_sources() {
    let k = Kernel::start();
    let c = k.dealer();
    let report = ingest(
        &c,
        vec![
            doc("zoo.txt", ZOO),
            doc("kitchen.txt", KITCHEN),
            doc("harbor.txt", HARBOR),
        ],
    );
    assert_eq!(uint(must(&report, "documents")), 3);
    assert!(uint(must(&report, "chunks")) >= 3, "{report}");

    // Searchable as soon as acknowledged; best first; snippets mark matches.
    let hits = search(&c, &[("query", s("zebra stripes"))]);
    assert!(hits.len() >= 2, "{hits:?}");
    assert_eq!(hit_sources(&hits)[0], "zoo.txt", "{hits:?}");
    assert!(!hit_sources(&hits).contains(&"kitchen.txt".to_string()));
    let scores: Vec<f64> = hits
        .iter()
        .map(|h| must(h, "score").as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
    let snippet = must(&hits[0], "snippet").as_str().unwrap();
    assert!(
        snippet.contains("**zebra**") || snippet.contains("**stripes**"),
        "{snippet}"
    );

    // The hit is a MemoryChunk object holding the text and its metadata.
    let chunk = uint(must(&hits[0], "chunk"));
    let slots = c.slots(chunk);
    assert!(must(&slots, "source_text")
        .as_str()
        .unwrap()
        .contains("zebra"));
    assert_eq!(
        must(must(&slots, "metadata"), "source").as_str(),
        Some("zoo.txt")
    );
    assert!(uint(must(&slots, "token_count")) > 0);
    let source_obj = ref_oid(must(&slots, "source_object"));
    assert_eq!(c.get(source_obj, "name").as_str(), Some("zoo.txt"));

    // Filters, phrases, required words, limits.
    let only = search(&c, &[("query", s("zebra")), ("source", s("harbor.txt"))]);
    assert_eq!(hit_sources(&only), vec!["harbor.txt"]);
    let phrase = search(&c, &[("query", s("\"striped horse\""))]);
    assert_eq!(hit_sources(&phrase), vec!["zoo.txt"], "{phrase:?}");
    let required = search(&c, &[("query", s("zebra +quay"))]);
    assert_eq!(hit_sources(&required), vec!["harbor.txt"], "{required:?}");
    let limited = search(&c, &[("query", s("the")), ("limit", Value::from(1))]);
    assert_eq!(limited.len(), 1);
    assert!(search(&c, &[("query", s("nonexistentword"))]).is_empty());

    // Bad input is refused and changes nothing.
    c.expect_err("search_memory", &[("query", s("   "))], "bad_request");
    c.expect_err(
        "search_memory",
        &[("query", s(&"zebra ".repeat(1000)))],
        "bad_request",
    );
    c.expect_err(
        "search_memory",
        &[("query", s("x")), ("kind", s("bogus"))],
        "bad_request",
    );
    c.expect_err(
        "ingest",
        &[("documents", Value::Array(vec![]))],
        "bad_request",
    );
    c.expect_err(
        "ingest",
        &[("documents", Value::Array(vec![doc(" ", "text")]))],
        "bad_request",
    );
    c.expect_err("ingest", &[("documents", s("nope"))], "bad_request");
    assert_eq!(search(&c, &[("query", s("zebra"))]).len(), hits.len());
}

#[test]
fn reingesting_a_source_replaces_its_chunks_and_survives_restart() {
    let k = Kernel::start();
    let c = k.dealer();
    ingest(
        &c,
        vec![
            doc("fruit", "Apples and bananas ripen in the sun."),
            doc("other", "Apples grow elsewhere too."),
        ],
    );
    assert_eq!(search(&c, &[("query", s("bananas"))]).len(), 1);
    ingest(&c, vec![doc("fruit", "Cherries are small and red.")]);
    assert!(
        search(&c, &[("query", s("bananas"))]).is_empty(),
        "old chunks are gone"
    );
    assert_eq!(
        hit_sources(&search(&c, &[("query", s("cherries"))])),
        vec!["fruit"]
    );
    assert_eq!(
        hit_sources(&search(&c, &[("query", s("apples"))])),
        vec!["other"]
    );
    let chunk = uint(must(&search(&c, &[("query", s("cherries"))])[0], "chunk"));
    let source = ref_oid(&c.get(chunk, "source_object"));
    assert_eq!(uint(&c.get(source, "generation")), 2);

    let k = k.restart();
    // A stop can land between a background summary's image commit and its
    // index commit: the index is then rebuilt while the kernel serves.
    k.wait_recovered();
    let c = k.dealer();
    assert!(search(&c, &[("query", s("bananas"))]).is_empty());
    assert_eq!(
        hit_sources(&search(&c, &[("query", s("cherries"))])),
        vec!["fruit"]
    );

    // The index is derived: lost or garbled, it is rebuilt from the image.
    let root = k.stop();
    let index = root.path().join("data/memory-index");
    std::fs::remove_dir_all(&index).expect("remove the index");
    let k = Kernel::start_on(root, Options::default());
    k.wait_recovered();
    let c = k.dealer();
    assert_eq!(
        hit_sources(&search(&c, &[("query", s("cherries"))])),
        vec!["fruit"]
    );
    let root = k.stop();
    std::fs::write(index.join("meta.json"), b"{ not json").expect("garble the index");
    let k = Kernel::start_on(root, Options::default());
    k.wait_recovered();
    let c = k.dealer();
    assert_eq!(
        hit_sources(&search(&c, &[("query", s("apples"))])),
        vec!["other"]
    );
    assert!(search(&c, &[("query", s("bananas"))]).is_empty());
}

/// `paragraphs` paragraphs, each its own chunk at `chunk_tokens = 12`, all
/// sharing the word `common` and the source's own tag.
fn multi_chunk_doc(tag: &str, paragraphs: usize) -> String {
    (0..paragraphs)
        .map(|i| format!("{tag} common paragraph {i}."))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn a_crash_during_ingest_leaves_every_source_whole_or_absent() {
    const PARAS: usize = 6;
    let opts = Options::config("[memory]\nchunk_tokens = 12\nbackground_summaries = false\n");
    let k = Kernel::start_with(opts.clone());
    let c = k.dealer();
    // Learn how many chunks one such document makes.
    let probe = ingest(&c, vec![doc("probe", &multi_chunk_doc("probe", PARAS))]);
    let per_doc = uint(must(&probe, "chunks"));
    assert!(
        per_doc >= 2,
        "each document must make several chunks: {probe}"
    );

    // Pipeline many ingests, kill -9 after some are acknowledged.
    let n = 60;
    let mut ids = Vec::new();
    for i in 0..n {
        let id = c.fresh_id();
        let docs = Value::Array(vec![
            doc(
                &format!("src{i}a"),
                &multi_chunk_doc(&format!("tag{i}a"), PARAS),
            ),
            doc(
                &format!("src{i}b"),
                &multi_chunk_doc(&format!("tag{i}b"), PARAS),
            ),
        ]);
        c.send_request("ingest", &id, &[("documents", docs)]);
        ids.push(id);
    }
    let mut acked_ids = BTreeSet::new();
    while acked_ids.len() < 5 {
        let reply = c.recv_reply();
        assert!(reply.is_ok(), "ingest failed: {:?}", reply.code());
        let id = reply.id.as_ref().and_then(Value::as_u64).expect("reply id");
        acked_ids.insert(id);
    }
    let acked: BTreeSet<usize> = ids
        .iter()
        .enumerate()
        .filter(|(_, id)| id.as_u64().is_some_and(|id| acked_ids.contains(&id)))
        .map(|(i, _)| i)
        .collect();
    let root = k.kill();
    let k = Kernel::start_on(root, opts);
    k.wait_recovered();
    let c = k.dealer();
    let mut present = 0;
    for i in 0..n {
        for side in ["a", "b"] {
            let hits = search(
                &c,
                &[
                    ("query", s(&format!("tag{i}{side}"))),
                    ("limit", Value::from(1000)),
                ],
            );
            let count = hits.len() as u64;
            assert!(
                count == 0 || count == per_doc,
                "source src{i}{side} is half there: {count} of {per_doc} chunks"
            );
            if acked.contains(&i) && count != per_doc {
                panic!("acknowledged source src{i}{side} lost after kill -9");
            }
            present += usize::from(count > 0);
        }
    }
    assert!(present >= 2 * acked.len(), "{present} sources present");
    // The directory agrees with the index: re-ingest replaces, no duplicates.
    ingest(&c, vec![doc("src0a", "replaced")]);
    assert!(search(&c, &[("query", s("tag0a"))]).is_empty());
}

#[test]
fn summaries_form_a_tree_whose_leaves_are_all_the_chunks() {
    let k = Kernel::start_with(Options::config(
        "[memory]\nchunk_tokens = 12\nsummary_fanout = 3\nsummary_tokens = 30\n",
    ));
    let c = k.dealer();
    let report = ingest(&c, vec![doc("big", &multi_chunk_doc("big", 20))]);
    let chunks = uint(must(&report, "chunks"));
    assert!(chunks > 9, "enough chunks for three levels: {report}");
    let hit = &search(&c, &[("query", s("big")), ("limit", Value::from(1))])[0];
    let source = ref_oid(&c.get(uint(must(hit, "chunk")), "source_object"));
    let top = ref_oid(&k.wait_for_slot(&c, source, "summary"));
    let all_chunks: BTreeSet<u64> = refs(&c.get(source, "chunks")).into_iter().collect();
    assert_eq!(all_chunks.len() as u64, chunks);

    // Walk down from the top summary.
    let mut leaves = BTreeSet::new();
    let mut stack = vec![(top, None::<u64>, u64::MAX)];
    while let Some((oid, parent, parent_level)) = stack.pop() {
        let slots = c.slots(oid);
        match (parent, field(&slots, "parent_summary*")) {
            (Some(p), Some(v)) => assert_eq!(ref_oid(v), p, "child points at its summary"),
            (None, None) => {}
            (p, v) => panic!("parent_summary* of {oid}: expected {p:?}, got {v:?}"),
        }
        match field(&slots, "child_chunks*") {
            Some(children) => {
                let level = uint(must(&slots, "level"));
                assert!(level < parent_level, "levels go down the tree");
                assert!(!must(&slots, "summary_text").as_str().unwrap().is_empty());
                let kids = refs(children);
                assert!(!kids.is_empty() && kids.len() <= 3, "fanout: {kids:?}");
                // Table 3's method, installed on the prototype.
                assert_same(
                    &c.send_value(oid, "getChildren", vec![]),
                    children,
                    "getChildren",
                );
                stack.extend(kids.into_iter().map(|kid| (kid, Some(oid), level)));
            }
            None => {
                assert!(leaves.insert(oid), "chunk {oid} reached twice");
            }
        }
    }
    assert_eq!(
        leaves, all_chunks,
        "the leaves are exactly the source's chunks"
    );

    // Summaries are searchable by kind.
    let summaries = search(
        &c,
        &[
            ("query", s("common big")),
            ("kind", s("summary")),
            ("limit", Value::from(100)),
        ],
    );
    assert!(!summaries.is_empty());
    assert!(summaries
        .iter()
        .all(|h| must(h, "kind").as_str() == Some("summary")));
    let chunk = *all_chunks.iter().next().unwrap();
    let up = c.send_value(chunk, "getSummary", vec![]);
    assert!(field(&c.slots(ref_oid(&up)), "child_chunks*").is_some());

    // find_related_summaries: summaries like a summary's text, itself excluded.
    let first = uint(must(&summaries[0], "chunk"));
    let related = search(
        &c,
        &[("related", Value::from(first)), ("kind", s("summary"))],
    );
    assert!(!related.is_empty());
    assert!(related
        .iter()
        .all(|h| uint(must(h, "chunk")) != first && must(h, "kind").as_str() == Some("summary")));
    c.expect_err(
        "search_memory",
        &[("related", Value::from(c.root("genesis_obj")))],
        "bad_request",
    );
}

#[test]
fn the_heartbeat_summarizes_when_the_worker_does_not() {
    let k = Kernel::start_with(Options::config(
        "[memory]\nbackground_summaries = false\n[heartbeat]\ninterval_ms = 100\ncheckpoint_every_ms = 0\n",
    ));
    let c = k.dealer();
    ingest(&c, vec![doc("beat", "Hearts beat. Summaries follow.")]);
    let hit = &search(&c, &[("query", s("hearts"))])[0];
    let source = ref_oid(&c.get(uint(must(hit, "chunk")), "source_object"));
    let top = ref_oid(&k.wait_for_slot(&c, source, "summary"));
    assert_eq!(c.get(top, "summarizer").as_str(), Some("extractive"));
}

/// The state a crash leaves between writing a summary tree and linking it:
/// the tree and the source's `summary_pending` are durable, the source's
/// `summary` and the chunks' `parent_summary*` are not. With the index
/// lost too, the next start must index that tree and link it, not build
/// a second one.
#[test]
fn a_summary_tree_a_crash_left_unlinked_is_indexed_and_linked_on_start() {
    let config = "[memory]\nchunk_tokens = 12\nsummary_fanout = 3\nsummary_tokens = 30\n";
    let k = Kernel::start_with(Options::config(config));
    let c = k.dealer();
    ingest(&c, vec![doc("tree", &multi_chunk_doc("tree", 7))]);
    let hit = &search(&c, &[("query", s("tree")), ("limit", Value::from(1))])[0];
    let source = ref_oid(&c.get(uint(must(hit, "chunk")), "source_object"));
    let top = k.wait_for_slot(&c, source, "summary");
    let chunks = refs(&c.get(source, "chunks"));
    let parents: Vec<Value> = chunks
        .iter()
        .map(|&o| c.get(o, "parent_summary*"))
        .collect();
    let summaries_of = |c: &Client| -> BTreeSet<u64> {
        search(
            c,
            &[
                ("query", s("common tree")),
                ("kind", s("summary")),
                ("limit", Value::from(100)),
            ],
        )
        .iter()
        .map(|h| uint(must(h, "chunk")))
        .collect()
    };
    let before = summaries_of(&c);
    assert!(before.len() > 1, "a tree of several summaries: {before:?}");

    // The memory objects are the kernel's: the state is planted in the
    // stopped kernel's image.
    let root = k.stop();
    plant(root.path(), |tx| {
        tx.set(source, "summary_pending".into(), data(top.clone()));
        tx.remove(source, "summary".into());
        for &chunk in &chunks {
            tx.remove(chunk, "parent_summary*".into());
        }
    });
    std::fs::remove_dir_all(root.path().join("data/memory-index")).expect("remove the index");

    let k = Kernel::start_on(root, Options::config(config));
    k.wait_recovered();
    let c = k.dealer();
    assert_same(
        &c.get(source, "summary"),
        &top,
        "the pending tree is linked",
    );
    assert!(field(&c.slots(source), "summary_pending").is_none());
    for (&chunk, parent) in chunks.iter().zip(&parents) {
        assert_same(&c.get(chunk, "parent_summary*"), parent, "chunk relinked");
    }
    assert_eq!(summaries_of(&c), before, "the same tree, searchable again");
    assert_eq!(
        k.scrape().sum("batos_memory_summaries_total", &[]),
        Some(0.0),
        "nothing was summarized again"
    );
}

/// Damage no client can write (the memory objects are the kernel's), planted
/// in a stopped kernel's image with its index gone: a summary tree that
/// loops, a directory entry naming a missing source, a source listing a
/// missing chunk. The kernel starts, reports each, rebuilds the index
/// from what is whole, and serves; the next start is clean too.
#[test]
fn start_up_survives_damaged_memory_structures_and_reports_them() {
    let config = "[memory]\nchunk_tokens = 12\nsummary_fanout = 3\nsummary_tokens = 30\n";
    let k = Kernel::start_with(Options::config(config));
    let c = k.dealer();
    ingest(
        &c,
        vec![
            doc("tree", &multi_chunk_doc("tree", 7)),
            doc("zoo.txt", ZOO),
        ],
    );
    let source_of = |query: &str| {
        let hit = &search(&c, &[("query", s(query)), ("limit", Value::from(1))])[0];
        ref_oid(&c.get(uint(must(hit, "chunk")), "source_object"))
    };
    let (tree, zoo) = (source_of("tree"), source_of("zebra"));
    let top = ref_oid(&k.wait_for_slot(&c, tree, "summary"));
    assert!(uint(&c.get(top, "level")) >= 2, "a tree of several levels");
    let mut looping = refs(&c.get(top, "child_chunks*"));
    looping.push(top);
    let mut zoo_chunks = refs(&c.get(zoo, "chunks"));
    zoo_chunks.push(999_998);
    let catalog = c.root("knowledge_catalog_obj");
    let shards = refs(&c.get(catalog, "shards"));
    let shard = *shards
        .iter()
        .find(|&&sh| field(&c.get(sh, "sources"), "tree").is_some())
        .expect("the shard listing `tree`");
    let mut entries = c.get(shard, "sources");
    if let Value::Map(pairs) = &mut entries {
        pairs.push((s("ghost"), oref(999_999)));
    }
    let root = k.stop();
    plant(root.path(), |tx| {
        let as_refs = |oids: &[u64]| Value::Array(oids.iter().map(|&o| oref(o)).collect());
        tx.set(top, "child_chunks*".into(), data(as_refs(&looping)));
        tx.set(zoo, "chunks".into(), data(as_refs(&zoo_chunks)));
        tx.set(shard, "sources".into(), data(entries));
    });
    std::fs::remove_dir_all(root.path().join("data/memory-index")).expect("remove the index");

    let k = Kernel::start_on(root, Options::config(config));
    k.wait_recovered();
    let c = k.dealer();
    assert!(
        !search(&c, &[("query", s("zebra"))]).is_empty(),
        "zoo.txt is searchable"
    );
    assert!(
        !search(&c, &[("query", s("tree"))]).is_empty(),
        "tree is searchable"
    );
    let damaged = k
        .scrape()
        .sum("batos_memory_damaged_total", &[])
        .unwrap_or(0.0);
    assert!(damaged >= 3.0, "each damage reported: {damaged}");
    ingest(&c, vec![doc("after.txt", "The keeper feeds the otters.")]);
    let root = k.stop();
    let k = Kernel::start_on(root, Options::config(config));
    k.wait_recovered();
    let c = k.dealer();
    assert!(!search(&c, &[("query", s("otters"))]).is_empty());
}

/// The index is rebuilt while the kernel serves: the ready line comes
/// first (a steward's start timeout does not depend on the image's size),
/// `ping` says what is being rebuilt, searches are `unavailable` meanwhile
/// and answer once it is done.
#[test]
fn a_lost_index_is_rebuilt_while_the_kernel_serves() {
    let k = Kernel::start_with(Options::config("[memory]\nbackground_summaries = false\n"));
    let c = k.dealer();
    for batch in 0..10 {
        let docs = (0..500)
            .map(|i| {
                doc(
                    &format!("doc-{batch}-{i}"),
                    &format!("entry {batch} {i} about lanterns"),
                )
            })
            .collect();
        ingest(&c, docs);
    }
    let root = k.stop();
    std::fs::remove_dir_all(root.path().join("data/memory-index")).expect("remove the index");
    let k = Kernel::start_on(
        root,
        Options::config("[memory]\nbackground_summaries = false\n"),
    );
    let c = k.dealer();
    let pong = c.ping();
    assert_same(
        must(&pong, "rebuilding"),
        &Value::Array(vec![s("memory_index")]),
        "the first ping comes while 5000 documents are indexed again",
    );
    c.expect_err("search_memory", &[("query", s("lanterns"))], "unavailable");
    k.wait_recovered();
    assert_eq!(
        search(&c, &[("query", s("lanterns")), ("limit", Value::from(5))]).len(),
        5
    );
}
