//! Method lookup from a message's actor: the delegation walk
//! (`batos_object::delegation`) over live objects, activated on demand.

use std::sync::Arc;

use crate::runtime::SpaceInner;
use crate::table::InUse;
use batos_object::delegation::{Visit, Walk};
use batos_object::error::ActorError;
use batos_object::slot::Slot;

/// Finds the slot `selector` answers to, starting at `receiver`,
/// activating the objects along the way.
pub(crate) async fn lookup(
    space: &Arc<SpaceInner>,
    receiver: &InUse,
    selector: &str,
) -> Result<Option<Slot>, ActorError> {
    let mut walk = Walk::new(receiver.oid);
    while let Some(oid) = walk.next_object() {
        let activated;
        let object = if walk.is_receiver(oid) {
            receiver
        } else {
            match space.activate(oid).await {
                Ok(holder) => {
                    activated = holder;
                    &activated
                }
                // A dangling parent (never created) is skipped.
                Err(ActorError::NoSuchObject(_)) => continue,
                Err(err) => return Err(err),
            }
        };
        let found = object.read(|s| {
            let visit = match s.slots.get(selector) {
                Some(slot) => Visit::Found(slot.clone()),
                None => Visit::Parents(s.parents()),
            };
            walk.visit(oid, visit)
        })?;
        if let Some((_, slot)) = found {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}
