//! Method lookup: the receiver's own slots, then depth-first along
//! `parent*` in order, each object at most once (cycles terminate).

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::ActorError;
use crate::slot::Slot;
use crate::space::SpaceInner;
use crate::table::InUse;
use crate::value::Oid;

/// Finds the slot `selector` answers to, starting at `receiver`.
pub(crate) async fn lookup(
    space: &Arc<SpaceInner>,
    receiver: &InUse,
    selector: &str,
) -> Result<Option<Slot>, ActorError> {
    let (found, parents) = receiver.read(|s| (s.slots.get(selector).cloned(), s.parents()))?;
    if found.is_some() {
        return Ok(found);
    }
    let mut visited: HashSet<Oid> = HashSet::from([receiver.oid]);
    // Parents pushed in reverse so the first parent is searched first.
    let mut stack: Vec<Oid> = parents.into_iter().rev().collect();
    while let Some(oid) = stack.pop() {
        if !visited.insert(oid) {
            continue;
        }
        let holder = match space.activate(oid).await {
            Ok(holder) => holder,
            // A dangling parent (never created) is skipped, as an empty one.
            Err(ActorError::NoSuchObject(_)) => continue,
            Err(err) => return Err(err),
        };
        let (found, parents) = holder.read(|s| (s.slots.get(selector).cloned(), s.parents()))?;
        if found.is_some() {
            return Ok(found);
        }
        stack.extend(parents.into_iter().rev());
    }
    Ok(None)
}
