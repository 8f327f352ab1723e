//! Installing methods: audit, compile, version numbering, history and
//! rollback. Runs on sandbox threads (compiling and image reads block).

use std::collections::HashMap;
use std::sync::Arc;

use crate::runtime::SpaceInner;
use batos_object::error::ActorError;
use batos_object::slot::{MethodRecord, MethodRef, MethodSource, Provenance, SourceRef};
use batos_object::txn::{Install, Transaction};
use batos_object::value::{Oid, PARENT_SLOT};
use batos_sandbox::audit;
use batos_sandbox::module_hash;

/// A method version ready to go into a transaction, with its source's text.
pub(crate) struct Prepared {
    pub(crate) install: Install,
    source_text: Option<(String, Vec<u8>)>,
}

impl Prepared {
    /// Puts the version, and its source's text as a blob, in `tx`.
    pub(crate) fn stage(self, tx: &mut Transaction) {
        if let Some((hash, text)) = self.source_text {
            tx.store_blob(hash, text);
        }
        tx.install(self.install);
    }
}

/// Audits and compiles `wasm` and numbers the new version of `selector` on
/// `oid` (history in the image plus installs already in `tx`); `source` is
/// what it was compiled from, kept with the version.
pub(crate) fn prepare_install(
    space: &Arc<SpaceInner>,
    oid: Oid,
    selector: &str,
    wasm: Vec<u8>,
    provenance: Provenance,
    source: Option<MethodSource>,
    tx: &Transaction,
) -> Result<Prepared, ActorError> {
    if selector.is_empty() || selector == PARENT_SLOT {
        return Err(ActorError::BadRequest(format!(
            "{selector:?} cannot name a method"
        )));
    }
    let hash = check_module(space, &wasm).map_err(ActorError::CovenantViolation)?;
    let stored = history(space, oid)?
        .into_iter()
        .filter(|(s, _)| s == selector)
        .map(|(_, r)| r.version)
        .max()
        .unwrap_or(0);
    let pending = tx
        .installs()
        .iter()
        .filter(|i| i.oid == oid && i.selector == selector)
        .map(|i| i.method.version)
        .max()
        .unwrap_or(0);
    let version = stored.max(pending) + 1;
    let source = source.map(|s| {
        let hash = module_hash(s.text.as_bytes());
        let reference = SourceRef {
            language: s.language,
            hash: hash.clone(),
        };
        (reference, (hash, s.text.into_bytes()))
    });
    let (source, source_text) = source.unzip();
    Ok(Prepared {
        install: Install {
            oid,
            selector: selector.to_string(),
            method: MethodRef { version, hash },
            provenance,
            wasm,
            source,
        },
        source_text,
    })
}

/// Compiles a method written in Python for `selector`: its `def` must be
/// named as the selector is in Python (`deposit_` ⇄ `def deposit`).
pub(crate) fn compile_python(selector: &str, source: &str) -> Result<Vec<u8>, ActorError> {
    let compiled =
        batos_python::compile(source).map_err(|r| ActorError::CovenantViolation(r.to_string()))?;
    let expected = batos_python::python_name(selector);
    if compiled.name != expected {
        return Err(ActorError::CovenantViolation(format!(
            "python: the method for {selector:?} is `def {expected}(self, ...)`, not `def {}`",
            compiled.name
        )));
    }
    Ok(compiled.wasm)
}

/// What every method passes before it is installed: the audit, then
/// compilation (cached by the sandbox). Returns the module's hash, or why
/// it is refused.
pub(crate) fn check_module(space: &SpaceInner, wasm: &[u8]) -> Result<String, String> {
    audit::audit(wasm, &space.audit_limits).map_err(|v| v.to_string())?;
    let hash = module_hash(wasm);
    space
        .sandbox
        .prepare(&hash, wasm)
        .map_err(|e| format!("compile: {e}"))?;
    Ok(hash)
}

/// Every version ever installed on `oid`.
pub(crate) fn history(
    space: &SpaceInner,
    oid: Oid,
) -> Result<Vec<(String, MethodRecord)>, ActorError> {
    Ok(space.image.method_history(oid)?)
}

/// The texts of the sources `records` keep, by hash (each read once; a
/// text that is not UTF-8 or is missing is left out).
pub(crate) fn source_texts(
    space: &SpaceInner,
    records: &[(String, MethodRecord)],
) -> Result<HashMap<String, String>, ActorError> {
    let mut texts = HashMap::new();
    for source in records.iter().filter_map(|(_, r)| r.source.as_ref()) {
        if texts.contains_key(&source.hash) {
            continue;
        }
        if let Some(text) = space
            .image
            .load_module(&source.hash)?
            .and_then(|bytes| String::from_utf8(bytes).ok())
        {
            texts.insert(source.hash.clone(), text);
        }
    }
    Ok(texts)
}

/// Version `version` of `selector` on `oid`, if it was ever installed.
pub(crate) fn find_version(
    space: &SpaceInner,
    oid: Oid,
    selector: &str,
    version: u64,
) -> Result<Option<MethodRef>, ActorError> {
    Ok(history(space, oid)?
        .into_iter()
        .find(|(s, r)| s == selector && u64::from(r.version) == version)
        .map(|(_, r)| MethodRef {
            version: r.version,
            hash: r.hash,
        }))
}
