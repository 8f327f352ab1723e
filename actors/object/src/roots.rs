//! The root objects every image starts with: their names and the name → oid table.

use crate::value::Oid;

/// The delegation root: carries the primitives every object can be sent.
pub const TRAITS: &str = "traits_obj";
/// The cognitive core's object.
pub const PLLM: &str = "pLLM_obj";
/// The first object of the image, the user's entry point.
pub const GENESIS: &str = "genesis_obj";
/// The memory manager (experts' tiers).
pub const MEMORY_MANAGER: &str = "memory_manager_obj";
/// The knowledge catalog (fractal memory).
pub const KNOWLEDGE_CATALOG: &str = "knowledge_catalog_obj";
/// The orchestrator (cognitive cycles).
pub const ORCHESTRATOR: &str = "orchestrator_obj";

/// Root names in creation order (so a fresh image gives them oids 1..=6).
pub const ROOT_NAMES: [&str; 6] = [
    TRAITS,
    PLLM,
    GENESIS,
    MEMORY_MANAGER,
    KNOWLEDGE_CATALOG,
    ORCHESTRATOR,
];

/// The roots the kernel keeps its own bookkeeping in: no client writes
/// their slots (see `access`).
pub const KERNEL_ROOTS: [&str; 4] = [PLLM, MEMORY_MANAGER, KNOWLEDGE_CATALOG, ORCHESTRATOR];

/// The name → oid table of the roots of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roots {
    entries: Vec<(String, Oid)>,
}

impl Roots {
    /// Roots as loaded from the image.
    pub fn new(entries: Vec<(String, Oid)>) -> Self {
        Roots { entries }
    }

    /// The oid of a root by name.
    pub fn oid(&self, name: &str) -> Option<Oid> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, oid)| *oid)
    }

    /// The name of the root `oid` is, if it is one.
    pub fn name_of(&self, oid: Oid) -> Option<&str> {
        self.entries
            .iter()
            .find(|(_, o)| *o == oid)
            .map(|(n, _)| n.as_str())
    }

    /// The oid of `traits_obj`, the default parent.
    pub fn traits(&self) -> Oid {
        self.oid(TRAITS).expect("roots always include traits_obj")
    }

    /// All roots, in creation order.
    pub fn entries(&self) -> &[(String, Oid)] {
        &self.entries
    }

    /// Checks that every root the kernel needs is present.
    pub fn is_complete(&self) -> bool {
        ROOT_NAMES.iter().all(|n| self.oid(n).is_some())
    }

    /// A root table as a fresh image would have it (for unit tests).
    pub fn fixed_for_tests() -> Self {
        Roots::new(
            ROOT_NAMES
                .iter()
                .zip(1..)
                .map(|(n, oid)| (n.to_string(), oid))
                .collect(),
        )
    }
}
