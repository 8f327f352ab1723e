//! The method subset's syntax to a WebAssembly module against the `uvm`
//! ABI's Python runtime (`py_*`): every value is an `i32` handle the host
//! resolves; local variables are host-side slots.

use std::collections::{BTreeSet, HashMap};

use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, DataSection, EntityType, ExportKind, ExportSection,
    Function, FunctionSection, ImportSection, Instruction, MemorySection, MemoryType, Module,
    TypeSection, ValType,
};

use crate::ast::{Def, Expr, FPiece, Pos, Stmt, Target};
use crate::Refusal;

use ValType::{F64, I32, I64};

/// The host functions the generated code imports (the Python part of the
/// ABI, `batos-sandbox`'s `abi.rs`), with their signatures.
const IMPORTS: &[(&str, &[ValType], &[ValType])] = &[
    ("py_stmt", &[], &[]),
    ("py_load", &[I32, I32, I32], &[I32]),
    ("py_store", &[I32, I32], &[]),
    ("py_int", &[I64], &[I32]),
    ("py_float", &[F64], &[I32]),
    ("py_str", &[I32, I32], &[I32]),
    ("py_const", &[I32], &[I32]),
    ("py_arity", &[I32, I32, I32], &[]),
    ("py_arg", &[I32], &[I32]),
    ("py_self", &[], &[I32]),
    ("py_binop", &[I32, I32, I32], &[I32]),
    ("py_compare", &[I32, I32, I32], &[I32]),
    ("py_unop", &[I32, I32], &[I32]),
    ("py_truthy", &[I32], &[I32]),
    ("py_getattr", &[I32, I32, I32], &[I32]),
    ("py_setattr", &[I32, I32, I32, I32], &[]),
    ("py_getitem", &[I32, I32], &[I32]),
    ("py_setitem", &[I32, I32, I32], &[]),
    ("py_slice", &[I32, I32, I32], &[I32]),
    ("py_args", &[], &[]),
    ("py_push", &[I32], &[]),
    ("py_call", &[I32, I32], &[I32]),
    ("py_call_method", &[I32, I32, I32], &[I32]),
    ("py_list", &[], &[I32]),
    ("py_dict", &[], &[I32]),
    ("py_iter", &[I32], &[I32]),
    ("py_next", &[I32, I32], &[I32]),
    ("py_unpack", &[I32, I32], &[I32]),
    ("py_flush", &[], &[]),
    ("py_return", &[I32], &[]),
    ("py_raise", &[I32], &[]),
];

/// Compiles a parsed method to a module.
pub fn generate(def: &Def) -> Result<Vec<u8>, Refusal> {
    let mut g = Gen::default();
    for (i, p) in def.params.iter().enumerate() {
        g.slots.insert(p.clone(), i as i32);
    }
    let mut assigned = BTreeSet::new();
    collect_assigned(&def.body, &mut assigned);
    for name in assigned {
        let next = g.slots.len() as i32;
        g.slots.entry(name).or_insert(next);
    }
    g.next_hidden = g.slots.len() as i32;

    // Arity, then the parameters into their slots.
    g.i(Instruction::I32Const(def.params.len() as i32));
    g.text(&def.name);
    g.call("py_arity");
    for (i, p) in def.params.iter().enumerate() {
        g.i(Instruction::I32Const(g.slots[p]));
        g.i(Instruction::I32Const(i as i32));
        g.call("py_arg");
        g.call("py_store");
    }
    g.block(&def.body)?;
    g.call("py_flush");
    Ok(g.finish())
}

fn collect_assigned(body: &[Stmt], out: &mut BTreeSet<String>) {
    for s in body {
        match s {
            Stmt::Assign(t, _) | Stmt::AugAssign(t, _, _) => target_names(t, out),
            Stmt::For(t, _, b) => {
                target_names(t, out);
                collect_assigned(b, out);
            }
            Stmt::If(_, a, b) => {
                collect_assigned(a, out);
                collect_assigned(b, out);
            }
            Stmt::While(_, b) => collect_assigned(b, out),
            _ => {}
        }
    }
}

fn target_names(t: &Target, out: &mut BTreeSet<String>) {
    match t {
        Target::Name(n) => {
            out.insert(n.clone());
        }
        Target::Tuple(names) => out.extend(names.iter().cloned()),
        _ => {}
    }
}

#[derive(Default)]
struct Gen {
    code: Vec<Instruction<'static>>,
    data: Vec<u8>,
    strings: HashMap<String, (i32, i32)>,
    slots: HashMap<String, i32>,
    next_hidden: i32,
    scratch: u32,
    /// Open labels.
    depth: u32,
    /// Enclosing loops: the absolute labels of their exit and their top.
    loops: Vec<(u32, u32)>,
}

impl Gen {
    fn i(&mut self, instruction: Instruction<'static>) {
        self.code.push(instruction);
    }

    fn call(&mut self, name: &str) {
        let index = IMPORTS
            .iter()
            .position(|(n, _, _)| *n == name)
            .expect("an imported host function");
        self.i(Instruction::Call(index as u32));
    }

    /// Pushes a string constant's pointer and length.
    fn text(&mut self, s: &str) {
        let (ptr, len) = match self.strings.get(s) {
            Some(at) => *at,
            None => {
                let at = (self.data.len() as i32, s.len() as i32);
                self.data.extend_from_slice(s.as_bytes());
                self.strings.insert(s.to_string(), at);
                at
            }
        };
        self.i(Instruction::I32Const(ptr));
        self.i(Instruction::I32Const(len));
    }

    fn local(&mut self) -> u32 {
        self.scratch += 1;
        self.scratch - 1
    }

    fn hidden(&mut self) -> i32 {
        self.next_hidden += 1;
        self.next_hidden - 1
    }

    fn open(&mut self, instruction: Instruction<'static>) -> u32 {
        self.i(instruction);
        self.depth += 1;
        self.depth
    }

    fn close(&mut self) {
        self.i(Instruction::End);
        self.depth -= 1;
    }

    fn br_to(&mut self, label: u32, conditional: bool) {
        let relative = self.depth - label;
        self.i(if conditional {
            Instruction::BrIf(relative)
        } else {
            Instruction::Br(relative)
        });
    }

    fn slot(&self, name: &str) -> i32 {
        self.slots[name]
    }

    fn finish(mut self) -> Vec<u8> {
        self.i(Instruction::End);
        let mut module = Module::new();
        let mut types = TypeSection::new();
        let mut imports = ImportSection::new();
        for (i, (name, params, results)) in IMPORTS.iter().enumerate() {
            types
                .ty()
                .function(params.iter().copied(), results.iter().copied());
            imports.import("uvm", name, EntityType::Function(i as u32));
        }
        types.ty().function([], []);
        let invoke_type = IMPORTS.len() as u32;
        let mut functions = FunctionSection::new();
        functions.function(invoke_type);
        let mut memory = MemorySection::new();
        let pages = (self.data.len() as u64).div_ceil(65536).max(1);
        memory.memory(MemoryType {
            minimum: pages,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        let mut exports = ExportSection::new();
        exports.export("memory", ExportKind::Memory, 0);
        exports.export("invoke", ExportKind::Func, IMPORTS.len() as u32);
        let mut code = CodeSection::new();
        let mut f = Function::new([(self.scratch, I32)]);
        for instruction in &self.code {
            f.instruction(instruction);
        }
        code.function(&f);
        let mut data = DataSection::new();
        if !self.data.is_empty() {
            data.active(0, &ConstExpr::i32_const(0), self.data.iter().copied());
        }
        module.section(&types);
        module.section(&imports);
        module.section(&functions);
        module.section(&memory);
        module.section(&exports);
        module.section(&code);
        if !self.data.is_empty() {
            module.section(&data);
        }
        module.finish()
    }

    // -- statements ------------------------------------------------------------

    fn block(&mut self, body: &[Stmt]) -> Result<(), Refusal> {
        for s in body {
            self.call("py_stmt");
            self.stmt(s)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> Result<(), Refusal> {
        match s {
            Stmt::Expr(e) => {
                self.expr(e)?;
                self.i(Instruction::Drop);
            }
            Stmt::Pass => {}
            Stmt::Assign(target, value) => self.assign(target, value, None)?,
            Stmt::AugAssign(target, op, value) => self.assign(target, value, Some(*op))?,
            Stmt::If(cond, then, otherwise) => {
                self.truth(cond)?;
                self.open(Instruction::If(BlockType::Empty));
                self.block(then)?;
                if !otherwise.is_empty() {
                    self.i(Instruction::Else);
                    self.block(otherwise)?;
                }
                self.close();
            }
            Stmt::While(cond, body) => {
                let exit = self.open(Instruction::Block(BlockType::Empty));
                let top = self.open(Instruction::Loop(BlockType::Empty));
                self.call("py_stmt");
                self.truth(cond)?;
                self.i(Instruction::I32Eqz);
                self.br_to(exit, true);
                self.loops.push((exit, top));
                self.block(body)?;
                self.loops.pop();
                self.br_to(top, false);
                self.close();
                self.close();
            }
            Stmt::For(target, iterable, body) => {
                let iterator = self.hidden();
                self.i(Instruction::I32Const(iterator));
                self.expr(iterable)?;
                self.call("py_iter");
                self.call("py_store");
                let item = match target {
                    Target::Name(n) => self.slot(n),
                    _ => self.hidden(),
                };
                let exit = self.open(Instruction::Block(BlockType::Empty));
                let top = self.open(Instruction::Loop(BlockType::Empty));
                self.call("py_stmt");
                self.i(Instruction::I32Const(iterator));
                self.i(Instruction::I32Const(item));
                self.call("py_next");
                self.i(Instruction::I32Eqz);
                self.br_to(exit, true);
                if let Target::Tuple(names) = target {
                    let names = names.clone();
                    self.unpack(&names, |g| {
                        g.i(Instruction::I32Const(item));
                        g.text("<item>");
                        g.call("py_load");
                        Ok(())
                    })?;
                }
                self.loops.push((exit, top));
                self.block(body)?;
                self.loops.pop();
                self.br_to(top, false);
                self.close();
                self.close();
            }
            Stmt::Break => {
                let (exit, _) = *self.loops.last().expect("the parser checks loops");
                self.br_to(exit, false);
            }
            Stmt::Continue => {
                let (_, top) = *self.loops.last().expect("the parser checks loops");
                self.br_to(top, false);
            }
            Stmt::Return(value) => {
                match value {
                    Some(e) => self.expr(e)?,
                    None => self.constant(0),
                }
                self.call("py_return");
                self.call("py_flush");
                self.i(Instruction::Return);
            }
            Stmt::Raise(kind, message) => {
                self.exception(kind, message.as_ref())?;
            }
            Stmt::Assert(cond, message) => {
                self.truth(cond)?;
                self.i(Instruction::I32Eqz);
                self.open(Instruction::If(BlockType::Empty));
                self.exception("AssertionError", message.as_ref())?;
                self.close();
            }
        }
        Ok(())
    }

    /// Traps with `Kind: message`.
    fn exception(&mut self, kind: &str, message: Option<&Expr>) -> Result<(), Refusal> {
        self.call("py_args");
        self.text(kind);
        self.call("py_str");
        self.call("py_push");
        if let Some(m) = message {
            self.expr(m)?;
            self.call("py_push");
        }
        self.text("__exception__");
        self.call("py_call");
        self.call("py_raise");
        self.i(Instruction::Unreachable);
        Ok(())
    }

    fn unpack(
        &mut self,
        names: &[String],
        value: impl FnOnce(&mut Gen) -> Result<(), Refusal>,
    ) -> Result<(), Refusal> {
        let items = self.local();
        value(self)?;
        self.i(Instruction::I32Const(names.len() as i32));
        self.call("py_unpack");
        self.i(Instruction::LocalSet(items));
        for (k, name) in names.iter().enumerate() {
            self.i(Instruction::I32Const(self.slot(name)));
            self.i(Instruction::LocalGet(items));
            self.i(Instruction::I64Const(k as i64));
            self.call("py_int");
            self.call("py_getitem");
            self.call("py_store");
        }
        Ok(())
    }

    fn assign(&mut self, target: &Target, value: &Expr, op: Option<i32>) -> Result<(), Refusal> {
        match target {
            Target::Name(n) => {
                let slot = self.slot(n);
                self.i(Instruction::I32Const(slot));
                self.updated(value, op, |g| {
                    g.i(Instruction::I32Const(slot));
                    g.text(n);
                    g.call("py_load");
                })?;
                self.call("py_store");
            }
            Target::Tuple(names) => {
                self.unpack(names, |g| g.expr(value))?;
            }
            Target::Attr(obj, name) => {
                let (o, v) = (self.local(), self.local());
                self.expr(obj)?;
                self.i(Instruction::LocalSet(o));
                self.updated(value, op, |g| {
                    g.i(Instruction::LocalGet(o));
                    g.text(name);
                    g.call("py_getattr");
                })?;
                self.i(Instruction::LocalSet(v));
                self.i(Instruction::LocalGet(o));
                self.text(name);
                self.i(Instruction::LocalGet(v));
                self.call("py_setattr");
            }
            Target::Index(a, i) => {
                let (ha, hi, hv) = (self.local(), self.local(), self.local());
                self.expr(a)?;
                self.i(Instruction::LocalSet(ha));
                self.expr(i)?;
                self.i(Instruction::LocalSet(hi));
                self.updated(value, op, |g| {
                    g.i(Instruction::LocalGet(ha));
                    g.i(Instruction::LocalGet(hi));
                    g.call("py_getitem");
                })?;
                self.i(Instruction::LocalSet(hv));
                self.i(Instruction::LocalGet(ha));
                self.i(Instruction::LocalGet(hi));
                self.i(Instruction::LocalGet(hv));
                self.call("py_setitem");
            }
        }
        Ok(())
    }

    /// `value`, or for an augmented assignment the current value (pushed by
    /// `current`) OP `value`.
    fn updated(
        &mut self,
        value: &Expr,
        op: Option<i32>,
        current: impl FnOnce(&mut Gen),
    ) -> Result<(), Refusal> {
        if let Some(op) = op {
            current(self);
            self.expr(value)?;
            self.i(Instruction::I32Const(op));
            self.call("py_binop");
        } else {
            self.expr(value)?;
        }
        Ok(())
    }

    // -- expressions -----------------------------------------------------------

    /// The truth of `e`, as an `i32`.
    fn truth(&mut self, e: &Expr) -> Result<(), Refusal> {
        self.expr(e)?;
        self.call("py_truthy");
        Ok(())
    }

    fn constant(&mut self, kind: i32) {
        self.i(Instruction::I32Const(kind));
        self.call("py_const");
    }

    /// Evaluates `e`, leaving its handle.
    fn expr(&mut self, e: &Expr) -> Result<(), Refusal> {
        match e {
            Expr::Name(n, pos) => self.name(n, *pos)?,
            Expr::Const(k) => self.constant(i32::from(*k)),
            Expr::Int(i) => {
                self.i(Instruction::I64Const(*i));
                self.call("py_int");
            }
            Expr::Float(f) => {
                self.i(Instruction::F64Const((*f).into()));
                self.call("py_float");
            }
            Expr::Str(s) => {
                self.text(s);
                self.call("py_str");
            }
            Expr::FStr(pieces) => {
                self.text("");
                self.call("py_str");
                for piece in pieces {
                    match piece {
                        FPiece::Text(t) => {
                            self.text(t);
                            self.call("py_str");
                        }
                        FPiece::Expr(e) => self.builtin("str", std::slice::from_ref(e))?,
                    }
                    self.i(Instruction::I32Const(0));
                    self.call("py_binop");
                }
            }
            Expr::List(items) => {
                self.call("py_args");
                for item in items {
                    self.expr(item)?;
                    self.call("py_push");
                }
                self.call("py_list");
            }
            Expr::Dict(items) => {
                self.call("py_args");
                for (k, v) in items {
                    self.expr(k)?;
                    self.call("py_push");
                    self.expr(v)?;
                    self.call("py_push");
                }
                self.call("py_dict");
            }
            Expr::Bin(op, a, b) => {
                self.expr(a)?;
                self.expr(b)?;
                self.i(Instruction::I32Const(*op));
                self.call("py_binop");
            }
            Expr::Unary(op, a) => {
                self.expr(a)?;
                self.i(Instruction::I32Const(*op));
                self.call("py_unop");
            }
            Expr::Compare(first, rest) => {
                let prev = self.local();
                self.expr(first)?;
                self.i(Instruction::LocalSet(prev));
                self.chain(prev, rest)?;
            }
            Expr::Logic(and, a, b) => {
                let t = self.local();
                self.expr(a)?;
                self.i(Instruction::LocalTee(t));
                self.call("py_truthy");
                self.open(Instruction::If(BlockType::Result(I32)));
                if *and {
                    self.expr(b)?;
                } else {
                    self.i(Instruction::LocalGet(t));
                }
                self.i(Instruction::Else);
                if *and {
                    self.i(Instruction::LocalGet(t));
                } else {
                    self.expr(b)?;
                }
                self.close();
            }
            Expr::IfElse(cond, a, b) => {
                self.truth(cond)?;
                self.open(Instruction::If(BlockType::Result(I32)));
                self.expr(a)?;
                self.i(Instruction::Else);
                self.expr(b)?;
                self.close();
            }
            Expr::Attr(obj, name, _) => {
                self.expr(obj)?;
                self.text(name);
                self.call("py_getattr");
            }
            Expr::Index(a, i) => {
                self.expr(a)?;
                self.expr(i)?;
                self.call("py_getitem");
            }
            Expr::Slice(a, lo, hi) => {
                self.expr(a)?;
                for bound in [lo, hi] {
                    match bound {
                        Some(b) => self.expr(b)?,
                        None => self.constant(0),
                    }
                }
                self.call("py_slice");
            }
            Expr::Call(name, args, _) => self.builtin(name, args)?,
            Expr::Method(obj, name, args) => {
                let receiver = self.local();
                self.expr(obj)?;
                self.i(Instruction::LocalSet(receiver));
                self.call("py_args");
                for a in args {
                    self.expr(a)?;
                    self.call("py_push");
                }
                self.i(Instruction::LocalGet(receiver));
                self.text(name);
                self.call("py_call_method");
            }
        }
        Ok(())
    }

    fn name(&mut self, n: &str, pos: Pos) -> Result<(), Refusal> {
        if n == "self" {
            self.call("py_self");
            return Ok(());
        }
        let Some(slot) = self.slots.get(n).copied() else {
            return Err(Refusal::at(
                format!("the name {n:?}, which the method never assigns"),
                pos.line,
                pos.col,
            ));
        };
        self.i(Instruction::I32Const(slot));
        self.text(n);
        self.call("py_load");
        Ok(())
    }

    fn builtin(&mut self, name: &str, args: &[Expr]) -> Result<(), Refusal> {
        self.call("py_args");
        for a in args {
            self.expr(a)?;
            self.call("py_push");
        }
        self.text(name);
        self.call("py_call");
        Ok(())
    }

    /// `prev OP e ...`: each comparison only if the ones before held.
    fn chain(&mut self, prev: u32, rest: &[(i32, Expr)]) -> Result<(), Refusal> {
        let ((op, e), more) = rest.split_first().expect("a comparison has an operator");
        let next = self.local();
        self.expr(e)?;
        self.i(Instruction::LocalSet(next));
        self.i(Instruction::LocalGet(prev));
        self.i(Instruction::LocalGet(next));
        self.i(Instruction::I32Const(*op));
        self.call("py_compare");
        if more.is_empty() {
            return Ok(());
        }
        let result = self.local();
        self.i(Instruction::LocalTee(result));
        self.call("py_truthy");
        self.open(Instruction::If(BlockType::Result(I32)));
        self.chain(next, more)?;
        self.i(Instruction::Else);
        self.i(Instruction::LocalGet(result));
        self.close();
        Ok(())
    }
}
