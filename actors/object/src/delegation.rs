//! The delegation order, written once: a selector is looked up in the
//! receiver's own slots, then depth-first along `parent*` in order, each
//! object at most once (so cycles terminate); a parent that does not exist
//! is skipped (the driver moves on to the next object). The runtime drives the walk from two places, a message's actor
//! (activating objects as it goes) and a method's transaction (seeing the
//! transaction's own writes first); each supplies the objects, the walk
//! decides the order.

use std::collections::HashSet;

use crate::value::Oid;

/// A lookup in progress: which object to look in next.
#[derive(Debug)]
pub struct Walk {
    receiver: Oid,
    started: bool,
    stack: Vec<Oid>,
    visited: HashSet<Oid>,
}

/// What the walker found in one object.
pub enum Visit<'a, S> {
    /// The object holds the selector.
    Found(S),
    /// It does not; these are its parents, in order.
    Parents(&'a [Oid]),
}

impl Walk {
    /// A lookup starting at `receiver`.
    pub fn new(receiver: Oid) -> Self {
        // Nothing is allocated until the receiver turns out not to hold
        // the selector: most lookups end there.
        Walk {
            receiver,
            started: false,
            stack: Vec::new(),
            visited: HashSet::new(),
        }
    }

    /// The next object to look in, or `None` when the lookup is exhausted.
    pub fn next_object(&mut self) -> Option<Oid> {
        if !self.started {
            self.started = true;
            return Some(self.receiver);
        }
        while let Some(oid) = self.stack.pop() {
            if oid != self.receiver && self.visited.insert(oid) {
                return Some(oid);
            }
        }
        None
    }

    /// Whether `oid` is the receiver (whose existence the caller checked
    /// before the lookup began; every other object may be a dangling
    /// parent).
    pub fn is_receiver(&self, oid: Oid) -> bool {
        oid == self.receiver
    }

    /// Records what `oid` (the last [`Walk::next_object`]) holds; `Some`
    /// with the holder when the lookup is over.
    pub fn visit<S>(&mut self, oid: Oid, visit: Visit<'_, S>) -> Option<(Oid, S)> {
        match visit {
            Visit::Found(slot) => Some((oid, slot)),
            // Reversed, so the first parent is searched first.
            Visit::Parents(parents) => {
                self.stack.extend(parents.iter().rev());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Runs a lookup over a map of oid → (own selectors, parents).
    fn lookup(objects: &HashMap<Oid, (Vec<&str>, Vec<Oid>)>, from: Oid, sel: &str) -> Vec<Oid> {
        let mut walk = Walk::new(from);
        let mut order = Vec::new();
        while let Some(oid) = walk.next_object() {
            order.push(oid);
            let visit = match objects.get(&oid) {
                None => continue,
                Some((own, _)) if own.contains(&sel) => Visit::Found(()),
                Some((_, parents)) => Visit::Parents(parents),
            };
            if walk.visit(oid, visit).is_some() {
                break;
            }
        }
        order
    }

    #[test]
    fn depth_first_in_parent_order_each_object_once() {
        // 1 → [2, 3]; 2 → [4, 1] (a cycle); 3 → [4]; 4 → [99] (missing).
        let objects: HashMap<Oid, (Vec<&str>, Vec<Oid>)> = [
            (1, (vec![], vec![2, 3])),
            (2, (vec![], vec![4, 1])),
            (3, (vec!["x"], vec![4])),
            (4, (vec![], vec![99])),
        ]
        .into_iter()
        .collect();
        assert_eq!(lookup(&objects, 1, "x"), vec![1, 2, 4, 99, 3]);
        assert_eq!(lookup(&objects, 1, "nothing"), vec![1, 2, 4, 99, 3]);
        assert_eq!(lookup(&objects, 3, "x"), vec![3]);
    }
}
