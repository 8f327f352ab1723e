//! Methods written in Python, compiled to WebAssembly.
//!
//! One method is one `def name(self, ...):` in a subset of Python
//! (`docs/method-abi.md`, "Python"): the lexer and parser (`lexer`,
//! `parser`, `ast`) accept the subset and refuse anything else with the
//! construct's name and where it is; `codegen` emits a module whose every
//! value is a handle into the host's Python runtime (`batos-sandbox`'s
//! `py`), so the module passes the same audit and runs under the same
//! limits as any method. No Python interpreter is involved.

pub mod ast;
pub mod codegen;
pub mod lexer;
pub mod parser;

/// Why a source is not a method of the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What was found (`"a class"`, `"import"`, `"a lambda"`...).
    pub construct: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl Refusal {
    /// A refusal of `construct` at a line and column.
    pub fn at(construct: impl Into<String>, line: usize, col: usize) -> Refusal {
        Refusal {
            construct: construct.into(),
            line,
            col,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "python: {} is not in the method subset (line {}, column {})",
            self.construct, self.line, self.col
        )
    }
}

/// A compiled method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// The name after `def`.
    pub name: String,
    /// How many arguments it takes (after `self`).
    pub arity: usize,
    /// The module.
    pub wasm: Vec<u8>,
}

/// Compiles a method's source.
pub fn compile(source: &str) -> Result<Compiled, Refusal> {
    let def = parser::parse(source)?;
    let wasm = codegen::generate(&def)?;
    Ok(Compiled {
        name: def.name,
        arity: def.params.len(),
        wasm,
    })
}

/// The Python name of a selector: a keyword selector's trailing `_`
/// dropped (`deposit_` ⇄ `deposit`, `at_put_` ⇄ `at_put`). A Python call
/// `obj.name(args)` sends `name` with no arguments and `name_` with some.
pub fn python_name(selector: &str) -> &str {
    selector.strip_suffix('_').unwrap_or(selector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subset_compiles() {
        let source = r#"
def deposit(self, amount):
    if amount <= 0:
        raise ValueError(f"bad amount {amount}")
    total = 0
    for i in range(3):
        total += i
    while total < 10 and not False:
        total = total + 1
        if total == 7:
            break
    items = [1, 2.5, "x", None, True]
    d = {"a": 1}
    d["b"] = items[1:]
    k, v = ["k", "v"]
    self.balance = self.balance + amount if 0 < amount < 100 else 0
    self.log.append(k.upper())
    assert len(items) == 5, "five"
    return self.balance
"#;
        let compiled = compile(source).unwrap();
        assert_eq!((compiled.name.as_str(), compiled.arity), ("deposit", 1));
        assert_eq!(&compiled.wasm[..4], b"\0asm");
    }

    #[test]
    fn constructs_outside_the_subset_are_refused_where_they_are() {
        for (source, construct, line) in [
            ("import os\n", "import", 1),
            ("def f(self):\n    import os\n", "import", 2),
            ("def f(self):\n    x = lambda y: y\n", "a lambda", 2),
            ("class A:\n    pass\n", "a class", 1),
            ("def f(self):\n    yield 1\n", "a generator (yield)", 2),
            ("def f(self):\n    global x\n", "global", 2),
            (
                "def f(self):\n    return [x for x in range(3)]\n",
                "a list comprehension",
                2,
            ),
            (
                "def f(self):\n    return undefined\n",
                "the name \"undefined\", which the method never assigns",
                2,
            ),
            ("def f(self, *a):\n    pass\n", "*args or **kwargs", 1),
            ("def f(self):\n    exec('1')\n", "exec", 2),
            (
                "def f(self):\n    try:\n        pass\n    except:\n        pass\n",
                "try",
                2,
            ),
        ] {
            let refusal = compile(source).unwrap_err();
            assert_eq!(refusal.construct, construct, "{source}");
            assert_eq!(refusal.line, line, "{source}");
        }
    }

    #[test]
    fn selectors_map_to_python_names() {
        assert_eq!(python_name("deposit_"), "deposit");
        assert_eq!(python_name("at_put_"), "at_put");
        assert_eq!(python_name("area"), "area");
    }
}
