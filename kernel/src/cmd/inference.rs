//! `infer` and `list_experts`: the cognitive core.

use batos_cognition::inference::Inference;
use rmpv::Value;

use super::{subsystems, wire_error, Context};
use crate::protocol::{map, WireError};

pub(super) async fn list_experts(ctx: &Context) -> Value {
    let experts = ctx
        .experts
        .list()
        .await
        .into_iter()
        .map(|e| {
            map([
                ("name", Value::from(e.name)),
                ("tier", Value::from(e.tier.as_str())),
                ("bytes", Value::from(e.bytes)),
                ("hash", Value::from(e.hash)),
                ("versions", Value::from(e.versions as u64)),
            ])
        })
        .collect();
    map([("experts", Value::Array(experts))])
}

pub(super) async fn infer(
    ctx: &Context,
    prompt: String,
    expert: Option<String>,
    max_tokens: Option<u64>,
) -> Result<Value, WireError> {
    let Some(cognition) = &ctx.cognition else {
        return Err(subsystems::unavailable(
            "the cognitive core",
            subsystems::COGNITIVE_CORE,
        ));
    };
    let out = cognition
        .infer(
            Inference {
                prompt,
                expert,
                max_tokens: max_tokens.map(|n| n.min(usize::MAX as u64) as usize),
                constraint: None,
            },
            true,
        )
        .await
        .map_err(wire_error)?;
    Ok(map([
        ("text", Value::from(out.text)),
        ("expert", out.expert.map(Value::from).unwrap_or(Value::Nil)),
        ("tokens", Value::from(out.tokens as u64)),
        ("model", Value::from(out.model)),
    ]))
}
