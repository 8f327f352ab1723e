//! Python source to tokens, with `INDENT`/`DEDENT` from leading
//! whitespace and no line ends inside brackets, as Python's tokenizer.

use crate::Refusal;

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A name or keyword.
    Name(String),
    /// An int literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A str literal (escapes resolved).
    Str(String),
    /// An f-string: literal parts and `{expr}` sources, in order.
    FStr(Vec<FPart>),
    /// An operator or punctuation.
    Op(&'static str),
    /// The end of a logical line.
    Newline,
    /// Deeper indentation.
    Indent,
    /// Shallower indentation.
    Dedent,
    /// The end of the source.
    End,
}

/// A piece of an f-string.
#[derive(Debug, Clone, PartialEq)]
pub enum FPart {
    /// Text as is.
    Text(String),
    /// The source of a `{expr}`, with its line and column.
    Expr(String, usize, usize),
}

/// A token and where it starts (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Its line.
    pub line: usize,
    /// Its column.
    pub col: usize,
}

const OPS: [&str; 41] = [
    "**=", "//=", "->", "**", "//", "==", "!=", "<=", ">=", "+=", "-=", "*=", "/=", "%=", "&=",
    "|=", "^=", ">>", "<<", ":=", "+", "-", "*", "/", "%", "<", ">", "=", "(", ")", "[", "]", "{",
    "}", ",", ":", ".", ";", "@", "&", "|",
];

/// Tokenizes `source`.
pub fn tokenize(source: &str) -> Result<Vec<Token>, Refusal> {
    let mut out = Vec::new();
    let mut indents = vec![0usize];
    let mut depth = 0usize; // open brackets
    let lines: Vec<&str> = source.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines[i];
        i += 1;
        let chars: Vec<char> = line.chars().collect();
        let mut c = 0;
        if depth == 0 {
            let mut width = 0;
            while c < chars.len() && (chars[c] == ' ' || chars[c] == '\t') {
                width += if chars[c] == '\t' { 8 - width % 8 } else { 1 };
                c += 1;
            }
            if c >= chars.len() || chars[c] == '#' {
                continue; // blank or comment-only line
            }
            let current = *indents.last().expect("never empty");
            if width > current {
                indents.push(width);
                out.push(Token {
                    tok: Tok::Indent,
                    line: line_no,
                    col: 1,
                });
            } else {
                while width < *indents.last().expect("never empty") {
                    indents.pop();
                    out.push(Token {
                        tok: Tok::Dedent,
                        line: line_no,
                        col: 1,
                    });
                }
                if width != *indents.last().expect("never empty") {
                    return Err(Refusal::at("inconsistent indentation", line_no, c + 1));
                }
            }
        }
        while c < chars.len() {
            let ch = chars[c];
            let col = c + 1;
            if ch == ' ' || ch == '\t' {
                c += 1;
                continue;
            }
            if ch == '#' {
                break;
            }
            if ch == '\\' && c + 1 == chars.len() {
                return Err(Refusal::at("a line continuation with '\\'", line_no, col));
            }
            if ch.is_ascii_digit()
                || (ch == '.' && chars.get(c + 1).is_some_and(char::is_ascii_digit))
            {
                let start = c;
                while c < chars.len()
                    && (chars[c].is_ascii_alphanumeric()
                        || chars[c] == '.'
                        || chars[c] == '_'
                        || ((chars[c] == '+' || chars[c] == '-')
                            && matches!(chars[c - 1], 'e' | 'E')))
                {
                    c += 1;
                }
                let text: String = chars[start..c].iter().filter(|c| **c != '_').collect();
                let tok = if text.contains(['.', 'e', 'E']) && !text.starts_with("0x") {
                    Tok::Float(
                        text.parse()
                            .map_err(|_| Refusal::at("a malformed number", line_no, col))?,
                    )
                } else {
                    Tok::Int(text.parse().map_err(|_| {
                        Refusal::at("an int literal over 64 bits (or not decimal)", line_no, col)
                    })?)
                };
                out.push(Token {
                    tok,
                    line: line_no,
                    col,
                });
                continue;
            }
            if ch.is_alphabetic() || ch == '_' {
                let start = c;
                while c < chars.len() && (chars[c].is_alphanumeric() || chars[c] == '_') {
                    c += 1;
                }
                let word: String = chars[start..c].iter().collect();
                let quote = chars.get(c).copied();
                if matches!(quote, Some('"' | '\'')) {
                    let prefix = word.to_ascii_lowercase();
                    if prefix == "f" {
                        let (text, end) = string(&chars, c, line_no)?;
                        c = end;
                        out.push(Token {
                            tok: Tok::FStr(fparts(&text, line_no, col)?),
                            line: line_no,
                            col,
                        });
                        continue;
                    }
                    return Err(Refusal::at(
                        format!("a string with prefix {word:?}"),
                        line_no,
                        col,
                    ));
                }
                out.push(Token {
                    tok: Tok::Name(word),
                    line: line_no,
                    col,
                });
                continue;
            }
            if ch == '"' || ch == '\'' {
                let (text, end) = string(&chars, c, line_no)?;
                c = end;
                out.push(Token {
                    tok: Tok::Str(text),
                    line: line_no,
                    col,
                });
                continue;
            }
            let rest: String = chars[c..chars.len().min(c + 3)].iter().collect();
            let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
                return Err(Refusal::at(format!("the character {ch:?}"), line_no, col));
            };
            match *op {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth = depth.saturating_sub(1),
                _ => {}
            }
            out.push(Token {
                tok: Tok::Op(op),
                line: line_no,
                col,
            });
            c += op.len();
        }
        if depth == 0 && out.last().is_some_and(|t| t.tok != Tok::Newline) {
            out.push(Token {
                tok: Tok::Newline,
                line: line_no,
                col: chars.len() + 1,
            });
        }
    }
    let end = lines.len() + 1;
    if depth > 0 {
        return Err(Refusal::at("an unclosed bracket", end, 1));
    }
    while indents.len() > 1 {
        indents.pop();
        out.push(Token {
            tok: Tok::Dedent,
            line: end,
            col: 1,
        });
    }
    out.push(Token {
        tok: Tok::End,
        line: end,
        col: 1,
    });
    Ok(out)
}

/// A quoted string starting at `start`; returns its text and the index
/// after the closing quote.
fn string(chars: &[char], start: usize, line: usize) -> Result<(String, usize), Refusal> {
    let quote = chars[start];
    if chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote) {
        return Err(Refusal::at("a triple-quoted string", line, start + 1));
    }
    let mut out = String::new();
    let mut c = start + 1;
    while c < chars.len() {
        let ch = chars[c];
        if ch == quote {
            return Ok((out, c + 1));
        }
        if ch == '\\' {
            let Some(&next) = chars.get(c + 1) else { break };
            out.push(match next {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                '\\' => '\\',
                '\'' => '\'',
                '"' => '"',
                other => {
                    return Err(Refusal::at(format!("the escape \\{other}"), line, c + 1));
                }
            });
            c += 2;
            continue;
        }
        out.push(ch);
        c += 1;
    }
    Err(Refusal::at("an unterminated string", line, start + 1))
}

fn fparts(text: &str, line: usize, col: usize) -> Result<Vec<FPart>, Refusal> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '{' if chars.get(i + 1) == Some(&'{') => {
                literal.push('{');
                i += 2;
            }
            '}' if chars.get(i + 1) == Some(&'}') => {
                literal.push('}');
                i += 2;
            }
            '{' => {
                let end = chars[i..]
                    .iter()
                    .position(|c| *c == '}')
                    .ok_or_else(|| Refusal::at("an f-string '{' without '}'", line, col))?;
                let expr: String = chars[i + 1..i + end].iter().collect();
                if expr.contains([':', '!', '{']) {
                    return Err(Refusal::at(
                        "an f-string format spec or conversion",
                        line,
                        col,
                    ));
                }
                if !literal.is_empty() {
                    parts.push(FPart::Text(std::mem::take(&mut literal)));
                }
                parts.push(FPart::Expr(expr, line, col + i + 2));
                i += end + 1;
            }
            '}' => return Err(Refusal::at("a single '}' in an f-string", line, col)),
            c => {
                literal.push(c);
                i += 1;
            }
        }
    }
    if !literal.is_empty() {
        parts.push(FPart::Text(literal));
    }
    Ok(parts)
}
