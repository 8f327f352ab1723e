//! Per-method outcome counts since the heartbeat last looked: which
//! method versions trap, so a health rule can roll them back.

use std::collections::HashMap;

use parking_lot::Mutex;

use batos_object::value::Oid;

/// Calls and traps of one method version (on the object holding it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodOutcomes {
    /// The object holding the method.
    pub holder: Oid,
    /// The selector.
    pub selector: String,
    /// The version that ran.
    pub version: u32,
    /// Messages that ran it.
    pub calls: u64,
    /// Of those, the ones that trapped.
    pub traps: u64,
}

/// Holder, selector, version.
type MethodKey = (Oid, String, u32);

/// Outcome counts (calls, traps), taken and reset by the heartbeat.
#[derive(Default)]
pub struct MethodStats {
    counts: Mutex<HashMap<MethodKey, (u64, u64)>>,
}

impl MethodStats {
    /// Counts one message that ran `selector` version `version` held by `holder`.
    pub fn record(&self, holder: Oid, selector: &str, version: u32, trapped: bool) {
        let mut counts = self.counts.lock();
        let entry = counts
            .entry((holder, selector.to_string(), version))
            .or_default();
        entry.0 += 1;
        entry.1 += u64::from(trapped);
    }

    /// Everything counted since the last call, and starts again.
    pub fn take(&self) -> Vec<MethodOutcomes> {
        std::mem::take(&mut *self.counts.lock())
            .into_iter()
            .map(
                |((holder, selector, version), (calls, traps))| MethodOutcomes {
                    holder,
                    selector,
                    version,
                    calls,
                    traps,
                },
            )
            .collect()
    }
}
