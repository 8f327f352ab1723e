//! Tokens to the method subset's syntax; anything else is refused with the
//! construct's name and where it is.

use crate::ast::{Def, Expr, FPiece, Pos, Stmt, Target};
use crate::lexer::{tokenize, FPart, Tok, Token};
use crate::Refusal;

/// Names that are builtins (callable, not assignable).
pub const BUILTINS: &[&str] = &[
    "len",
    "str",
    "repr",
    "int",
    "float",
    "bool",
    "abs",
    "min",
    "max",
    "round",
    "sum",
    "sorted",
    "range",
    "isinstance",
    "list",
];

/// Type names `isinstance` takes.
const TYPES: &[&str] = &["int", "float", "str", "bool", "list", "dict"];

/// Python keywords the subset refuses, with what they are.
const REFUSED: &[(&str, &str)] = &[
    ("import", "import"),
    ("from", "import"),
    ("class", "a class"),
    ("lambda", "a lambda"),
    ("yield", "a generator (yield)"),
    ("global", "global"),
    ("nonlocal", "nonlocal"),
    ("with", "with"),
    ("try", "try"),
    ("except", "try"),
    ("finally", "try"),
    ("del", "del"),
    ("async", "async"),
    ("await", "await"),
    ("is", "'is'"),
    ("exec", "exec"),
    ("eval", "eval"),
    ("open", "open"),
    ("print", "print"),
    ("__import__", "__import__"),
    ("getattr", "getattr"),
    ("setattr", "setattr"),
    ("globals", "globals"),
    ("locals", "locals"),
    ("vars", "vars"),
    ("dir", "dir"),
    ("type", "type"),
    ("compile", "compile"),
    ("input", "input"),
];

/// Parses a method's source.
pub fn parse(source: &str) -> Result<Def, Refusal> {
    let tokens = tokenize(source)?;
    let mut p = Parser {
        tokens,
        at: 0,
        loops: 0,
    };
    let def = p.def()?;
    if p.peek() != &Tok::End {
        return Err(p.refuse_here("code after the method (one def per method)"));
    }
    Ok(def)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    loops: usize,
}

fn op(t: &Tok, s: &str) -> bool {
    matches!(t, Tok::Op(o) if *o == s)
}

fn name_is(t: &Tok, s: &str) -> bool {
    matches!(t, Tok::Name(n) if n == s)
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.at].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.tokens[(self.at + n).min(self.tokens.len() - 1)].tok
    }

    fn pos(&self) -> Pos {
        let t = &self.tokens[self.at];
        Pos {
            line: t.line,
            col: t.col,
        }
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.at].clone();
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
        t
    }

    fn refuse_here(&self, what: impl Into<String>) -> Refusal {
        let p = self.pos();
        Refusal::at(what, p.line, p.col)
    }

    fn describe(&self) -> String {
        match self.peek() {
            Tok::Name(n) => {
                if let Some((_, what)) = REFUSED.iter().find(|(k, _)| k == n) {
                    (*what).to_string()
                } else {
                    format!("the name {n:?} here")
                }
            }
            Tok::Op(o) => format!("{o:?} here"),
            Tok::Indent => "unexpected indentation".into(),
            Tok::Dedent | Tok::Newline => "an incomplete statement".into(),
            Tok::End => "the end of the source".into(),
            other => format!("{other:?} here"),
        }
    }

    fn expect_op(&mut self, s: &str) -> Result<(), Refusal> {
        if op(self.peek(), s) {
            self.next();
            Ok(())
        } else {
            Err(self.refuse_here(format!("{} (expected {s:?})", self.describe())))
        }
    }

    fn eat_op(&mut self, s: &str) -> bool {
        if op(self.peek(), s) {
            self.next();
            true
        } else {
            false
        }
    }

    fn name(&mut self) -> Result<String, Refusal> {
        match self.peek().clone() {
            Tok::Name(n) => {
                self.check_name(&n)?;
                self.next();
                Ok(n)
            }
            _ => Err(self.refuse_here(format!("{} (expected a name)", self.describe()))),
        }
    }

    fn check_name(&self, n: &str) -> Result<(), Refusal> {
        if let Some((_, what)) = REFUSED.iter().find(|(k, _)| *k == n) {
            return Err(self.refuse_here(*what));
        }
        if n.starts_with("__") {
            return Err(self.refuse_here(format!("the dunder name {n:?}")));
        }
        Ok(())
    }

    fn def(&mut self) -> Result<Def, Refusal> {
        while self.peek() == &Tok::Newline {
            self.next();
        }
        if op(self.peek(), "@") {
            return Err(self.refuse_here("a decorator"));
        }
        if let Tok::Name(n) = self.peek() {
            if let Some((_, what)) = REFUSED.iter().find(|(k, _)| k == n) {
                return Err(self.refuse_here(*what));
            }
        }
        if !name_is(self.peek(), "def") {
            return Err(self.refuse_here(format!(
                "{} (a method is one `def name(self, ...):`)",
                self.describe()
            )));
        }
        self.next();
        let name = self.name()?;
        self.expect_op("(")?;
        if !name_is(self.peek(), "self") {
            return Err(self.refuse_here("a method whose first parameter is not self"));
        }
        self.next();
        let mut params = Vec::new();
        while self.eat_op(",") {
            if op(self.peek(), ")") {
                break;
            }
            if op(self.peek(), "*") || op(self.peek(), "**") {
                return Err(self.refuse_here("*args or **kwargs"));
            }
            let p = self.name()?;
            if op(self.peek(), "=") {
                return Err(self.refuse_here("a default parameter value"));
            }
            if op(self.peek(), ":") {
                return Err(self.refuse_here("a parameter annotation"));
            }
            if params.contains(&p) || p == "self" {
                return Err(self.refuse_here(format!("the parameter {p:?} twice")));
            }
            params.push(p);
        }
        self.expect_op(")")?;
        if op(self.peek(), "->") {
            return Err(self.refuse_here("a return annotation"));
        }
        self.expect_op(":")?;
        let body = self.block()?;
        Ok(Def { name, params, body })
    }

    fn block(&mut self) -> Result<Vec<Stmt>, Refusal> {
        if self.peek() != &Tok::Newline {
            // `if x: return 1` on one line.
            let s = self.simple()?;
            self.end_line()?;
            return Ok(vec![s]);
        }
        self.next();
        if self.peek() != &Tok::Indent {
            return Err(self.refuse_here("an empty block (expected an indented block)"));
        }
        self.next();
        let mut body = Vec::new();
        while !matches!(self.peek(), Tok::Dedent | Tok::End) {
            body.push(self.statement()?);
        }
        if self.peek() == &Tok::Dedent {
            self.next();
        }
        Ok(body)
    }

    fn end_line(&mut self) -> Result<(), Refusal> {
        if op(self.peek(), ";") {
            return Err(self.refuse_here("';' between statements (one statement a line)"));
        }
        match self.peek() {
            Tok::Newline => {
                self.next();
                Ok(())
            }
            Tok::Dedent | Tok::End => Ok(()),
            _ => Err(self.refuse_here(format!(
                "{} (expected the end of the line)",
                self.describe()
            ))),
        }
    }

    fn statement(&mut self) -> Result<Stmt, Refusal> {
        let Tok::Name(word) = self.peek().clone() else {
            let s = self.simple()?;
            self.end_line()?;
            return Ok(s);
        };
        match word.as_str() {
            "if" => {
                self.next();
                self.if_rest()
            }
            "while" => {
                self.next();
                let cond = self.expr()?;
                self.expect_op(":")?;
                self.loops += 1;
                let body = self.block();
                self.loops -= 1;
                let body = body?;
                if name_is(self.peek(), "else") {
                    return Err(self.refuse_here("a loop's else"));
                }
                Ok(Stmt::While(cond, body))
            }
            "for" => {
                self.next();
                let target = self.for_target()?;
                if !name_is(self.peek(), "in") {
                    return Err(self.refuse_here(format!("{} (expected in)", self.describe())));
                }
                self.next();
                let iterable = self.expr()?;
                self.expect_op(":")?;
                self.loops += 1;
                let body = self.block();
                self.loops -= 1;
                let body = body?;
                if name_is(self.peek(), "else") {
                    return Err(self.refuse_here("a loop's else"));
                }
                Ok(Stmt::For(target, iterable, body))
            }
            "def" => Err(self.refuse_here("a nested def")),
            _ => {
                let s = self.simple()?;
                self.end_line()?;
                Ok(s)
            }
        }
    }

    fn if_rest(&mut self) -> Result<Stmt, Refusal> {
        let cond = self.expr()?;
        self.expect_op(":")?;
        let then = self.block()?;
        let otherwise = if name_is(self.peek(), "elif") {
            self.next();
            vec![self.if_rest()?]
        } else if name_is(self.peek(), "else") {
            self.next();
            self.expect_op(":")?;
            self.block()?
        } else {
            Vec::new()
        };
        Ok(Stmt::If(cond, then, otherwise))
    }

    fn for_target(&mut self) -> Result<Target, Refusal> {
        let first = self.name()?;
        if !op(self.peek(), ",") {
            return Ok(Target::Name(first));
        }
        let mut names = vec![first];
        while self.eat_op(",") {
            names.push(self.name()?);
        }
        Ok(Target::Tuple(names))
    }

    fn simple(&mut self) -> Result<Stmt, Refusal> {
        let pos = self.pos();
        if let Tok::Name(word) = self.peek().clone() {
            match word.as_str() {
                "pass" => {
                    self.next();
                    return Ok(Stmt::Pass);
                }
                "break" | "continue" => {
                    if self.loops == 0 {
                        return Err(self.refuse_here(format!("{word} outside a loop")));
                    }
                    self.next();
                    return Ok(if word == "break" {
                        Stmt::Break
                    } else {
                        Stmt::Continue
                    });
                }
                "return" => {
                    self.next();
                    if matches!(self.peek(), Tok::Newline | Tok::Dedent | Tok::End) {
                        return Ok(Stmt::Return(None));
                    }
                    let value = self.expr_or_tuple()?;
                    return Ok(Stmt::Return(Some(value)));
                }
                "raise" => {
                    self.next();
                    let kind = self.name()?;
                    let message = if self.eat_op("(") {
                        let m = if op(self.peek(), ")") {
                            None
                        } else {
                            Some(self.expr()?)
                        };
                        self.expect_op(")")?;
                        m
                    } else {
                        None
                    };
                    if name_is(self.peek(), "from") {
                        return Err(self.refuse_here("raise ... from"));
                    }
                    return Ok(Stmt::Raise(kind, message));
                }
                "assert" => {
                    self.next();
                    let cond = self.expr()?;
                    let message = if self.eat_op(",") {
                        Some(self.expr()?)
                    } else {
                        None
                    };
                    return Ok(Stmt::Assert(cond, message));
                }
                _ => {}
            }
        }
        // Unpacking assignment: `a, b = ...`.
        if matches!(self.peek(), Tok::Name(_)) && op(self.peek_at(1), ",") {
            let Target::Tuple(names) = self.for_target()? else {
                unreachable!("a comma follows")
            };
            self.expect_op("=")?;
            let value = self.expr_or_tuple()?;
            return Ok(Stmt::Assign(Target::Tuple(names), value));
        }
        let e = self.expr()?;
        for (symbol, code) in AUG {
            if op(self.peek(), symbol) {
                self.next();
                let target = self.target(e, pos)?;
                let value = self.expr()?;
                return Ok(Stmt::AugAssign(target, *code, value));
            }
        }
        if op(self.peek(), "=") {
            self.next();
            let target = self.target(e, pos)?;
            let value = self.expr_or_tuple()?;
            if op(self.peek(), "=") {
                return Err(self.refuse_here("a chained assignment"));
            }
            return Ok(Stmt::Assign(target, value));
        }
        if let Tok::Op(o) = self.peek() {
            if o.ends_with('=') && *o != "==" && *o != "!=" && *o != "<=" && *o != ">=" {
                return Err(self.refuse_here(format!("the operator {o:?}")));
            }
        }
        Ok(Stmt::Expr(e))
    }

    fn target(&self, e: Expr, pos: Pos) -> Result<Target, Refusal> {
        match e {
            Expr::Name(n, _) if n == "self" => {
                Err(Refusal::at("assigning to self", pos.line, pos.col))
            }
            Expr::Name(n, _) if BUILTINS.contains(&n.as_str()) => Err(Refusal::at(
                format!("assigning to the builtin {n:?}"),
                pos.line,
                pos.col,
            )),
            Expr::Name(n, _) => Ok(Target::Name(n)),
            Expr::Attr(obj, name, _) => Ok(Target::Attr(*obj, name)),
            Expr::Index(a, i) => Ok(Target::Index(*a, *i)),
            _ => Err(Refusal::at(
                "assigning to that expression",
                pos.line,
                pos.col,
            )),
        }
    }

    /// `a, b` as a value makes a list (the subset has no tuples).
    fn expr_or_tuple(&mut self) -> Result<Expr, Refusal> {
        let first = self.expr()?;
        if !op(self.peek(), ",") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_op(",") {
            if matches!(self.peek(), Tok::Newline | Tok::Dedent | Tok::End) {
                break;
            }
            items.push(self.expr()?);
        }
        Ok(Expr::List(items))
    }

    fn expr(&mut self) -> Result<Expr, Refusal> {
        if name_is(self.peek(), "lambda") {
            return Err(self.refuse_here("a lambda"));
        }
        let e = self.or()?;
        if name_is(self.peek(), "if") {
            self.next();
            let cond = self.or()?;
            if !name_is(self.peek(), "else") {
                return Err(self.refuse_here("a conditional expression without else"));
            }
            self.next();
            let otherwise = self.expr()?;
            return Ok(Expr::IfElse(
                Box::new(cond),
                Box::new(e),
                Box::new(otherwise),
            ));
        }
        if op(self.peek(), ":=") {
            return Err(self.refuse_here("an assignment expression (:=)"));
        }
        Ok(e)
    }

    fn or(&mut self) -> Result<Expr, Refusal> {
        let mut e = self.and()?;
        while name_is(self.peek(), "or") {
            self.next();
            let r = self.and()?;
            e = Expr::Logic(false, Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, Refusal> {
        let mut e = self.not()?;
        while name_is(self.peek(), "and") {
            self.next();
            let r = self.not()?;
            e = Expr::Logic(true, Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, Refusal> {
        if name_is(self.peek(), "not") {
            self.next();
            let e = self.not()?;
            return Ok(Expr::Unary(1, Box::new(e)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, Refusal> {
        let first = self.arith()?;
        let mut rest = Vec::new();
        loop {
            let code = match self.peek() {
                Tok::Op("==") => 0,
                Tok::Op("!=") => 1,
                Tok::Op("<") => 2,
                Tok::Op("<=") => 3,
                Tok::Op(">") => 4,
                Tok::Op(">=") => 5,
                Tok::Name(n) if n == "in" => 6,
                Tok::Name(n) if n == "not" && name_is(self.peek_at(1), "in") => {
                    self.next();
                    7
                }
                Tok::Name(n) if n == "is" => return Err(self.refuse_here("'is' (use ==)")),
                _ => break,
            };
            self.next();
            rest.push((code, self.arith()?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Expr::Compare(Box::new(first), rest)
        })
    }

    fn arith(&mut self) -> Result<Expr, Refusal> {
        let mut e = self.term()?;
        loop {
            let code = match self.peek() {
                Tok::Op("+") => 0,
                Tok::Op("-") => 1,
                Tok::Op(o @ ("&" | "|" | "^" | "<<" | ">>")) => {
                    return Err(self.refuse_here(format!("the bitwise operator {o:?}")))
                }
                _ => break,
            };
            self.next();
            let r = self.term()?;
            e = Expr::Bin(code, Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn term(&mut self) -> Result<Expr, Refusal> {
        let mut e = self.unary()?;
        loop {
            let code = match self.peek() {
                Tok::Op("*") => 2,
                Tok::Op("/") => 3,
                Tok::Op("//") => 4,
                Tok::Op("%") => 5,
                Tok::Op("@") => return Err(self.refuse_here("the operator '@'")),
                _ => break,
            };
            self.next();
            let r = self.unary()?;
            e = Expr::Bin(code, Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, Refusal> {
        if self.eat_op("-") {
            let e = self.unary()?;
            return Ok(match e {
                Expr::Int(i) => Expr::Int(-i),
                Expr::Float(f) => Expr::Float(-f),
                e => Expr::Unary(0, Box::new(e)),
            });
        }
        if self.eat_op("+") {
            let e = self.unary()?;
            return Ok(Expr::Unary(2, Box::new(e)));
        }
        if op(self.peek(), "~") {
            return Err(self.refuse_here("the operator '~'"));
        }
        self.power()
    }

    fn power(&mut self) -> Result<Expr, Refusal> {
        let base = self.postfix()?;
        if self.eat_op("**") {
            let exp = self.unary()?;
            return Ok(Expr::Bin(6, Box::new(base), Box::new(exp)));
        }
        Ok(base)
    }

    fn args(&mut self) -> Result<Vec<Expr>, Refusal> {
        let mut args = Vec::new();
        while !op(self.peek(), ")") {
            if op(self.peek(), "*") || op(self.peek(), "**") {
                return Err(self.refuse_here("*args or **kwargs in a call"));
            }
            if matches!(self.peek(), Tok::Name(_)) && op(self.peek_at(1), "=") {
                return Err(self.refuse_here("a keyword argument"));
            }
            args.push(self.expr()?);
            if name_is(self.peek(), "for") {
                return Err(self.refuse_here("a generator expression"));
            }
            if !self.eat_op(",") {
                break;
            }
        }
        self.expect_op(")")?;
        Ok(args)
    }

    fn postfix(&mut self) -> Result<Expr, Refusal> {
        let mut e = self.atom()?;
        loop {
            if op(self.peek(), ".") {
                self.next();
                let pos = self.pos();
                let name = self.name()?;
                if self.eat_op("(") {
                    let args = self.args()?;
                    e = Expr::Method(Box::new(e), name, args);
                } else {
                    if matches!(
                        e,
                        Expr::Int(_)
                            | Expr::Float(_)
                            | Expr::Str(_)
                            | Expr::FStr(_)
                            | Expr::List(_)
                            | Expr::Dict(_)
                            | Expr::Const(_)
                    ) {
                        return Err(Refusal::at("an attribute of a literal", pos.line, pos.col));
                    }
                    e = Expr::Attr(Box::new(e), name, pos);
                }
            } else if op(self.peek(), "[") {
                self.next();
                let lo = if op(self.peek(), ":") {
                    None
                } else {
                    Some(Box::new(self.expr()?))
                };
                if self.eat_op(":") {
                    let hi = if op(self.peek(), "]") {
                        None
                    } else {
                        Some(Box::new(self.expr()?))
                    };
                    if op(self.peek(), ":") {
                        return Err(self.refuse_here("a slice step"));
                    }
                    self.expect_op("]")?;
                    e = Expr::Slice(Box::new(e), lo, hi);
                } else {
                    self.expect_op("]")?;
                    let Some(i) = lo else {
                        return Err(self.refuse_here("an empty index"));
                    };
                    e = Expr::Index(Box::new(e), i);
                }
            } else if op(self.peek(), "(") {
                return Err(
                    self.refuse_here("calling a value (only builtins and methods are called)")
                );
            } else {
                return Ok(e);
            }
        }
    }

    fn atom(&mut self) -> Result<Expr, Refusal> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Int(i) => {
                self.next();
                Ok(Expr::Int(i))
            }
            Tok::Float(f) => {
                self.next();
                Ok(Expr::Float(f))
            }
            Tok::Str(s) => {
                self.next();
                let mut text = s;
                // Adjacent literals join.
                while let Tok::Str(more) = self.peek().clone() {
                    self.next();
                    text.push_str(&more);
                }
                Ok(Expr::Str(text))
            }
            Tok::FStr(parts) => {
                self.next();
                let mut pieces = Vec::new();
                for part in parts {
                    pieces.push(match part {
                        FPart::Text(t) => FPiece::Text(t),
                        FPart::Expr(src, line, col) => FPiece::Expr(sub_expr(&src, line, col)?),
                    });
                }
                Ok(Expr::FStr(pieces))
            }
            Tok::Name(n) => {
                match n.as_str() {
                    "None" => {
                        self.next();
                        return Ok(Expr::Const(0));
                    }
                    "True" => {
                        self.next();
                        return Ok(Expr::Const(1));
                    }
                    "False" => {
                        self.next();
                        return Ok(Expr::Const(2));
                    }
                    _ => {}
                }
                self.check_name(&n)?;
                self.next();
                if op(self.peek(), "(") {
                    if !BUILTINS.contains(&n.as_str()) {
                        return Err(Refusal::at(
                            format!("calling {n:?} (only builtins, and methods as obj.name(...))"),
                            pos.line,
                            pos.col,
                        ));
                    }
                    self.next();
                    if n == "isinstance" {
                        // isinstance(x, T): T is one type name, passed as its name.
                        let x = self.expr()?;
                        self.expect_op(",")?;
                        let t = match self.peek().clone() {
                            Tok::Name(t) if TYPES.contains(&t.as_str()) => t,
                            _ => {
                                return Err(self
                                    .refuse_here("isinstance() with anything but one type name"))
                            }
                        };
                        self.next();
                        self.expect_op(")")?;
                        return Ok(Expr::Call(n, vec![x, Expr::Str(t)], pos));
                    }
                    let args = self.args()?;
                    return Ok(Expr::Call(n, args, pos));
                }
                if BUILTINS.contains(&n.as_str()) || TYPES.contains(&n.as_str()) {
                    return Err(Refusal::at(
                        format!("the builtin {n:?} as a value"),
                        pos.line,
                        pos.col,
                    ));
                }
                Ok(Expr::Name(n, pos))
            }
            Tok::Op("(") => {
                self.next();
                if op(self.peek(), ")") {
                    return Err(self.refuse_here("a tuple"));
                }
                let e = self.expr()?;
                if op(self.peek(), ",") {
                    return Err(self.refuse_here("a tuple"));
                }
                if name_is(self.peek(), "for") {
                    return Err(self.refuse_here("a generator expression"));
                }
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Op("[") => {
                self.next();
                let mut items = Vec::new();
                while !op(self.peek(), "]") {
                    items.push(self.expr()?);
                    if name_is(self.peek(), "for") {
                        return Err(self.refuse_here("a list comprehension"));
                    }
                    if !self.eat_op(",") {
                        break;
                    }
                }
                self.expect_op("]")?;
                Ok(Expr::List(items))
            }
            Tok::Op("{") => {
                self.next();
                let mut items = Vec::new();
                while !op(self.peek(), "}") {
                    let k = self.expr()?;
                    if !op(self.peek(), ":") {
                        return Err(self.refuse_here("a set"));
                    }
                    self.next();
                    let v = self.expr()?;
                    if name_is(self.peek(), "for") {
                        return Err(self.refuse_here("a dict comprehension"));
                    }
                    items.push((k, v));
                    if !self.eat_op(",") {
                        break;
                    }
                }
                self.expect_op("}")?;
                Ok(Expr::Dict(items))
            }
            _ => Err(self.refuse_here(self.describe())),
        }
    }
}

const AUG: &[(&str, i32)] = &[
    ("+=", 0),
    ("-=", 1),
    ("*=", 2),
    ("/=", 3),
    ("//=", 4),
    ("%=", 5),
    ("**=", 6),
];

/// An f-string's `{expr}`, parsed on its own.
fn sub_expr(source: &str, line: usize, col: usize) -> Result<Expr, Refusal> {
    let mut tokens = tokenize(source).map_err(|r| Refusal::at(r.construct, line, col))?;
    for t in &mut tokens {
        t.line = line;
        t.col += col - 1;
    }
    let mut p = Parser {
        tokens,
        at: 0,
        loops: 0,
    };
    let e = p.expr()?;
    if !matches!(p.peek(), Tok::Newline | Tok::End) {
        return Err(p.refuse_here("more than one expression in an f-string's {}"));
    }
    Ok(e)
}
