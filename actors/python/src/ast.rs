//! The syntax of the method subset.

/// Where a node starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A variable (or `self`).
    Name(String, Pos),
    /// `None`, `True`, `False`.
    Const(u8),
    /// An int literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A str literal.
    Str(String),
    /// An f-string: text and expressions, joined.
    FStr(Vec<FPiece>),
    /// `[a, b]`.
    List(Vec<Expr>),
    /// `{"k": v}`.
    Dict(Vec<(Expr, Expr)>),
    /// `a OP b` (arithmetic).
    Bin(i32, Box<Expr>, Box<Expr>),
    /// `OP a`.
    Unary(i32, Box<Expr>),
    /// `a < b <= c`: operands and the comparisons between them.
    Compare(Box<Expr>, Vec<(i32, Expr)>),
    /// `a and b` (true) or `a or b` (false).
    Logic(bool, Box<Expr>, Box<Expr>),
    /// `a if cond else b`.
    IfElse(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `obj.name`.
    Attr(Box<Expr>, String, Pos),
    /// `a[i]`.
    Index(Box<Expr>, Box<Expr>),
    /// `a[lo:hi]`.
    Slice(Box<Expr>, Option<Box<Expr>>, Option<Box<Expr>>),
    /// `name(args)`: a builtin.
    Call(String, Vec<Expr>, Pos),
    /// `obj.name(args)`: a message send, or a method of a str, list or dict.
    Method(Box<Expr>, String, Vec<Expr>),
}

/// A piece of an f-string.
#[derive(Debug, Clone, PartialEq)]
pub enum FPiece {
    /// Text.
    Text(String),
    /// `{expr}`.
    Expr(Expr),
}

/// Where an assignment stores.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A local variable.
    Name(String),
    /// `obj.name`.
    Attr(Expr, String),
    /// `a[i]`.
    Index(Expr, Expr),
    /// `a, b` (unpacking into names).
    Tuple(Vec<String>),
}

/// A statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// An expression evaluated for its effect.
    Expr(Expr),
    /// `target = value`.
    Assign(Target, Expr),
    /// `target OP= value`.
    AugAssign(Target, i32, Expr),
    /// `if`/`elif`/`else`.
    If(Expr, Vec<Stmt>, Vec<Stmt>),
    /// `while cond:`.
    While(Expr, Vec<Stmt>),
    /// `for target in iterable:`.
    For(Target, Expr, Vec<Stmt>),
    /// `break`.
    Break,
    /// `continue`.
    Continue,
    /// `return [value]`.
    Return(Option<Expr>),
    /// `pass`.
    Pass,
    /// `raise Kind(message)` (the kind's name and the message).
    Raise(String, Option<Expr>),
    /// `assert cond[, message]`.
    Assert(Expr, Option<Expr>),
}

/// One method: `def name(self, params): body`.
#[derive(Debug, Clone, PartialEq)]
pub struct Def {
    /// The name after `def`.
    pub name: String,
    /// The parameters after `self`.
    pub params: Vec<String>,
    /// The body.
    pub body: Vec<Stmt>,
}
