//! The kernel's own design documents, shipped inside the binary: what the
//! display_yourself first conversation ingests so the system can reason
//! about itself.

use batos_memory::Document;

/// (source name, text) of every shipped document.
const DOCUMENTS: [(&str, &str); 6] = [
    ("ARCHITECTURE.md", include_str!("../../ARCHITECTURE.md")),
    ("docs/protocol.md", include_str!("../../docs/protocol.md")),
    (
        "docs/protocol-notes.md",
        include_str!("../../docs/protocol-notes.md"),
    ),
    (
        "docs/method-abi.md",
        include_str!("../../docs/method-abi.md"),
    ),
    ("docs/steward.md", include_str!("../../docs/steward.md")),
    ("README.md", include_str!("../../README.md")),
];

/// The documents, ready to ingest.
pub fn documents() -> Vec<Document> {
    DOCUMENTS
        .iter()
        .map(|(source, text)| Document {
            source: (*source).to_string(),
            text: (*text).to_string(),
        })
        .collect()
}
