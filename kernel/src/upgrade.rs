//! The kernel's side of the self-directed upgrade path: `requestUpgrade_`
//! (a primitive on `orchestrator_obj`) checks an instruction when the
//! message runs and submits it to the upgrade channel once it has committed.

use std::path::PathBuf;

use batos_actors::space::SystemHooks;
use batos_actors::Value;

use crate::cli::to_json;
use batos_steward::channel::request_upgrade;
use batos_steward::instruction::{check_id, parse, Instruction};

/// Submits upgrade requests from inside the image to a channel folder.
pub struct ChannelHooks {
    channel: PathBuf,
}

impl ChannelHooks {
    /// Hooks writing to `channel` (created when the first request comes).
    pub fn new(channel: PathBuf) -> Self {
        ChannelHooks { channel }
    }
}

fn instruction(value: &Value) -> Result<Instruction, String> {
    let bytes = serde_json::to_vec(&to_json(value)).map_err(|e| e.to_string())?;
    let instruction = parse(&bytes).map_err(|e| e.to_string())?;
    check_id(&instruction.id).map_err(|e| e.to_string())?;
    Ok(instruction)
}

impl SystemHooks for ChannelHooks {
    fn check_upgrade(&self, value: &Value) -> Result<String, String> {
        instruction(value).map(|i| i.id)
    }

    fn request_upgrade(&self, value: &Value) -> Result<String, String> {
        let instruction = instruction(value)?;
        std::fs::create_dir_all(&self.channel)
            .map_err(|e| format!("creating {}: {e}", self.channel.display()))?;
        request_upgrade(&self.channel, &instruction).map_err(|e| e.to_string())?;
        Ok(instruction.id)
    }
}
