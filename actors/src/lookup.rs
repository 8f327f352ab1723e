//! Method lookup: the receiver's own slots, then depth-first along
//! `parent*` in order, each object at most once (cycles terminate).

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::ActorError;
use crate::slot::Slot;
use crate::space::SpaceInner;
use crate::table::{InUse, ObjectState};
use crate::value::Oid;

/// Finds the slot `selector` answers to, starting at `receiver`.
pub(crate) async fn lookup(
    space: &Arc<SpaceInner>,
    receiver: &InUse,
    selector: &str,
) -> Result<Option<Slot>, ActorError> {
    // Parents are pushed in reverse so the first parent is searched first.
    let mut stack: Vec<Oid> = Vec::new();
    let found = receiver.read(|s| find_or_push(s, selector, &mut stack))?;
    if found.is_some() {
        return Ok(found);
    }
    let mut visited: HashSet<Oid> = HashSet::from([receiver.oid]);
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
        let found = holder.read(|s| find_or_push(s, selector, &mut stack))?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The slot if `state` has it; otherwise its parents go on the stack.
fn find_or_push(state: &ObjectState, selector: &str, stack: &mut Vec<Oid>) -> Option<Slot> {
    match state.slots.get(selector) {
        Some(slot) => Some(slot.clone()),
        None => {
            stack.extend(state.parents().iter().rev());
            None
        }
    }
}
