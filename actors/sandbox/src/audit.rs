//! The audit (the seed's PersistenceGuardian, for WebAssembly): nothing is
//! installed unless the module passes every rule. Each refusal names its rule.

use wasmparser::{
    CompositeInnerType, ExternalKind, Parser, Payload, TypeRef, ValType, Validator, WasmFeatures,
};

use crate::abi::{self, AbiType};

/// Bounds the audit enforces.
#[derive(Clone, Debug)]
pub struct AuditLimits {
    /// Largest module binary.
    pub max_module_bytes: usize,
    /// Most 64 KiB pages a memory may declare (initial and maximum).
    pub max_memory_pages: u64,
    /// Most elements a table may declare.
    pub max_table_elements: u64,
    /// Most functions a module may define.
    pub max_functions: u32,
    /// Largest body of one function. The compiler's time grows faster than
    /// a function's size, so this (with `max_module_bytes`) is what keeps a
    /// compile short (docs/benchmarks.md, "Methods").
    pub max_function_bytes: usize,
}

impl Default for AuditLimits {
    fn default() -> Self {
        AuditLimits {
            max_module_bytes: 1 << 20,
            max_memory_pages: 256,
            max_table_elements: 10_000,
            max_functions: 10_000,
            max_function_bytes: 128 * 1024,
        }
    }
}

/// A broken rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {detail}")]
pub struct Violation {
    /// The rule's name (`module-size`, `validation`, `imports`, `exports`,
    /// `start-function`, `memory-pages`, `table-size`, `function-count`, `wat-syntax`).
    pub rule: &'static str,
    /// What was wrong.
    pub detail: String,
}

fn violation(rule: &'static str, detail: impl Into<String>) -> Violation {
    Violation {
        rule,
        detail: detail.into(),
    }
}

/// Exports rustc's wasm32 linker always adds; harmless (immutable globals).
const TOLERATED_GLOBAL_EXPORTS: [&str; 2] = ["__data_end", "__heap_base"];

/// The WebAssembly features a method may use (the 2.0 spec, no threads,
/// no memory64, no GC, no exceptions).
pub fn features() -> WasmFeatures {
    WasmFeatures::WASM2
}

/// Parses WAT (or passes a binary through), then audits.
pub fn wat_to_wasm(wat: &str) -> Result<Vec<u8>, Violation> {
    wat::parse_str(wat).map_err(|e| violation("wat-syntax", e.to_string()))
}

/// Audits a module binary against every rule.
pub fn audit(wasm: &[u8], limits: &AuditLimits) -> Result<(), Violation> {
    if wasm.len() > limits.max_module_bytes {
        return Err(violation(
            "module-size",
            format!(
                "module is {} bytes; the limit is {}",
                wasm.len(),
                limits.max_module_bytes
            ),
        ));
    }
    Validator::new_with_features(features())
        .validate_all(wasm)
        .map_err(|e| violation("validation", e.to_string()))?;
    let mut func_types: Vec<Option<(Vec<ValType>, Vec<ValType>)>> = Vec::new();
    let mut imported_funcs = 0u32;
    let mut defined_funcs: Vec<u32> = Vec::new();
    let mut memory_exported = false;
    let mut invoke_type: Option<u32> = None;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| violation("validation", e.to_string()))?;
        match payload {
            Payload::TypeSection(reader) => {
                for group in reader {
                    let group = group.map_err(|e| violation("validation", e.to_string()))?;
                    for sub in group.into_types() {
                        func_types.push(match &sub.composite_type.inner {
                            CompositeInnerType::Func(ft) => {
                                Some((ft.params().to_vec(), ft.results().to_vec()))
                            }
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(|e| violation("validation", e.to_string()))?;
                    check_import(import.module, import.name, &import.ty, &func_types)?;
                    imported_funcs += 1;
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    defined_funcs.push(ty.map_err(|e| violation("validation", e.to_string()))?);
                }
                if defined_funcs.len() as u64 > u64::from(limits.max_functions) {
                    return Err(violation(
                        "function-count",
                        format!(
                            "{} functions; the limit is {}",
                            defined_funcs.len(),
                            limits.max_functions
                        ),
                    ));
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table.map_err(|e| violation("validation", e.to_string()))?;
                    let max = limits.max_table_elements;
                    if table.ty.initial > max || table.ty.maximum.is_some_and(|m| m > max) {
                        return Err(violation(
                            "table-size",
                            format!(
                                "a table declares {} initial / {:?} maximum elements; the limit is {max}",
                                table.ty.initial, table.ty.maximum
                            ),
                        ));
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(|e| violation("validation", e.to_string()))?;
                    let max = limits.max_memory_pages;
                    if memory.initial > max || memory.maximum.is_some_and(|m| m > max) {
                        return Err(violation(
                            "memory-pages",
                            format!(
                                "memory declares {} initial / {:?} maximum pages; the limit is {max}",
                                memory.initial, memory.maximum
                            ),
                        ));
                    }
                }
            }
            Payload::StartSection { func, .. } => {
                return Err(violation(
                    "start-function",
                    format!(
                        "module has a start function ({func}); methods run only through `invoke`"
                    ),
                ));
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| violation("validation", e.to_string()))?;
                    match (export.name, export.kind) {
                        ("memory", ExternalKind::Memory) => memory_exported = true,
                        ("invoke", ExternalKind::Func) => {
                            let index = export.index;
                            if index < imported_funcs {
                                return Err(violation("exports", "`invoke` must be defined by the module, not imported"));
                            }
                            invoke_type = defined_funcs.get((index - imported_funcs) as usize).copied();
                        }
                        (name, ExternalKind::Global) if TOLERATED_GLOBAL_EXPORTS.contains(&name) => {}
                        (name, kind) => {
                            return Err(violation(
                                "exports",
                                format!("unexpected export {name:?} ({kind:?}); a method exports only `memory` and `invoke`"),
                            ))
                        }
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let size = body.range().len();
                if size > limits.max_function_bytes {
                    return Err(violation(
                        "function-size",
                        format!(
                            "a function body is {size} bytes; the limit is {}",
                            limits.max_function_bytes
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    if !memory_exported {
        return Err(violation(
            "exports",
            "the module must export its memory as `memory`",
        ));
    }
    let Some(ty) = invoke_type else {
        return Err(violation(
            "exports",
            "the module must export a function `invoke`",
        ));
    };
    match func_types.get(ty as usize) {
        Some(Some((params, results))) if params.is_empty() && results.is_empty() => Ok(()),
        _ => Err(violation(
            "exports",
            "`invoke` must have type (func) with no parameters and no results",
        )),
    }
}

fn check_import(
    module: &str,
    name: &str,
    ty: &TypeRef,
    func_types: &[Option<(Vec<ValType>, Vec<ValType>)>],
) -> Result<(), Violation> {
    if module != abi::HOST_MODULE {
        return Err(violation(
            "imports",
            format!("import {module}::{name}: methods may import only from `uvm`"),
        ));
    }
    let TypeRef::Func(index) = ty else {
        return Err(violation(
            "imports",
            format!("import uvm::{name}: only functions may be imported"),
        ));
    };
    let host = abi::host_fn(name).ok_or_else(|| {
        violation(
            "imports",
            format!("uvm::{name} is not a host function of ABI v1"),
        )
    })?;
    let Some(Some((params, results))) = func_types.get(*index as usize) else {
        return Err(violation(
            "imports",
            format!("import uvm::{name} has no function type"),
        ));
    };
    let same = |have: &[ValType], want: &[AbiType]| {
        have.len() == want.len()
            && have.iter().zip(want).all(|(h, w)| {
                matches!(
                    (h, w),
                    (ValType::I32, AbiType::I32)
                        | (ValType::I64, AbiType::I64)
                        | (ValType::F64, AbiType::F64)
                )
            })
    };
    if same(params, host.params) && same(results, host.results) {
        Ok(())
    } else {
        Err(violation(
            "imports",
            format!(
                "uvm::{name} has type {params:?} -> {results:?}; ABI v1 says {:?} -> {:?}",
                host.params, host.results
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(wat: &str) -> Result<(), Violation> {
        audit(&wat_to_wasm(wat)?, &AuditLimits::default())
    }

    fn rule(wat: &str) -> &'static str {
        check(wat).unwrap_err().rule
    }

    const GOOD: &str = r#"(module
        (import "uvm" "return_i64" (func (param i64)))
        (memory (export "memory") 1)
        (func (export "invoke") (call 0 (i64.const 1))))"#;

    #[test]
    fn a_good_module_passes() {
        check(GOOD).unwrap();
    }

    #[test]
    fn every_rule_has_a_module_that_breaks_it() {
        assert_eq!(rule("(module (func"), "wat-syntax");
        assert_eq!(
            rule(r#"(module (memory (export "memory") 1) (func (export "invoke") (i32.add)))"#),
            "validation"
        );
        assert_eq!(
            rule(
                r#"(module (import "env" "f" (func)) (memory (export "memory") 1) (func (export "invoke")))"#
            ),
            "imports"
        );
        assert_eq!(
            rule(
                r#"(module (import "uvm" "system" (func)) (memory (export "memory") 1) (func (export "invoke")))"#
            ),
            "imports"
        );
        assert_eq!(
            rule(
                r#"(module (import "uvm" "return_i64" (func (param i32))) (memory (export "memory") 1) (func (export "invoke")))"#
            ),
            "imports"
        );
        assert_eq!(
            rule(
                r#"(module (import "uvm" "mem" (memory 1)) (func (export "invoke")) (export "memory" (memory 0)))"#
            ),
            "imports"
        );
        assert_eq!(rule(r#"(module (func (export "invoke")))"#), "exports");
        assert_eq!(rule(r#"(module (memory (export "memory") 1))"#), "exports");
        assert_eq!(
            rule(r#"(module (memory (export "memory") 1) (func (export "invoke") (param i32)))"#),
            "exports"
        );
        assert_eq!(
            rule(
                r#"(module (memory (export "memory") 1) (func (export "invoke")) (func (export "other")))"#
            ),
            "exports"
        );
        assert_eq!(
            rule(
                r#"(module (memory (export "memory") 1) (func $s) (start $s) (func (export "invoke")))"#
            ),
            "start-function"
        );
        assert_eq!(
            rule(r#"(module (memory (export "memory") 1000) (func (export "invoke")))"#),
            "memory-pages"
        );
        assert_eq!(
            rule(r#"(module (memory (export "memory") 1 1000) (func (export "invoke")))"#),
            "memory-pages"
        );
        assert_eq!(
            rule(
                r#"(module (memory (export "memory") 1) (table 100000 funcref) (func (export "invoke")))"#
            ),
            "table-size"
        );
        let many = format!(
            r#"(module (memory (export "memory") 1) (func (export "invoke")) {})"#,
            "(func)".repeat(10_001)
        );
        assert_eq!(rule(&many), "function-count");
        let long = format!(
            r#"(module (memory (export "memory") 1) (func (export "invoke")) (func {}))"#,
            "(nop)".repeat(128 * 1024 + 1)
        );
        assert_eq!(rule(&long), "function-size");
        let limits = AuditLimits {
            max_module_bytes: 10,
            ..AuditLimits::default()
        };
        assert_eq!(
            audit(&wat_to_wasm(GOOD).unwrap(), &limits)
                .unwrap_err()
                .rule,
            "module-size"
        );
    }

    #[test]
    fn rustc_linker_globals_are_tolerated() {
        check(
            r#"(module (memory (export "memory") 2) (global (export "__heap_base") i32 (i32.const 0))
                (func (export "invoke")))"#,
        )
        .unwrap();
    }
}

#[cfg(test)]
mod doc_examples {
    use super::*;

    /// Every WAT example in docs/method-abi.md passes the audit, so the
    /// document cannot drift from the ABI.
    #[test]
    fn every_example_in_the_abi_document_passes_the_audit() {
        let doc = include_str!("../../../docs/method-abi.md");
        let blocks: Vec<&str> = doc
            .split("```wat")
            .skip(1)
            .map(|b| b.split("```").next().unwrap_or(""))
            .collect();
        assert!(blocks.len() >= 8, "found {} examples", blocks.len());
        let mut used = std::collections::HashSet::new();
        for block in blocks {
            let wasm = wat_to_wasm(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
            audit(&wasm, &AuditLimits::default()).unwrap_or_else(|e| panic!("{e}\n{block}"));
            for line in block.lines().filter(|l| l.contains("(import \"uvm\"")) {
                let name = line.split('"').nth(3).unwrap_or_default();
                used.insert(name.to_string());
            }
        }
        for host in crate::abi::HOST_FUNCTIONS {
            // The Python runtime's functions are what compiled Python
            // calls, not hand-written WAT: the document lists them instead.
            if host.name.starts_with("py_") {
                assert!(
                    doc.contains(&format!("`{}`", host.name)),
                    "docs/method-abi.md does not list uvm::{}",
                    host.name
                );
                continue;
            }
            assert!(
                used.contains(host.name),
                "no example in docs/method-abi.md uses uvm::{}",
                host.name
            );
        }
    }
}
