//! The genesis transaction: the roots of a fresh image, with the
//! primitives each carries.

use crate::roots::{Roots, GENESIS, PLLM, ROOT_NAMES, TRAITS};
use crate::slot::{Primitive, Slot};
use crate::txn::Transaction;
use crate::value::{make_ref, Oid, Value, PARENT_SLOT};

/// The genesis transaction: creates the roots with the given oids (one per
/// name in [`ROOT_NAMES`] order) and records the root table.
pub fn genesis(oids: [Oid; 6]) -> (Roots, Transaction) {
    let roots = Roots::new(
        ROOT_NAMES
            .iter()
            .zip(oids)
            .map(|(n, o)| (n.to_string(), o))
            .collect(),
    );
    let traits = roots.traits();
    let oid = |name| roots.oid(name).expect("root");
    let mut tx = Transaction::new();
    for name in ROOT_NAMES {
        let parents = match name {
            TRAITS => Value::Array(vec![]),
            GENESIS => Value::Array(vec![make_ref(oid(PLLM)), make_ref(traits)]),
            _ => Value::Array(vec![make_ref(traits)]),
        };
        let mut slots = vec![(PARENT_SLOT.to_string(), Slot::Data(parents))];
        for p in Primitive::ALL.into_iter().filter(|p| p.root() == name) {
            slots.push((p.selector().to_string(), Slot::Primitive(p)));
        }
        tx.create(oid(name), slots);
    }
    tx.set_roots(roots.entries().to_vec());
    (roots, tx)
}
