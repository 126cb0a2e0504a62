//! SQL expressions, compiled once against a schema into evaluation code over field positions.
//!
//! Expressions are written in SQL syntax and parsed with `sqlparser`. [`Expr::compile`] resolves
//! every field name to its position and checks types, so evaluation never looks a name up.
//! Evaluation follows SQL's NULL rules: most operators yield NULL when an operand is NULL,
//! `AND`/`OR` use three-valued logic, and a filter keeps a record only when its condition is TRUE.
//! Division by zero and integer overflow yield NULL.
//!
//! ```
//! use weir_operators::expr::Expr;
//! use weir_operators::schema::{Field, Schema};
//! use weir_operators::value::{FieldType, Value};
//!
//! let schema = Schema::new(vec![
//!     Field::new("kind", FieldType::String),
//!     Field::new("temperature", FieldType::F64),
//! ]);
//! let hot = Expr::compile("kind = 'reading' AND temperature > 30.0", &schema).unwrap();
//! assert_eq!(hot.output_type(), Some(FieldType::Bool));
//! let row = [Value::Str("reading".into()), Value::F64(31.5)];
//! assert_eq!(hot.eval_bool(&row), Some(true));
//!
//! let f = Expr::compile("temperature * 1.8 + 32", &schema).unwrap();
//! assert_eq!(f.eval(&row), Value::F64(31.5 * 1.8 + 32.0));
//!
//! let err = Expr::compile("temprature > 1", &schema).unwrap_err();
//! assert!(err.message.contains("unknown field `temprature`"));
//! ```

use std::ops::Range;

use smol_str::SmolStr;
use sqlparser::ast::{
    self as sql, BinaryOperator, CastKind, FunctionArg, FunctionArgExpr, FunctionArguments,
    Spanned, UnaryOperator,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use crate::schema::Schema;

mod library;
mod vector;
use crate::time::{format_rfc3339, parse_rfc3339};
use crate::value::{FieldType, Value};

/// A compile error in an expression: what is wrong, where (byte range within the expression
/// text), and what to do about it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExprError {
    /// What is wrong.
    pub message: String,
    /// Byte range in the expression text.
    pub span: Range<usize>,
    /// What to do about it.
    pub help: Option<String>,
}

impl std::fmt::Display for ExprError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.help {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ExprError {}

/// A compiled expression.
#[derive(Clone, Debug)]
pub struct Expr {
    node: Node,
    ty: Option<FieldType>,
}

/// Numeric evaluation domain of an arithmetic or comparison node.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Num {
    I64,
    U64,
    F64,
}

/// How two values are compared.
#[derive(Clone, Copy, Debug, PartialEq)]
enum CmpKind {
    Num(Num),
    Exact,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Func {
    Abs,
    Round,
    Floor,
    Ceil,
    Sqrt,
    Power,
    Ln,
    Exp,
    Lower,
    Upper,
    Trim,
    Length,
    /// The number of elements of a list.
    Cardinality,
    /// Whether a list holds a value.
    ArrayContains,
    /// A value read from JSON text by a path of keys and indexes.
    Json(JsonOut),
}

/// What a `json_get...` function gives.
#[derive(Clone, Copy, Debug, PartialEq)]
enum JsonOut {
    /// The value's JSON text (`json_get`).
    Json,
    /// A string (`json_get_str`).
    Str,
    /// An integer (`json_get_int`).
    Int,
    /// A number (`json_get_float`).
    Float,
    /// A boolean (`json_get_bool`).
    Bool,
    /// An array's elements or an object's keys, counted (`json_length`).
    Length,
    /// Whether the path leads to a value (`json_contains`).
    Contains,
}

const JSON_FUNCTIONS: &[(&str, JsonOut, FieldType)] = &[
    ("json_get", JsonOut::Json, FieldType::Json),
    ("json_get_str", JsonOut::Str, FieldType::String),
    ("json_get_int", JsonOut::Int, FieldType::I64),
    ("json_get_float", JsonOut::Float, FieldType::F64),
    ("json_get_bool", JsonOut::Bool, FieldType::Bool),
    ("json_length", JsonOut::Length, FieldType::U64),
    ("json_contains", JsonOut::Contains, FieldType::Bool),
];

/// Every scalar function's name: Weir's own and the library's.
pub(crate) fn function_names() -> impl Iterator<Item = &'static str> {
    FUNCTIONS.iter().copied().chain(library::names())
}

const FUNCTIONS: &[&str] = &[
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "sqrt",
    "power",
    "pow",
    "ln",
    "exp",
    "lower",
    "upper",
    "trim",
    "length",
    "char_length",
    "concat",
    "coalesce",
    "cardinality",
    "array_contains",
    "json_get",
    "json_get_str",
    "json_get_int",
    "json_get_float",
    "json_get_bool",
    "json_length",
    "json_contains",
];

#[derive(Clone, Debug)]
enum Node {
    Field(usize),
    Const(Value),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    IsNull(Box<Node>, bool),
    Cmp(CmpOp, CmpKind, Box<Node>, Box<Node>),
    Arith(ArithOp, Num, Box<Node>, Box<Node>),
    Neg(Num, Box<Node>),
    Concat(Vec<Node>),
    InList(Box<Node>, Vec<(CmpKind, Node)>, bool),
    Like(Box<Node>, Vec<LikeToken>, bool),
    Case(Vec<(Node, Node)>, Box<Node>),
    Cast(Box<Node>, FieldType),
    Func(Func, Vec<Node>),
    Coalesce(Vec<Node>),
    /// A call of a function from SQL's library (DataFusion's).
    Lib(std::sync::Arc<library::Call>, Vec<Node>),
    /// A timestamp moved by a fixed number of microseconds (`ts + INTERVAL '1 hour'`).
    Shift(Box<Node>, i64),
    /// The difference of two timestamps, in seconds (exact to the microsecond, then f64).
    TsDiff(Box<Node>, Box<Node>),
    /// A list's element by its 1-based position (negative from the end): `tags[1]`.
    Index(Box<Node>, Box<Node>),
}

#[derive(Clone, Debug, PartialEq)]
enum LikeToken {
    Char(char),
    One,
    Any,
}

type Ty = Option<FieldType>;

impl Expr {
    /// Parses and compiles `text` against `schema`.
    pub fn compile(text: &str, schema: &Schema) -> Result<Expr, ExprError> {
        let whole = 0..text.len();
        if text.trim().is_empty() {
            return Err(ExprError {
                message: "the expression is empty".into(),
                span: whole,
                help: Some("write a SQL expression, such as `temperature > 30.0`".into()),
            });
        }
        let parsed = Expr::parse(text)?;
        Expr::compile_parsed(text, &parsed, schema)
    }

    /// Parses `text` as one SQL expression, without compiling it (for callers, such as window
    /// aggregates, that take a SQL form apart before compiling its pieces).
    pub fn parse(text: &str) -> Result<sql::Expr, ExprError> {
        check_operators(text)?;
        Parser::new(&GenericDialect {})
            .try_with_sql(text)
            .and_then(|mut p| {
                let e = p.parse_expr()?;
                let next = p.peek_token();
                if next.token != sqlparser::tokenizer::Token::EOF {
                    return Err(sqlparser::parser::ParserError::ParserError(format!(
                        "Expected: end of expression, found: {} at Line: {}, Column: {}",
                        next.token, next.span.start.line, next.span.start.column
                    )));
                }
                Ok(e)
            })
            .map_err(|e| parse_error(text, e))
    }

    /// Compiles an expression parsed from `text` (or a part of one) against `schema`; error
    /// spans are byte ranges within `text`.
    pub fn compile_parsed(
        text: &str,
        parsed: &sql::Expr,
        schema: &Schema,
    ) -> Result<Expr, ExprError> {
        let mut c = Compiler {
            text,
            schema,
            depth: 0,
        };
        let (node, ty) = c.compile(parsed)?;
        Ok(Expr { node, ty })
    }

    /// The byte range of a parsed (sub)expression within the `text` it was parsed from.
    pub fn span_in(text: &str, parsed: &impl Spanned) -> Range<usize> {
        let schema = Schema::default();
        Compiler {
            text,
            schema: &schema,
            depth: 0,
        }
        .span_of(parsed)
    }

    /// The type of the expression's value (`None` when it is always NULL).
    pub fn output_type(&self) -> Option<FieldType> {
        self.ty
    }

    /// The positions of the fields the expression reads, in order, without repeats.
    pub fn fields(&self) -> Vec<usize> {
        let mut out = Vec::new();
        vector::fields_of(&self.node, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Evaluates the expression over one record's values.
    #[inline]
    pub fn eval(&self, row: &[Value]) -> Value {
        eval(&self.node, row)
    }

    /// Evaluates a boolean expression: `Some(true)`, `Some(false)`, or `None` for NULL.
    #[inline]
    pub fn eval_bool(&self, row: &[Value]) -> Option<bool> {
        eval_bool(&self.node, row)
    }
}

fn parse_error(text: &str, e: sqlparser::parser::ParserError) -> ExprError {
    let msg = e.to_string();
    let msg = msg
        .strip_prefix("sql parser error: ")
        .unwrap_or(&msg)
        .to_string();
    // sqlparser reports "... at Line: L, Column: C"; turn that into a byte offset.
    let mut span = 0..text.len();
    let mut message = msg.clone();
    if let Some(pos) = msg.rfind(" at Line: ") {
        let tail = &msg[pos + " at Line: ".len()..];
        let mut parts = tail.split(", Column: ");
        let line = parts.next().and_then(|l| l.trim().parse::<u64>().ok());
        let col = parts.next().and_then(|c| c.trim().parse::<u64>().ok());
        if let (Some(line), Some(col)) = (line, col) {
            let off = offset_of(text, line, col);
            // One character (not one byte) from there.
            let width = text[off..].chars().next().map_or(0, char::len_utf8);
            span = off..off + width;
            message = msg[..pos].to_string();
        }
    }
    ExprError {
        message: format!("cannot parse the expression: {message}"),
        span,
        help: Some(
            "expressions use SQL syntax: fields by name, strings in 'single quotes', AND/OR/NOT"
                .into(),
        ),
    }
}

/// Byte offset of a 1-based (line, column-in-characters) location.
fn offset_of(text: &str, line: u64, col: u64) -> usize {
    if line == 0 {
        return 0;
    }
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            let c = l
                .char_indices()
                .nth(col.saturating_sub(1) as usize)
                .map(|(b, _)| b)
                .unwrap_or(l.len());
            return offset + c;
        }
        offset += l.len();
    }
    text.len()
}

/// The most operators (and opening parentheses) one expression may have. Expressions are
/// compiled and evaluated by recursion over their tree, whose depth is at most this plus the
/// parser's own nesting limit, so the limit keeps every stack, a worker's included, far from
/// overflowing; longer expressions are refused with a diagnostic instead of crashing.
pub const MAX_OPERATORS: usize = 500;

/// The deepest tree the compiler accepts (operators plus nested parentheses and calls).
const MAX_DEPTH: usize = MAX_OPERATORS + 64;

/// Refuses, before parsing, an expression with more than [`MAX_OPERATORS`] operators, pointing
/// at the first operator past the limit. The tokenizer does not recurse, so this is safe on any
/// input, and the parser then never builds a tree too deep to compile, evaluate or drop.
fn check_operators(text: &str) -> Result<(), ExprError> {
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, text).tokenize_with_location() else {
        // The parser reports the same error with its place.
        return Ok(());
    };
    let mut count = 0usize;
    for t in &tokens {
        let counts = match &t.token {
            Token::Word(w) => matches!(w.keyword, Keyword::AND | Keyword::OR | Keyword::NOT),
            Token::Whitespace(_)
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::Comma
            | Token::RParen
            | Token::Period
            | Token::EOF => false,
            _ => true,
        };
        if counts {
            count += 1;
            if count > MAX_OPERATORS {
                let at = offset_of(text, t.span.start.line, t.span.start.column);
                let end = text[at..]
                    .char_indices()
                    .nth(1)
                    .map_or(text.len(), |(i, _)| at + i);
                return Err(ExprError {
                    message: format!(
                        "the expression has more than {MAX_OPERATORS} operators, Weir's limit"
                    ),
                    span: at..end,
                    help: Some(
                        "split the condition over several filters or maps, or test a field \
                         against a list with `field IN (a, b, c)` instead of a chain of OR"
                            .into(),
                    ),
                });
            }
        }
    }
    Ok(())
}

struct Compiler<'a> {
    text: &'a str,
    schema: &'a Schema,
    /// How deep in the tree the compiler is.
    depth: usize,
}

fn boxed(n: Node) -> Box<Node> {
    Box::new(n)
}

impl Compiler<'_> {
    fn span_of(&self, e: &impl Spanned) -> Range<usize> {
        self.range(e.span())
    }

    fn range(&self, s: sqlparser::tokenizer::Span) -> Range<usize> {
        if s.start.line == 0 {
            return 0..self.text.len();
        }
        let a = offset_of(self.text, s.start.line, s.start.column);
        let b = offset_of(self.text, s.end.line, s.end.column);
        if b > a {
            a..b
        } else {
            a..self.text.len()
        }
    }

    fn err(&self, e: &impl Spanned, message: String, help: Option<String>) -> ExprError {
        ExprError {
            message,
            span: self.span_of(e),
            help,
        }
    }

    fn compile(&mut self, e: &sql::Expr) -> Result<(Node, Ty), ExprError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err(
                e,
                format!("the expression nests deeper than {MAX_DEPTH} levels, Weir's limit"),
                Some("split it over several filters or maps".into()),
            ));
        }
        self.depth += 1;
        // Debug builds spend kilobytes of stack per level here: grow the stack on the heap
        // rather than limit the depth further.
        let r = stacker::maybe_grow(256 << 10, 4 << 20, || self.compile_node(e));
        self.depth -= 1;
        r
    }

    fn compile_node(&mut self, e: &sql::Expr) -> Result<(Node, Ty), ExprError> {
        use sql::Expr as E;
        match e {
            E::Identifier(ident) => self.field(ident),
            E::CompoundFieldAccess { root, access_chain } => {
                // `a.b.c` as the parser may give it: a root and a chain of dotted names.
                let mut parts = vec![];
                match root.as_ref() {
                    E::Identifier(i) => parts.push(i.clone()),
                    // A keyword the parser reads as a call without parentheses (`user`).
                    E::Function(f) if matches!(f.args, sql::FunctionArguments::None) => {
                        if let [sql::ObjectNamePart::Identifier(i)] = f.name.0.as_slice() {
                            parts.push(i.clone());
                        }
                    }
                    _ => {}
                }
                // Dotted names first, then list subscripts (`user.tags[1]`).
                let dots = access_chain
                    .iter()
                    .take_while(|a| matches!(a, sql::AccessExpr::Dot(E::Identifier(_))))
                    .count();
                for a in &access_chain[..dots] {
                    if let sql::AccessExpr::Dot(E::Identifier(i)) = a {
                        parts.push(i.clone());
                    }
                }
                if dots < access_chain.len() && !parts.is_empty() {
                    let mut base = match parts.len() {
                        1 => self.field(&parts[0])?,
                        _ => self.compile_node(&E::CompoundIdentifier(parts))?,
                    };
                    for a in &access_chain[dots..] {
                        base = self.subscript(e, base, a)?;
                    }
                    return Ok(base);
                }
                if parts.len() == access_chain.len() + 1 {
                    self.compile_node(&E::CompoundIdentifier(parts))
                } else {
                    Err(self.err(
                        e,
                        format!("`{e}` is not supported in Weir expressions"),
                        Some("a nested field is read by its dotted path, such as user.id".into()),
                    ))
                }
            }
            E::CompoundIdentifier(parts) => {
                // A nested field, declared by its dotted path (`user.id`).
                let name = parts.iter().map(|p| p.value.as_str()).collect::<Vec<_>>().join(".");
                match self.schema.index_of(&name) {
                    Some(i) => Ok((Node::Field(i), Some(self.schema.fields[i].ty))),
                    None => Err(self.err(
                        e,
                        format!("unknown field `{name}`"),
                        Some(match crate::suggest::did_you_mean(&name, self.schema.names()) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!(
                                "a nested field is read by the dotted path its source declares, such as schema = {{ \"{name}\" = \"string\" }}; the input has: {}",
                                self.schema.names().collect::<Vec<_>>().join(", ")
                            ),
                        }),
                    )),
                }
            }
            E::Nested(inner) => self.compile(inner),
            E::Value(v) => self.literal(v),
            E::TypedString(ts) => {
                let text = match &ts.value.value {
                    sql::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                match target_type(&ts.data_type) {
                    Some(FieldType::Timestamp) => match parse_rfc3339(&text) {
                        Ok(t) => Ok((Node::Const(Value::Ts(t)), Some(FieldType::Timestamp))),
                        Err(m) => Err(self.err(e, m, None)),
                    },
                    _ => Err(self.err(
                        e,
                        format!("typed literals of type {} are not supported", ts.data_type),
                        Some("use CAST('...' AS type) or TIMESTAMP '...'".into()),
                    )),
                }
            }
            E::UnaryOp { op, expr } => {
                let (n, t) = self.compile(expr)?;
                match op {
                    UnaryOperator::Not => {
                        self.expect_bool(expr.as_ref(), t, "NOT")?;
                        Ok((Node::Not(boxed(n)), Some(FieldType::Bool)))
                    }
                    UnaryOperator::Minus => {
                        let num = self.expect_num(expr.as_ref(), t, "unary minus")?;
                        if let Node::Const(v) = &n {
                            let negated = eval(&Node::Neg(num, boxed(Node::Const(v.clone()))), &[]);
                            return Ok((Node::Const(negated), t));
                        }
                        // Negating an unsigned integer gives a signed one.
                        let t = if num == Num::U64 { Some(FieldType::I64) } else { t };
                        Ok((Node::Neg(num, boxed(n)), t))
                    }
                    UnaryOperator::Plus => {
                        self.expect_num(expr.as_ref(), t, "unary plus")?;
                        Ok((n, t))
                    }
                    other => Err(self.err(e, format!("operator `{other}` is not supported"), None)),
                }
            }
            E::BinaryOp { left, op, right } => self.binary(e, left, op, right),
            E::IsNull(inner) => {
                let (n, _) = self.compile(inner)?;
                Ok((Node::IsNull(boxed(n), false), Some(FieldType::Bool)))
            }
            E::IsNotNull(inner) => {
                let (n, _) = self.compile(inner)?;
                Ok((Node::IsNull(boxed(n), true), Some(FieldType::Bool)))
            }
            E::IsTrue(inner) | E::IsFalse(inner) | E::IsNotTrue(inner) | E::IsNotFalse(inner) => {
                let (n, t) = self.compile(inner)?;
                self.expect_bool(inner.as_ref(), t, "IS TRUE/FALSE")?;
                let want = matches!(e, E::IsTrue(_) | E::IsNotFalse(_));
                // x IS TRUE  ==  coalesce(x = true, false)
                let cmp = Node::Cmp(
                    CmpOp::Eq,
                    CmpKind::Exact,
                    boxed(n),
                    boxed(Node::Const(Value::Bool(want))),
                );
                let node = Node::Coalesce(vec![cmp, Node::Const(Value::Bool(false))]);
                let node = if matches!(e, E::IsNotTrue(_) | E::IsNotFalse(_)) {
                    Node::Not(boxed(node))
                } else {
                    node
                };
                Ok((node, Some(FieldType::Bool)))
            }
            E::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (x, tx) = self.compile(expr)?;
                let (l, tl) = self.compile(low)?;
                let (h, th) = self.compile(high)?;
                let (x1, l, k1) = self.comparable(e, x.clone(), tx, l, tl)?;
                let (x2, h, k2) = self.comparable(e, x, tx, h, th)?;
                let ge = Node::Cmp(CmpOp::Ge, k1, boxed(x1), boxed(l));
                let le = Node::Cmp(CmpOp::Le, k2, boxed(x2), boxed(h));
                let both = Node::And(boxed(ge), boxed(le));
                let node = if *negated { Node::Not(boxed(both)) } else { both };
                Ok((node, Some(FieldType::Bool)))
            }
            E::In {
                expr,
                target: sql::InTarget::List(list),
                negated,
                ..
            } => {
                let (mut x, tx) = self.compile(expr)?;
                // Each item is compared as `x = item` would be; only a string constant `x`
                // changes (to a timestamp), the same way for every timestamp item.
                let mut items = Vec::with_capacity(list.len());
                for item in list {
                    let (n, t) = self.compile(item)?;
                    let (xn, n, kind) = self.comparable(item, x.clone(), tx, n, t)?;
                    x = xn;
                    items.push((kind, n));
                }
                Ok((
                    Node::InList(boxed(x), items, *negated),
                    Some(FieldType::Bool),
                ))
            }
            E::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char: None,
            } => {
                let (x, tx) = self.compile(expr)?;
                if tx.is_some() && tx != Some(FieldType::String) {
                    return Err(self.err(
                        expr.as_ref(),
                        format!("LIKE needs a string, but this is {}", type_name(tx)),
                        Some("CAST(x AS VARCHAR) turns a value into a string".into()),
                    ));
                }
                let (p, _) = self.compile(pattern)?;
                let Node::Const(Value::Str(p)) = p else {
                    return Err(self.err(
                        pattern.as_ref(),
                        "the LIKE pattern must be a string literal".into(),
                        Some("write the pattern in single quotes, such as 'dev-%'".into()),
                    ));
                };
                Ok((
                    Node::Like(boxed(x), like_tokens(&p), *negated),
                    Some(FieldType::Bool),
                ))
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut whens = Vec::with_capacity(conditions.len());
                let mut out_ty: Ty = None;
                let mut results = Vec::new();
                let op = match operand {
                    Some(o) => Some(self.compile(o)?),
                    None => None,
                };
                for w in conditions {
                    let (c, tc) = self.compile(&w.condition)?;
                    let cond = match &op {
                        Some((on, ot)) => {
                            let (a, b, k) = self.comparable(&w.condition, on.clone(), *ot, c, tc)?;
                            Node::Cmp(CmpOp::Eq, k, boxed(a), boxed(b))
                        }
                        None => {
                            self.expect_bool(&w.condition, tc, "WHEN")?;
                            c
                        }
                    };
                    let (r, tr) = self.compile(&w.result)?;
                    out_ty = self.unify(&w.result, out_ty, tr)?;
                    results.push((cond, r, tr));
                }
                let (else_node, else_ty) = match else_result {
                    Some(x) => {
                        let (n, t) = self.compile(x)?;
                        out_ty = self.unify(x.as_ref(), out_ty, t)?;
                        (n, t)
                    }
                    None => (Node::Const(Value::Null), None),
                };
                for (c, r, tr) in results {
                    whens.push((c, coerce(r, tr, out_ty)));
                }
                let else_node = coerce(else_node, else_ty, out_ty);
                Ok((Node::Case(whens, boxed(else_node)), out_ty))
            }
            E::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr,
                data_type,
                format: None,
                ..
            } => {
                let (n, _) = self.compile(expr)?;
                let Some(target) = target_type(data_type) else {
                    return Err(self.err(
                        e,
                        format!("cannot cast to {data_type}"),
                        Some(
                            "cast to BIGINT, BIGINT UNSIGNED, DOUBLE, BOOLEAN, VARCHAR or TIMESTAMP"
                                .into(),
                        ),
                    ));
                };
                Ok((Node::Cast(boxed(n), target), Some(target)))
            }
            E::Function(f) => self.function(e, f),
            E::Extract { field, expr, .. } => {
                let part = field.to_string().to_ascii_lowercase();
                let udf = library::lookup("date_part").expect("date_part is in the library");
                let compiled = vec![
                    (Node::Const(Value::Str(SmolStr::new(&part))), Some(FieldType::String)),
                    self.compile(expr)?,
                ];
                self.library_call(e, "extract", udf, compiled)
            }
            E::Substring {
                expr,
                substring_from,
                substring_for,
                shorthand,
                ..
            } => {
                let udf = library::lookup("substr").expect("substr is in the library");
                let mut compiled = vec![self.compile(expr)?];
                match (substring_from, substring_for) {
                    (Some(f), _) => compiled.push(self.compile(f)?),
                    // `SUBSTRING(s FOR n)` starts at the first character.
                    (None, Some(_)) => compiled.push((Node::Const(Value::I64(1)), Some(FieldType::I64))),
                    (None, None) => {}
                }
                if let Some(n) = substring_for {
                    compiled.push(self.compile(n)?);
                }
                let name = if *shorthand { "substr" } else { "substring" };
                self.library_call(e, name, udf, compiled)
            }
            E::Interval(_) => Err(self.err(
                e,
                "an interval is only supported added to or subtracted from a timestamp".into(),
                Some("write `ts + INTERVAL '1 hour'` or `ts - INTERVAL '30 seconds'`".into()),
            )),
            _ => Err(self.err(
                e,
                format!("`{e}` is not supported in Weir expressions"),
                Some("Weir supports fields, literals, arithmetic, comparisons, AND/OR/NOT, IS NULL, BETWEEN, IN, LIKE, CASE, CAST and scalar functions".into()),
            )),
        }
    }

    /// `base[index]`, `base` being a list.
    fn subscript(
        &mut self,
        e: &sql::Expr,
        (base, ty): (Node, Ty),
        access: &sql::AccessExpr,
    ) -> Result<(Node, Ty), ExprError> {
        let sql::AccessExpr::Subscript(sql::Subscript::Index { index }) = access else {
            return Err(self.err(
                e,
                format!("`{e}` is not supported in Weir expressions"),
                Some("a list's element is read by its position, such as tags[1]; a nested field by its dotted path, such as user.id".into()),
            ));
        };
        let Some(FieldType::List(elem)) = ty else {
            return Err(self.err(
                e,
                format!("only a list can be indexed, but this is {}", type_name(ty)),
                Some("declare the field as a list, such as schema = { tags = \"list<string>\" }; json_get reads from json".into()),
            ));
        };
        let (i, ti) = self.compile(index)?;
        if !matches!(ti, Some(FieldType::I64 | FieldType::U64) | None) {
            return Err(self.err(
                index,
                format!(
                    "a list index is a whole number, but this is {}",
                    type_name(ti)
                ),
                Some("positions count from 1; -1 is the last element".into()),
            ));
        }
        Ok((Node::Index(boxed(base), boxed(i)), Some(elem.field_type())))
    }

    fn field(&self, ident: &sql::Ident) -> Result<(Node, Ty), ExprError> {
        let name = ident.value.as_str();
        match self.schema.index_of(name) {
            Some(i) => Ok((Node::Field(i), Some(self.schema.fields[i].ty))),
            None => {
                let mut help = match crate::suggest::did_you_mean(name, self.schema.names()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "the input has: {}",
                        self.schema.names().collect::<Vec<_>>().join(", ")
                    ),
                };
                if ident.quote_style == Some('"') {
                    help.push_str(" String literals take single quotes: '...'.");
                }
                Err(ExprError {
                    message: format!("unknown field `{name}`"),
                    span: self.range(ident.span),
                    help: Some(help),
                })
            }
        }
    }

    fn literal(&self, v: &sql::ValueWithSpan) -> Result<(Node, Ty), ExprError> {
        use sql::Value as V;
        let val = match &v.value {
            V::Number(s, _) => {
                if let Ok(i) = s.parse::<i64>() {
                    Value::I64(i)
                } else if let Ok(u) = s.parse::<u64>() {
                    Value::U64(u)
                } else if let Ok(f) = s.parse::<f64>() {
                    Value::F64(f)
                } else {
                    return Err(self.err(v, format!("`{s}` is not a number Weir can read"), None));
                }
            }
            V::SingleQuotedString(s) => Value::Str(SmolStr::new(s)),
            V::Boolean(b) => Value::Bool(*b),
            V::Null => return Ok((Node::Const(Value::Null), None)),
            V::DoubleQuotedString(s) => {
                return Err(self.err(
                    v,
                    format!("\"{s}\" is a quoted name, not a string"),
                    Some(format!("string literals take single quotes: '{s}'")),
                ))
            }
            other => {
                return Err(self.err(v, format!("literal {other} is not supported"), None));
            }
        };
        let ty = val.field_type();
        Ok((Node::Const(val), ty))
    }

    fn binary(
        &mut self,
        e: &sql::Expr,
        left: &sql::Expr,
        op: &BinaryOperator,
        right: &sql::Expr,
    ) -> Result<(Node, Ty), ExprError> {
        if let (BinaryOperator::Plus | BinaryOperator::Minus, sql::Expr::Interval(iv)) = (op, right)
        {
            let (l, tl) = self.compile(left)?;
            if tl != Some(FieldType::Timestamp) {
                return Err(self.err(
                    left,
                    format!(
                        "an interval is added to a timestamp, but this is {}",
                        type_name(tl)
                    ),
                    Some("CAST(x AS TIMESTAMP) turns a value into a timestamp".into()),
                ));
            }
            let micros = interval_micros(iv).map_err(|m| {
                self.err(
                    right,
                    m,
                    Some("write INTERVAL '1 hour 30 minutes', INTERVAL '5' MINUTE, ...; units: microseconds to weeks".into()),
                )
            })?;
            let by = if *op == BinaryOperator::Minus {
                micros.checked_neg()
            } else {
                Some(micros)
            };
            let by = by.ok_or_else(|| self.err(right, "the interval is too long".into(), None))?;
            if let Node::Const(_) = l {
                return Ok((Node::Const(eval(&Node::Shift(boxed(l), by), &[])), tl));
            }
            return Ok((Node::Shift(boxed(l), by), tl));
        }
        let (l, tl) = self.compile(left)?;
        let (r, tr) = self.compile(right)?;
        let cmp = |o| Some(o);
        let cmp_op = match op {
            BinaryOperator::Eq => cmp(CmpOp::Eq),
            BinaryOperator::NotEq => cmp(CmpOp::Ne),
            BinaryOperator::Lt => cmp(CmpOp::Lt),
            BinaryOperator::LtEq => cmp(CmpOp::Le),
            BinaryOperator::Gt => cmp(CmpOp::Gt),
            BinaryOperator::GtEq => cmp(CmpOp::Ge),
            _ => None,
        };
        if let Some(cop) = cmp_op {
            let (l, r, k) = self.comparable(e, l, tl, r, tr)?;
            return Ok((Node::Cmp(cop, k, boxed(l), boxed(r)), Some(FieldType::Bool)));
        }
        let arith = match op {
            BinaryOperator::Plus => Some(ArithOp::Add),
            BinaryOperator::Minus => Some(ArithOp::Sub),
            BinaryOperator::Multiply => Some(ArithOp::Mul),
            BinaryOperator::Divide => Some(ArithOp::Div),
            BinaryOperator::Modulo => Some(ArithOp::Rem),
            _ => None,
        };
        if aop_is_ts_diff(arith, tl, tr) {
            return Ok((Node::TsDiff(boxed(l), boxed(r)), Some(FieldType::F64)));
        }
        if let Some(aop) = arith {
            let nl = self.expect_num(left, tl, &op.to_string())?;
            let nr = self.expect_num(right, tr, &op.to_string())?;
            let (num, l, r) = unify_num(nl, l, tl, nr, r, tr);
            return Ok((
                Node::Arith(aop, num, boxed(l), boxed(r)),
                Some(num_type(num)),
            ));
        }
        match op {
            BinaryOperator::And | BinaryOperator::Or => {
                self.expect_bool(left, tl, &op.to_string())?;
                self.expect_bool(right, tr, &op.to_string())?;
                let node = if *op == BinaryOperator::And {
                    Node::And(boxed(l), boxed(r))
                } else {
                    Node::Or(boxed(l), boxed(r))
                };
                Ok((node, Some(FieldType::Bool)))
            }
            BinaryOperator::StringConcat => Ok((Node::Concat(vec![l, r]), Some(FieldType::String))),
            other => Err(self.err(e, format!("operator `{other}` is not supported"), None)),
        }
    }

    /// Checks that two operands can be compared and returns them, constants coerced.
    fn comparable(
        &self,
        e: &impl Spanned,
        l: Node,
        tl: Ty,
        r: Node,
        tr: Ty,
    ) -> Result<(Node, Node, CmpKind), ExprError> {
        match (tl, tr) {
            (None, _) | (_, None) => Ok((l, r, CmpKind::Exact)),
            (Some(a), Some(b)) if a.is_numeric() && b.is_numeric() => {
                let (num, l, r) = unify_num(num_of(a), l, tl, num_of(b), r, tr);
                Ok((l, r, CmpKind::Num(num)))
            }
            (Some(a), Some(b)) if a == b => Ok((l, r, CmpKind::Exact)),
            (Some(FieldType::Timestamp), Some(FieldType::String)) => {
                let r = self.ts_const(e, r)?;
                Ok((l, r, CmpKind::Exact))
            }
            (Some(FieldType::String), Some(FieldType::Timestamp)) => {
                let l = self.ts_const(e, l)?;
                Ok((l, r, CmpKind::Exact))
            }
            (Some(a), Some(b)) => Err(self.err(
                e,
                format!("cannot compare {a} with {b}"),
                Some(match (a, b) {
                    (FieldType::String, _) | (_, FieldType::String) => {
                        "compare strings with strings ('...') and numbers with numbers, or CAST one side".into()
                    }
                    _ => "CAST one side to the other's type".into(),
                }),
            )),
        }
    }

    fn ts_const(&self, e: &impl Spanned, n: Node) -> Result<Node, ExprError> {
        match n {
            Node::Const(Value::Str(s)) => parse_rfc3339(&s)
                .map(|t| Node::Const(Value::Ts(t)))
                .map_err(|m| {
                    self.err(
                        e,
                        m,
                        Some("write timestamps as RFC 3339, such as '2026-01-01T00:00:00Z'".into()),
                    )
                }),
            _ => Err(self.err(
                e,
                "cannot compare a timestamp with a string field".into(),
                Some("CAST(field AS TIMESTAMP) converts an RFC 3339 string".into()),
            )),
        }
    }

    fn unify(&self, e: &impl Spanned, a: Ty, b: Ty) -> Result<Ty, ExprError> {
        match (a, b) {
            (None, x) | (x, None) => Ok(x),
            (Some(x), Some(y)) if x == y => Ok(Some(x)),
            (Some(x), Some(y)) if x.is_numeric() && y.is_numeric() => {
                Ok(Some(num_type(common_num(num_of(x), num_of(y)))))
            }
            (Some(x), Some(y)) => Err(self.err(
                e,
                format!("the branches disagree on type: {x} and {y}"),
                Some("CAST the branches to one type".into()),
            )),
        }
    }

    fn expect_bool(&self, e: &impl Spanned, t: Ty, what: &str) -> Result<(), ExprError> {
        match t {
            None | Some(FieldType::Bool) => Ok(()),
            Some(other) => Err(self.err(
                e,
                format!("{what} needs a boolean, but this is {other}"),
                Some("compare the value, such as `x > 0` or `x = 'on'`".into()),
            )),
        }
    }

    fn expect_num(&self, e: &impl Spanned, t: Ty, what: &str) -> Result<Num, ExprError> {
        match t {
            None => Ok(Num::I64),
            Some(x) if x.is_numeric() => Ok(num_of(x)),
            Some(other) => Err(self.err(
                e,
                format!("`{what}` needs numbers, but this is {other}"),
                Some(if other == FieldType::String {
                    "CAST(x AS DOUBLE) turns a string into a number; `||` joins strings".into()
                } else {
                    "use a numeric field".into()
                }),
            )),
        }
    }

    fn function(&mut self, e: &sql::Expr, f: &sql::Function) -> Result<(Node, Ty), ExprError> {
        let name = f.name.to_string().to_ascii_lowercase();
        let args: Vec<&sql::Expr> = match &f.args {
            FunctionArguments::List(list)
                if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
            {
                let mut v = Vec::new();
                for a in &list.args {
                    match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => v.push(x),
                        _ => {
                            return Err(self.err(
                                e,
                                format!("`{name}` takes plain arguments"),
                                None,
                            ))
                        }
                    }
                }
                v
            }
            FunctionArguments::None => Vec::new(),
            _ => return Err(self.err(e, format!("`{name}(...)` form is not supported"), None)),
        };
        let mut compiled = Vec::with_capacity(args.len());
        for a in &args {
            compiled.push(self.compile(a)?);
        }
        let arity = |n: usize| -> Result<(), ExprError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(self.err(
                    e,
                    format!(
                        "`{name}` takes {n} argument{}, not {}",
                        if n == 1 { "" } else { "s" },
                        args.len()
                    ),
                    None,
                ))
            }
        };
        let numeric = |f: Func, out_f64: bool, compiled: Vec<(Node, Ty)>, this: &Self| {
            let mut nodes = Vec::new();
            let mut ty = None;
            for (i, (n, t)) in compiled.into_iter().enumerate() {
                let num = this.expect_num(args[i], t, &name)?;
                ty = Some(if out_f64 {
                    FieldType::F64
                } else {
                    num_type(num)
                });
                nodes.push(if out_f64 {
                    Node::Cast(boxed(n), FieldType::F64)
                } else {
                    n
                });
            }
            Ok((Node::Func(f, nodes), ty))
        };
        let stringy = |f: Func, out: FieldType, compiled: Vec<(Node, Ty)>, this: &Self| {
            let (n, t) = compiled.into_iter().next().expect("arity checked");
            if t.is_some() && t != Some(FieldType::String) {
                return Err(this.err(
                    args[0],
                    format!("`{name}` needs a string, but this is {}", type_name(t)),
                    Some("CAST(x AS VARCHAR) turns a value into a string".into()),
                ));
            }
            Ok((Node::Func(f, vec![n]), Some(out)))
        };
        match name.as_str() {
            "abs" => {
                arity(1)?;
                numeric(Func::Abs, false, compiled, self)
            }
            "round" => {
                if args.len() == 2 {
                    let (x, tx) = compiled[0].clone();
                    let (d, td) = compiled[1].clone();
                    self.expect_num(args[0], tx, "round")?;
                    if !matches!(td, Some(FieldType::I64) | Some(FieldType::U64)) {
                        return Err(self.err(
                            args[1],
                            "round's second argument is a whole number of decimal places".into(),
                            None,
                        ));
                    }
                    return Ok((
                        Node::Func(
                            Func::Round,
                            vec![
                                Node::Cast(boxed(x), FieldType::F64),
                                Node::Cast(boxed(d), FieldType::I64),
                            ],
                        ),
                        Some(FieldType::F64),
                    ));
                }
                if args.len() != 1 {
                    return Err(self.err(
                        e,
                        format!("`round` takes 1 or 2 arguments, not {}", args.len()),
                        Some("round(x) rounds to a whole number, round(x, 2) to 2 decimal places".into()),
                    ));
                }
                numeric(Func::Round, true, compiled, self)
            }
            "floor" | "ceil" | "ceiling" | "sqrt" | "ln" | "exp" => {
                arity(1)?;
                let f = match name.as_str() {
                    "floor" => Func::Floor,
                    "ceil" | "ceiling" => Func::Ceil,
                    "sqrt" => Func::Sqrt,
                    "ln" => Func::Ln,
                    _ => Func::Exp,
                };
                numeric(f, true, compiled, self)
            }
            "power" | "pow" => {
                arity(2)?;
                numeric(Func::Power, true, compiled, self)
            }
            "lower" | "upper" | "trim" => {
                arity(1)?;
                let f = match name.as_str() {
                    "lower" => Func::Lower,
                    "upper" => Func::Upper,
                    _ => Func::Trim,
                };
                stringy(f, FieldType::String, compiled, self)
            }
            "length" | "char_length" => {
                arity(1)?;
                stringy(Func::Length, FieldType::I64, compiled, self)
            }
            "cardinality" => {
                arity(1)?;
                let (n, t) = compiled.into_iter().next().expect("arity checked");
                if !matches!(t, Some(FieldType::List(_)) | None) {
                    return Err(self.err(
                        args[0],
                        format!("`cardinality` counts a list's elements, but this is {}", type_name(t)),
                        Some("json_length counts a JSON array's elements; length a string's characters".into()),
                    ));
                }
                Ok((Node::Func(Func::Cardinality, vec![n]), Some(FieldType::U64)))
            }
            "array_contains" => {
                arity(2)?;
                let mut it = compiled.into_iter();
                let ((l, tl), (x, tx)) = (it.next().expect("arity"), it.next().expect("arity"));
                let Some(FieldType::List(elem)) = tl else {
                    return Err(self.err(
                        args[0],
                        format!("`array_contains` looks in a list, but this is {}", type_name(tl)),
                        None,
                    ));
                };
                let et = elem.field_type();
                let comparable = tx.is_none()
                    || tx == Some(et)
                    || tx.is_some_and(|t| t.is_numeric() && et.is_numeric());
                if !comparable {
                    return Err(self.err(
                        args[1],
                        format!("a list<{et}> cannot hold {}", type_name(tx)),
                        Some(format!("look for a value of type {et}, or CAST it")),
                    ));
                }
                Ok((Node::Func(Func::ArrayContains, vec![l, x]), Some(FieldType::Bool)))
            }
            j if JSON_FUNCTIONS.iter().any(|(n, ..)| *n == j) => {
                let &(_, out, ty) = JSON_FUNCTIONS.iter().find(|(n, ..)| *n == j).expect("found");
                if args.is_empty() {
                    return Err(self.err(
                        e,
                        format!("`{name}` takes JSON text and then keys and positions"),
                        Some(format!("{name}(payload, 'sensor', 'readings', 0)")),
                    ));
                }
                for (k, (_, t)) in compiled.iter().enumerate() {
                    let ok = match k {
                        0 => matches!(t, Some(FieldType::Json | FieldType::String) | None),
                        _ => matches!(t, Some(FieldType::String | FieldType::I64 | FieldType::U64) | None),
                    };
                    if !ok {
                        return Err(self.err(
                            args[k],
                            match k {
                                0 => format!("`{name}` reads JSON text (a json or string field), but this is {}", type_name(*t)),
                                _ => format!("a JSON path step is a key (string) or a 0-based array position (integer), but this is {}", type_name(*t)),
                            },
                            None,
                        ));
                    }
                }
                Ok((
                    Node::Func(Func::Json(out), compiled.into_iter().map(|(n, _)| n).collect()),
                    Some(ty),
                ))
            }
            "concat" => Ok((
                Node::Concat(compiled.into_iter().map(|(n, _)| n).collect()),
                Some(FieldType::String),
            )),
            "coalesce" => {
                if args.is_empty() {
                    return Err(self.err(e, "`coalesce` takes at least one argument".into(), None));
                }
                let mut ty = None;
                for (i, (_, t)) in compiled.iter().enumerate() {
                    ty = self.unify(args[i], ty, *t)?;
                }
                let nodes = compiled
                    .into_iter()
                    .map(|(n, t)| coerce(n, t, ty))
                    .collect();
                Ok((Node::Coalesce(nodes), ty))
            }
            _ if library::REFUSED.contains(&name.as_str()) => Err(self.err(
                e,
                format!("`{name}` is not available in Weir expressions"),
                Some("a pipeline's results must not depend on when it runs (a replay gives the live run's results): use the event time, or a field".into()),
            )),
            _ => {
                let Some(udf) = library::lookup(&name) else {
                    return Err(self.err(
                        e,
                        format!("unknown function `{name}`"),
                        Some(
                            match crate::suggest::did_you_mean(
                                &name,
                                FUNCTIONS.iter().copied().chain(library::names()),
                            ) {
                                Some(s) => format!("did you mean `{s}`?"),
                                None => "README.md lists the functions (Expressions)".to_string(),
                            },
                        ),
                    ));
                };
                self.library_call(e, &name, udf, compiled)
            }
        }
    }
}

impl Compiler<'_> {
    /// Types a call of a library function over compiled arguments.
    fn library_call(
        &self,
        e: &sql::Expr,
        name: &str,
        udf: std::sync::Arc<datafusion_expr::ScalarUDF>,
        compiled: Vec<(Node, Ty)>,
    ) -> Result<(Node, Ty), ExprError> {
        let args: Vec<library::Arg> = compiled
            .iter()
            .map(|(n, t)| library::Arg {
                ty: *t,
                value: match n {
                    Node::Const(v) => Some(v),
                    _ => None,
                },
            })
            .collect();
        let fail = |(message, help): (String, Option<String>)| {
            let mut err = self.err(e, message, help);
            // SUBSTRING and EXTRACT spans start at their first argument: widen them to the
            // call.
            let at = err.span.start;
            if !self.text[at..].to_ascii_lowercase().starts_with(name) {
                if let Some(k) = self.text[..at].to_ascii_lowercase().rfind(name) {
                    err.span.start = k;
                }
            }
            err
        };
        let call = library::Call::plan(name, udf, &args).map_err(fail)?;
        call.check_constants(&args).map_err(fail)?;
        let ty = Some(call.out);
        let nodes: Vec<Node> = compiled.into_iter().map(|(n, _)| n).collect();
        let node = Node::Lib(std::sync::Arc::new(call), nodes);
        // A call of constants is evaluated once, now.
        if let Node::Lib(_, args) = &node {
            if args.iter().all(|a| matches!(a, Node::Const(_))) {
                return Ok((Node::Const(eval(&node, &[])), ty));
            }
        }
        Ok((node, ty))
    }
}

/// The length of an interval literal of fixed length, in microseconds.
fn interval_micros(iv: &sql::Interval) -> Result<i64, String> {
    let text = match iv.value.as_ref() {
        sql::Expr::Value(v) => match &v.value {
            sql::Value::SingleQuotedString(s) => s.clone(),
            sql::Value::Number(n, _) => n.clone(),
            other => other.to_string(),
        },
        other => {
            return Err(format!(
                "`{other}` is not an interval: write it as a quoted string"
            ))
        }
    };
    let text = match &iv.leading_field {
        Some(f) if iv.last_field.is_none() => format!("{text} {f}"),
        Some(_) => return Err("interval ranges (`... TO ...`) are not supported".into()),
        None => text,
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(2) {
        return Err(format!(
            "`{text}` is not an interval: write a number and a unit, e.g. '1 hour'"
        ));
    }
    let mut total: i64 = 0;
    for pair in words.chunks(2) {
        let n: f64 = pair[0]
            .parse()
            .map_err(|_| format!("`{}` is not a number", pair[0]))?;
        let unit = pair[1].to_ascii_lowercase();
        let per: f64 = match unit.as_str() {
            "us" => 1.0,
            "ms" => 1e3,
            u => match u.trim_end_matches('s') {
                "microsecond" => 1.0,
                "millisecond" => 1e3,
                "second" | "sec" => 1e6,
                "minute" | "min" => 60e6,
                "hour" | "h" => 3600e6,
                "day" => 86_400e6,
                "week" => 604_800e6,
                "month" | "year" => {
                    return Err(format!("`{}` has no fixed length in microseconds", pair[1]))
                }
                _ => return Err(format!("unknown interval unit `{}`", pair[1])),
            },
        };
        let us = n * per;
        if !us.is_finite() || us.abs() > 3.2e19 {
            return Err("the interval is too long".into());
        }
        total = total
            .checked_add(us.round() as i64)
            .ok_or_else(|| "the interval is too long".to_string())?;
    }
    Ok(total)
}

fn type_name(t: Ty) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "NULL".into())
}

fn target_type(dt: &sql::DataType) -> Option<FieldType> {
    let s = dt.to_string().to_ascii_lowercase();
    Some(match s.as_str() {
        "i64" | "bigint" | "int" | "integer" | "int64" | "long" | "smallint" | "tinyint" => {
            FieldType::I64
        }
        "u64" | "bigint unsigned" | "ubigint" | "uint64" | "unsigned bigint" => FieldType::U64,
        "f64" | "double" | "double precision" | "float" | "float64" | "real" | "float8" => {
            FieldType::F64
        }
        "bool" | "boolean" => FieldType::Bool,
        "string" | "varchar" | "text" | "char" => FieldType::String,
        "timestamp" => FieldType::Timestamp,
        "json" => FieldType::Json,
        _ if s.starts_with("varchar") || s.starts_with("char") => FieldType::String,
        _ => return None,
    })
}

fn num_of(t: FieldType) -> Num {
    match t {
        FieldType::U64 => Num::U64,
        FieldType::F64 => Num::F64,
        _ => Num::I64,
    }
}

fn num_type(n: Num) -> FieldType {
    match n {
        Num::I64 => FieldType::I64,
        Num::U64 => FieldType::U64,
        Num::F64 => FieldType::F64,
    }
}

fn common_num(a: Num, b: Num) -> Num {
    match (a, b) {
        (Num::F64, _) | (_, Num::F64) => Num::F64,
        (Num::U64, Num::U64) => Num::U64,
        _ => Num::I64,
    }
}

/// Unifies two numeric operands; a non-negative integer constant next to a u64 becomes u64.
fn unify_num(a: Num, l: Node, tl: Ty, b: Num, r: Node, tr: Ty) -> (Num, Node, Node) {
    let is_uconst = |n: &Node| matches!(n, Node::Const(Value::I64(v)) if *v >= 0);
    let (a, l) = if a == Num::I64 && b == Num::U64 && is_uconst(&l) {
        (Num::U64, coerce(l, tl, Some(FieldType::U64)))
    } else {
        (a, l)
    };
    let (b, r) = if b == Num::I64 && a == Num::U64 && is_uconst(&r) {
        (Num::U64, coerce(r, tr, Some(FieldType::U64)))
    } else {
        (b, r)
    };
    (common_num(a, b), l, r)
}

/// Wraps `n` in a cast to `to` when its type differs (constants are converted now).
fn coerce(n: Node, from: Ty, to: Ty) -> Node {
    match (from, to) {
        (Some(f), Some(t)) if f != t => {
            let cast = Node::Cast(boxed(n), t);
            if let Node::Cast(inner, _) = &cast {
                if let Node::Const(_) = **inner {
                    return Node::Const(eval(&cast, &[]));
                }
            }
            cast
        }
        _ => n,
    }
}

fn like_tokens(p: &str) -> Vec<LikeToken> {
    p.chars()
        .map(|c| match c {
            '%' => LikeToken::Any,
            '_' => LikeToken::One,
            c => LikeToken::Char(c),
        })
        .collect()
}

fn like_match(p: &[LikeToken], s: &str) -> bool {
    // Iterative wildcard matching with backtracking to the last `%`.
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(LikeToken::Any) => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(LikeToken::One) => {
                pi += 1;
                si += 1;
            }
            Some(LikeToken::Char(c)) if *c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|t| *t == LikeToken::Any)
}

// ---- evaluation -------------------------------------------------------------------------------

/// Evaluates `n`, borrowing fields and constants instead of copying them.
#[inline]
fn eval_ref<'a>(n: &'a Node, row: &'a [Value], tmp: &'a mut Value) -> &'a Value {
    match n {
        Node::Field(i) => &row[*i],
        Node::Const(v) => v,
        other => {
            *tmp = eval(other, row);
            tmp
        }
    }
}

#[inline]
fn eval_bool(n: &Node, row: &[Value]) -> Option<bool> {
    match n {
        Node::Field(i) => row[*i].as_bool(),
        Node::Const(v) => v.as_bool(),
        Node::Not(x) => eval_bool(x, row).map(|b| !b),
        Node::And(a, b) => match eval_bool(a, row) {
            Some(false) => Some(false),
            Some(true) => eval_bool(b, row),
            None => match eval_bool(b, row) {
                Some(false) => Some(false),
                _ => None,
            },
        },
        Node::Or(a, b) => match eval_bool(a, row) {
            Some(true) => Some(true),
            Some(false) => eval_bool(b, row),
            None => match eval_bool(b, row) {
                Some(true) => Some(true),
                _ => None,
            },
        },
        Node::IsNull(x, negated) => {
            let mut t = Value::Null;
            Some(eval_ref(x, row, &mut t).is_null() != *negated)
        }
        Node::Cmp(op, kind, a, b) => {
            let (mut ta, mut tb) = (Value::Null, Value::Null);
            let va = eval_ref(a, row, &mut ta);
            let vb = eval_ref(b, row, &mut tb);
            compare(*kind, va, vb).map(|o| apply_cmp(*op, o))
        }
        Node::InList(x, items, negated) => {
            let mut t = Value::Null;
            let v = eval_ref(x, row, &mut t);
            if v.is_null() {
                return None;
            }
            let mut saw_null = false;
            for (kind, item) in items {
                let mut ti = Value::Null;
                match compare(*kind, v, eval_ref(item, row, &mut ti)) {
                    Some(std::cmp::Ordering::Equal) => return Some(!negated),
                    None => saw_null = true,
                    _ => {}
                }
            }
            if saw_null {
                None
            } else {
                Some(*negated)
            }
        }
        Node::Like(x, p, negated) => {
            let mut t = Value::Null;
            eval_ref(x, row, &mut t)
                .as_str()
                .map(|s| like_match(p, s) != *negated)
        }
        other => eval(other, row).as_bool(),
    }
}

#[inline]
fn apply_cmp(op: CmpOp, o: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        CmpOp::Eq => o == Equal,
        CmpOp::Ne => o != Equal,
        CmpOp::Lt => o == Less,
        CmpOp::Le => o != Greater,
        CmpOp::Gt => o == Greater,
        CmpOp::Ge => o != Less,
    }
}

#[inline]
fn compare(kind: CmpKind, a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    if a.is_null() || b.is_null() {
        return None;
    }
    match kind {
        CmpKind::Num(Num::F64) => {
            let (x, y) = (a.as_f64()?, b.as_f64()?);
            x.partial_cmp(&y)
        }
        _ => Some(a.cmp(b)),
    }
}

/// Whether a subtraction is of two timestamps (whose difference is in seconds).
fn aop_is_ts_diff(op: Option<ArithOp>, tl: Ty, tr: Ty) -> bool {
    matches!(op, Some(ArithOp::Sub))
        && tl == Some(FieldType::Timestamp)
        && tr == Some(FieldType::Timestamp)
}

fn eval(n: &Node, row: &[Value]) -> Value {
    match n {
        Node::Field(i) => row[*i].clone(),
        Node::Const(v) => v.clone(),
        Node::Not(_)
        | Node::And(..)
        | Node::Or(..)
        | Node::IsNull(..)
        | Node::Cmp(..)
        | Node::InList(..)
        | Node::Like(..) => match eval_bool(n, row) {
            Some(b) => Value::Bool(b),
            None => Value::Null,
        },
        Node::Arith(op, num, a, b) => {
            let (mut ta, mut tb) = (Value::Null, Value::Null);
            let va = eval_ref(a, row, &mut ta);
            let vb = eval_ref(b, row, &mut tb);
            arith(*op, *num, va, vb)
        }
        Node::Neg(num, x) => {
            let mut t = Value::Null;
            let v = eval_ref(x, row, &mut t);
            match num {
                Num::F64 => v.as_f64().map(|f| Value::F64(-f)).unwrap_or(Value::Null),
                Num::I64 => v
                    .as_i64()
                    .and_then(i64::checked_neg)
                    .map(Value::I64)
                    .unwrap_or(Value::Null),
                Num::U64 => v
                    .as_u64()
                    .and_then(|u| 0i64.checked_sub_unsigned(u))
                    .map(Value::I64)
                    .unwrap_or(Value::Null),
            }
        }
        Node::Concat(parts) => {
            let mut s = String::new();
            for p in parts {
                let mut t = Value::Null;
                match eval_ref(p, row, &mut t) {
                    Value::Null => {}
                    Value::Str(x) => s.push_str(x),
                    other => s.push_str(&other.to_string()),
                }
            }
            Value::Str(SmolStr::new(s))
        }
        Node::Case(whens, otherwise) => {
            for (c, r) in whens {
                if eval_bool(c, row) == Some(true) {
                    return eval(r, row);
                }
            }
            eval(otherwise, row)
        }
        Node::Cast(x, to) => {
            let mut t = Value::Null;
            cast(eval_ref(x, row, &mut t), *to)
        }
        Node::Coalesce(items) => {
            for i in items {
                let v = eval(i, row);
                if !v.is_null() {
                    return v;
                }
            }
            Value::Null
        }
        Node::Func(f, args) => func(*f, args, row),
        Node::Lib(call, args) => {
            let values: Vec<Result<arrow::array::ArrayRef, Value>> =
                args.iter().map(|a| Err(eval(a, row))).collect();
            crate::chunk::value_at(&call.eval(&values, 1), 0)
        }
        Node::TsDiff(a, b) => match (eval(a, row), eval(b, row)) {
            (Value::Ts(a), Value::Ts(b)) => a
                .checked_sub(b)
                .map(|d| Value::F64(d as f64 / 1e6))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        },
        Node::Shift(x, by) => {
            let mut t = Value::Null;
            match eval_ref(x, row, &mut t) {
                Value::Ts(ts) => ts.checked_add(*by).map(Value::Ts).unwrap_or(Value::Null),
                _ => Value::Null,
            }
        }
        Node::Index(list, at) => {
            let (mut tl, mut ti) = (Value::Null, Value::Null);
            let (Value::List(items), Some(k)) = (
                eval_ref(list, row, &mut tl),
                eval_ref(at, row, &mut ti).as_i64(),
            ) else {
                return Value::Null;
            };
            let n = items.len() as i64;
            let k = if k < 0 { n + k } else { k - 1 };
            match (0..n).contains(&k) {
                true => items[k as usize].clone(),
                false => Value::Null,
            }
        }
    }
}

fn arith(op: ArithOp, num: Num, a: &Value, b: &Value) -> Value {
    match num {
        Num::F64 => {
            let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                return Value::Null;
            };
            let r = match op {
                ArithOp::Add => x + y,
                ArithOp::Sub => x - y,
                ArithOp::Mul => x * y,
                ArithOp::Div if y == 0.0 => return Value::Null,
                ArithOp::Div => x / y,
                ArithOp::Rem if y == 0.0 => return Value::Null,
                ArithOp::Rem => x % y,
            };
            Value::F64(r)
        }
        Num::I64 => {
            let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) else {
                return Value::Null;
            };
            checked_i64(op, x, y).map(Value::I64).unwrap_or(Value::Null)
        }
        Num::U64 => {
            let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) else {
                return Value::Null;
            };
            checked_u64(op, x, y).map(Value::U64).unwrap_or(Value::Null)
        }
    }
}

#[inline]
/// Integer arithmetic; `None` (NULL) on overflow and division by zero.
fn checked_i64(op: ArithOp, a: i64, b: i64) -> Option<i64> {
    match op {
        ArithOp::Add => a.checked_add(b),
        ArithOp::Sub => a.checked_sub(b),
        ArithOp::Mul => a.checked_mul(b),
        ArithOp::Div => a.checked_div(b),
        ArithOp::Rem => a.checked_rem(b),
    }
}

#[inline]
/// Unsigned arithmetic; `None` (NULL) on overflow and division by zero.
fn checked_u64(op: ArithOp, a: u64, b: u64) -> Option<u64> {
    match op {
        ArithOp::Add => a.checked_add(b),
        ArithOp::Sub => a.checked_sub(b),
        ArithOp::Mul => a.checked_mul(b),
        ArithOp::Div => a.checked_div(b),
        ArithOp::Rem => a.checked_rem(b),
    }
}

/// Converts a value to `to`; a value that does not convert becomes NULL.
pub fn cast(v: &Value, to: FieldType) -> Value {
    if v.field_type() == Some(to) {
        return v.clone();
    }
    match (v, to) {
        (Value::Null, _) => Value::Null,
        (_, FieldType::String) => match v {
            Value::Ts(t) => Value::Str(SmolStr::new(format_rfc3339(*t))),
            other => Value::Str(smol_str::format_smolstr!("{other}")),
        },
        (Value::Str(s), FieldType::I64) => s.trim().parse().map(Value::I64).unwrap_or(Value::Null),
        (Value::Str(s), FieldType::U64) => s.trim().parse().map(Value::U64).unwrap_or(Value::Null),
        (Value::Str(s), FieldType::F64) => s.trim().parse().map(Value::F64).unwrap_or(Value::Null),
        (Value::Str(s), FieldType::Bool) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::Null,
        },
        (Value::Str(s), FieldType::Timestamp) => {
            parse_rfc3339(s).map(Value::Ts).unwrap_or(Value::Null)
        }
        (Value::Bool(b), FieldType::I64) => Value::I64(*b as i64),
        (Value::Bool(b), FieldType::U64) => Value::U64(*b as u64),
        (Value::Bool(b), FieldType::F64) => Value::F64(*b as u8 as f64),
        (_, FieldType::I64) => match v {
            Value::F64(f) if f.is_finite() && *f >= i64::MIN as f64 && *f < i64::MAX as f64 => {
                Value::I64(f.trunc() as i64)
            }
            Value::Ts(t) => Value::I64(t.div_euclid(1_000_000)),
            other => other.as_i64().map(Value::I64).unwrap_or(Value::Null),
        },
        (_, FieldType::U64) => match v {
            Value::F64(f) if f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64 => {
                Value::U64(f.trunc() as u64)
            }
            Value::Ts(t) => u64::try_from(t.div_euclid(1_000_000))
                .map(Value::U64)
                .unwrap_or(Value::Null),
            other => other.as_u64().map(Value::U64).unwrap_or(Value::Null),
        },
        (_, FieldType::F64) => match v {
            Value::Ts(t) => Value::F64(*t as f64 / 1e6),
            other => other.as_f64().map(Value::F64).unwrap_or(Value::Null),
        },
        (_, FieldType::Bool) => match v.as_f64() {
            Some(f) => Value::Bool(f != 0.0),
            None => Value::Null,
        },
        (_, FieldType::Timestamp) => match v.as_f64() {
            // Numbers are seconds since the epoch, as in Spark SQL.
            Some(s) => crate::time::TimeFormat::EpochS
                .from_f64(s)
                .map(Value::Ts)
                .unwrap_or(Value::Null),
            None => Value::Null,
        },
        // A value's JSON text (a string quoted, a timestamp as its RFC 3339 string).
        (_, FieldType::Json) => {
            let mut out = Vec::new();
            crate::encode::json_text(v, &mut out);
            Value::Str(SmolStr::new(String::from_utf8_lossy(&out)))
        }
        (_, FieldType::List(_)) => Value::Null,
    }
}

fn func(f: Func, args: &[Node], row: &[Value]) -> Value {
    let mut t = Value::Null;
    let a = eval_ref(&args[0], row, &mut t);
    if a.is_null() {
        return Value::Null;
    }
    let f64_of = |v: &Value| v.as_f64();
    match f {
        Func::Abs => match a {
            Value::I64(i) => i.checked_abs().map(Value::I64).unwrap_or(Value::Null),
            Value::F64(x) => Value::F64(x.abs()),
            other => other.clone(),
        },
        Func::Round => {
            let x = f64_of(a).unwrap_or(f64::NAN);
            if args.len() == 2 {
                let mut t2 = Value::Null;
                let Some(d) = eval_ref(&args[1], row, &mut t2).as_i64() else {
                    return Value::Null;
                };
                let m = 10f64.powi(d.clamp(-30, 30) as i32);
                Value::F64((x * m).round() / m)
            } else {
                Value::F64(x.round())
            }
        }
        Func::Floor => Value::F64(f64_of(a).unwrap_or(f64::NAN).floor()),
        Func::Ceil => Value::F64(f64_of(a).unwrap_or(f64::NAN).ceil()),
        Func::Sqrt => match f64_of(a) {
            Some(x) if x >= 0.0 => Value::F64(x.sqrt()),
            _ => Value::Null,
        },
        Func::Ln => match f64_of(a) {
            Some(x) if x > 0.0 => Value::F64(x.ln()),
            _ => Value::Null,
        },
        Func::Exp => Value::F64(f64_of(a).unwrap_or(f64::NAN).exp()),
        Func::Power => {
            let mut t2 = Value::Null;
            match (f64_of(a), f64_of(eval_ref(&args[1], row, &mut t2))) {
                (Some(x), Some(y)) => Value::F64(x.powf(y)),
                _ => Value::Null,
            }
        }
        Func::Lower => Value::Str(SmolStr::new(a.as_str().unwrap_or("").to_lowercase())),
        Func::Upper => Value::Str(SmolStr::new(a.as_str().unwrap_or("").to_uppercase())),
        Func::Trim => Value::Str(SmolStr::new(a.as_str().unwrap_or("").trim())),
        Func::Length => Value::I64(a.as_str().unwrap_or("").chars().count() as i64),
        Func::Cardinality => match a {
            Value::List(items) => Value::U64(items.len() as u64),
            _ => Value::Null,
        },
        Func::ArrayContains => {
            let mut t2 = Value::Null;
            let x = eval_ref(&args[1], row, &mut t2);
            match a {
                // As `x IN (elements)`: TRUE if found, NULL if not found but some element
                // (or `x`) is NULL, else FALSE.
                Value::List(items) if !x.is_null() => {
                    if items.iter().any(|v| v == x) {
                        Value::Bool(true)
                    } else if items.iter().any(Value::is_null) {
                        Value::Null
                    } else {
                        Value::Bool(false)
                    }
                }
                _ => Value::Null,
            }
        }
        Func::Json(out) => {
            let Some(text) = a.as_str() else {
                return Value::Null;
            };
            // Each step parses one level, borrowing the values below it as raw text.
            use serde_json::value::RawValue;
            let mut at: &str = text;
            for step in &args[1..] {
                let mut t2 = Value::Null;
                let next: Option<&RawValue> = match eval_ref(step, row, &mut t2) {
                    Value::Str(k) => json_member(at, k),
                    Value::I64(i) => usize::try_from(*i).ok().and_then(|i| {
                        serde_json::from_str::<Vec<&RawValue>>(at)
                            .ok()
                            .and_then(|a| a.get(i).copied())
                    }),
                    Value::U64(i) => serde_json::from_str::<Vec<&RawValue>>(at)
                        .ok()
                        .and_then(|a| a.get(*i as usize).copied()),
                    _ => None,
                };
                match next {
                    Some(v) => at = v.get(),
                    None if out == JsonOut::Contains
                        && serde_json::from_str::<&RawValue>(text).is_ok() =>
                    {
                        return Value::Bool(false)
                    }
                    None => return Value::Null,
                }
            }
            json_out(out, at)
        }
    }
}

/// The value of member `key` of the JSON object `text` (the last, if it appears twice), found
/// in one pass over its members without collecting them.
fn json_member<'a>(text: &'a str, key: &str) -> Option<&'a serde_json::value::RawValue> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    use serde_json::value::RawValue;
    struct Find<'k>(&'k str);
    impl<'de> DeserializeSeed<'de> for Find<'_> {
        type Value = Option<&'de RawValue>;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                if k == self.0 {
                    found = Some(m.next_value::<&'de RawValue>()?);
                } else {
                    m.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let found = Find(key).deserialize(&mut de).ok()?;
    de.end().ok()?;
    found
}

/// The number of distinct keys of the JSON object `text` (a repeated key counts once, as JSON
/// readers keep the last), without collecting the values.
fn json_members(text: &str) -> Option<usize> {
    use serde::de::{IgnoredAny, MapAccess, Visitor};
    struct Count;
    impl<'de> Visitor<'de> for Count {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<usize, A::Error> {
            let mut keys = std::collections::HashSet::new();
            while let Some(k) = m.next_key::<String>()? {
                m.next_value::<IgnoredAny>()?;
                keys.insert(k);
            }
            Ok(keys.len())
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let n = serde::Deserializer::deserialize_map(&mut de, Count).ok()?;
    de.end().ok()?;
    Some(n)
}

/// What a `json_get...` function gives for the JSON value `text` its path leads to.
fn json_out(out: JsonOut, text: &str) -> Value {
    use serde_json::value::RawValue;
    use serde_json::{from_str, Value as J};
    let text = text.trim();
    if out == JsonOut::Contains {
        return Value::Bool(from_str::<&RawValue>(text).is_ok());
    }
    if text == "null" {
        return Value::Null;
    }
    let v = match out {
        JsonOut::Json => from_str::<&RawValue>(text)
            .ok()
            .map(|_| Value::Str(SmolStr::new(crate::decode::compact_json(text)))),
        JsonOut::Str => from_str::<String>(text)
            .ok()
            .map(|s| Value::Str(SmolStr::new(s))),
        JsonOut::Int => from_str::<i64>(text).ok().map(Value::I64),
        JsonOut::Float => match from_str::<J>(text) {
            Ok(J::Number(n)) => n.as_f64().map(Value::F64),
            _ => None,
        },
        JsonOut::Bool => from_str::<bool>(text).ok().map(Value::Bool),
        JsonOut::Length => match text.as_bytes().first() {
            Some(b'[') => from_str::<Vec<&RawValue>>(text).ok().map(|a| a.len()),
            Some(b'{') => json_members(text),
            _ => None,
        }
        .map(|n| Value::U64(n as u64)),
        JsonOut::Contains => unreachable!("answered above"),
    };
    v.unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("kind", FieldType::String),
            Field::new("temperature", FieldType::F64),
            Field::new("battery", FieldType::I64),
            Field::new("n", FieldType::U64),
            Field::new("ts", FieldType::Timestamp),
            Field::new("ok", FieldType::Bool),
        ])
    }

    fn row() -> Vec<Value> {
        vec![
            Value::Str("reading".into()),
            Value::F64(21.5),
            Value::I64(40),
            Value::U64(7),
            Value::Ts(1_767_225_600_000_000),
            Value::Null,
        ]
    }

    fn ev(text: &str) -> Value {
        Expr::compile(text, &schema()).unwrap().eval(&row())
    }

    /// Lists and JSON text, by hand: row and batch evaluation agree on each.
    #[test]
    fn lists_and_json_functions() {
        use crate::value::ListOf;
        let schema = Schema::new(vec![
            Field::new("tags", FieldType::List(ListOf::String)),
            Field::new("nums", FieldType::List(ListOf::I64)),
            Field::new("j", FieldType::Json),
            Field::new("s", FieldType::String),
        ]);
        let s = |x: &str| Value::Str(x.into());
        let rows = [
            vec![
                Value::List(vec![s("a"), Value::Null, s("c")].into()),
                Value::List(vec![Value::I64(3), Value::I64(-1)].into()),
                s(r#"{"a b":{"x":[1,2.5,"t"]},"k\"q":true,"n":null,"e":{}}"#),
                s("not json"),
            ],
            vec![
                Value::Null,
                Value::List(Vec::new().into()),
                Value::Null,
                Value::Null,
            ],
        ];
        let cases: &[(&str, [Value; 2])] = &[
            ("tags[1]", [s("a"), Value::Null]),
            ("tags[2]", [Value::Null, Value::Null]),
            ("tags[-1]", [s("c"), Value::Null]),
            ("tags[0]", [Value::Null, Value::Null]),
            ("tags[4]", [Value::Null, Value::Null]),
            ("nums[1] + 1", [Value::I64(4), Value::Null]),
            ("cardinality(tags)", [Value::U64(3), Value::Null]),
            ("cardinality(nums)", [Value::U64(2), Value::U64(0)]),
            // As `x IN (...)`: not found among NULLs is NULL.
            (
                "array_contains(tags, 'c')",
                [Value::Bool(true), Value::Null],
            ),
            ("array_contains(tags, 'z')", [Value::Null, Value::Null]),
            (
                "array_contains(nums, 7)",
                [Value::Bool(false), Value::Bool(false)],
            ),
            (
                "json_get_int(j, 'a b', 'x', 0)",
                [Value::I64(1), Value::Null],
            ),
            ("json_get_int(j, 'a b', 'x', 1)", [Value::Null, Value::Null]),
            (
                "json_get_float(j, 'a b', 'x', 1)",
                [Value::F64(2.5), Value::Null],
            ),
            ("json_get_str(j, 'a b', 'x', 2)", [s("t"), Value::Null]),
            ("json_get_str(j, 'a b', 'x', 3)", [Value::Null, Value::Null]),
            ("json_get_bool(j, 'k\"q')", [Value::Bool(true), Value::Null]),
            (
                "json_get(j, 'a b')",
                [s(r#"{"x":[1,2.5,"t"]}"#), Value::Null],
            ),
            ("json_get(j, 'n')", [Value::Null, Value::Null]),
            ("json_length(j)", [Value::U64(4), Value::Null]),
            ("json_length(j, 'e')", [Value::U64(0), Value::Null]),
            ("json_length(j, 'a b', 'x')", [Value::U64(3), Value::Null]),
            ("json_contains(j, 'n')", [Value::Bool(true), Value::Null]),
            ("json_contains(j, 'zz')", [Value::Bool(false), Value::Null]),
            ("json_get_str(s, 'a')", [Value::Null, Value::Null]),
            ("json_contains(s, 'a')", [Value::Null, Value::Null]),
            ("CAST(nums[2] AS json)", [s("-1"), Value::Null]),
            ("CAST(s AS json)", [s(r#""not json""#), Value::Null]),
        ];
        for (text, want) in cases {
            let e = Expr::compile(text, &schema).unwrap_or_else(|e| panic!("{text}: {e}"));
            for (row, want) in rows.iter().zip(want) {
                assert_eq!(&e.eval(row), want, "{text} over {row:?}");
            }
            let cols: Vec<_> = (0..4)
                .map(|k| {
                    crate::chunk::build_column(schema.fields[k].ty, rows.iter().map(|r| &r[k]))
                })
                .collect();
            let out = e.eval_batch(&cols, 2, FieldType::String);
            for (r, want) in want.iter().enumerate() {
                assert_eq!(
                    &crate::chunk::value_at(&out, r),
                    want,
                    "{text}, batch row {r}"
                );
            }
        }
    }

    #[test]
    fn arithmetic_and_promotion() {
        assert_eq!(ev("temperature * 2"), Value::F64(43.0));
        assert_eq!(ev("battery / 3"), Value::I64(13));
        assert_eq!(ev("battery % 7"), Value::I64(5));
        assert_eq!(ev("n + 1"), Value::U64(8));
        assert_eq!(ev("n - 8"), Value::Null, "u64 underflow is NULL");
        assert_eq!(ev("battery / 0"), Value::Null);
        assert_eq!(ev("-battery"), Value::I64(-40));
        assert_eq!(ev("battery + n"), Value::I64(47));
    }

    #[test]
    fn three_valued_logic() {
        assert_eq!(ev("ok AND false"), Value::Bool(false));
        assert_eq!(ev("ok AND true"), Value::Null);
        assert_eq!(ev("ok OR true"), Value::Bool(true));
        assert_eq!(ev("NOT ok"), Value::Null);
        assert_eq!(ev("ok IS NULL"), Value::Bool(true));
        assert_eq!(ev("ok IS NOT TRUE"), Value::Bool(true));
        assert_eq!(ev("NULL = 1"), Value::Null);
    }

    #[test]
    fn comparisons() {
        assert_eq!(ev("kind = 'reading'"), Value::Bool(true));
        assert_eq!(ev("kind <> 'reading'"), Value::Bool(false));
        assert_eq!(ev("battery BETWEEN 40 AND 50"), Value::Bool(true));
        assert_eq!(ev("battery NOT BETWEEN 40 AND 50"), Value::Bool(false));
        assert_eq!(ev("kind IN ('status', 'reading')"), Value::Bool(true));
        assert_eq!(ev("battery IN (1, 2.5)"), Value::Bool(false));
        assert_eq!(ev("battery IN (40.0)"), Value::Bool(true));
        // Integers beyond f64's 2^53 stay exact.
        assert_eq!(
            ev("9007199254740992 IN (9007199254740993)"),
            Value::Bool(false)
        );
        assert_eq!(ev("n IN (7, NULL)"), Value::Bool(true));
        assert_eq!(ev("n IN (8, NULL)"), Value::Null);
        assert_eq!(ev("kind LIKE 're%g'"), Value::Bool(true));
        assert_eq!(ev("kind LIKE 'r_a%'"), Value::Bool(true));
        assert_eq!(ev("kind NOT LIKE '%x%'"), Value::Bool(true));
        assert_eq!(ev("ts >= '2026-01-01T00:00:00Z'"), Value::Bool(true));
        assert_eq!(
            ev("ts < TIMESTAMP '2026-01-01T00:00:00Z'"),
            Value::Bool(false)
        );
        assert_eq!(ev("n > 6"), Value::Bool(true));
    }

    #[test]
    fn functions_case_cast() {
        assert_eq!(ev("round(temperature * 1.8 + 32, 1)"), Value::F64(70.7));
        assert_eq!(ev("upper(kind)"), Value::Str("READING".into()));
        assert_eq!(ev("length(kind)"), Value::I64(7));
        assert_eq!(ev("coalesce(ok, true)"), Value::Bool(true));
        assert_eq!(
            ev("kind || '-' || battery"),
            Value::Str("reading-40".into())
        );
        assert_eq!(
            ev("CASE WHEN temperature > 30 THEN 'hot' WHEN temperature > 20 THEN 'warm' ELSE 'cold' END"),
            Value::Str("warm".into())
        );
        assert_eq!(
            ev("CASE kind WHEN 'alarm' THEN 1 ELSE 0 END"),
            Value::I64(0)
        );
        assert_eq!(ev("CAST(battery AS DOUBLE)"), Value::F64(40.0));
        assert_eq!(ev("CAST('12' AS BIGINT)"), Value::I64(12));
        assert_eq!(ev("CAST('x' AS BIGINT)"), Value::Null);
        assert_eq!(
            ev("CAST(ts AS VARCHAR)"),
            Value::Str("2026-01-01T00:00:00.000Z".into())
        );
        assert_eq!(ev("abs(-3)"), Value::I64(3));
        assert_eq!(ev("sqrt(-1)"), Value::Null);
    }

    fn err(text: &str) -> ExprError {
        Expr::compile(text, &schema()).unwrap_err()
    }

    #[test]
    fn errors_name_the_place() {
        let e = err("temprature > 30");
        assert_eq!(e.message, "unknown field `temprature`");
        assert_eq!(e.span, 0..10);
        assert_eq!(e.help.as_deref(), Some("did you mean `temperature`?"));

        let e = err("kind = 'a' AND kind > 3");
        assert_eq!(e.message, "cannot compare string with i64");
        assert_eq!(&"kind = 'a' AND kind > 3"[e.span.clone()], "kind > 3");

        let e = err("kind = \"reading\"");
        assert!(
            e.help.unwrap().contains("single quotes"),
            "double quotes hint"
        );

        let e = err("temperature >");
        assert!(
            e.message.starts_with("cannot parse the expression"),
            "{}",
            e.message
        );

        let e = err("temperature > 1 garbage");
        assert!(e.message.contains("end of expression"), "{}", e.message);
        assert_eq!(e.span.start, 16);

        assert!(err("kind + 1").message.contains("needs numbers"));
        assert!(err("battery AND ok").message.contains("needs a boolean"));
        assert!(err("sqr(temperature)").help.unwrap().contains("sqrt"));
        assert!(err("").message.contains("empty"));
        // Found by the `expr` fuzz target: the mark covers a whole character.
        let e = err("\u{7bc}");
        assert_eq!(e.span, 0..2, "{e:?}");
        assert!(err("(SELECT 1)").message.contains("not supported"));
    }

    /// Long chains and deep nesting are refused with the place and the limit, never by
    /// overflowing a stack; the longest accepted chain compiles and evaluates on a thread with
    /// the default 2 MiB stack timely's workers get.
    #[test]
    fn long_and_deep_expressions_are_refused_not_crashed() {
        for op in [" + ", " OR battery > "] {
            let text = format!("battery{}", format!("{op}battery").repeat(20_000));
            let e = err(&text);
            assert!(
                e.message.contains("more than 500 operators"),
                "{}",
                e.message
            );
            // The mark is on the first operator past the limit.
            let first = text.find(op.trim()).unwrap();
            assert!(e.span.start > first, "{:?}", e.span);
            assert_eq!(
                text[..e.span.start].matches(op.trim()).count(),
                if op == " + " { 500 } else { 500 / 2 },
                "{op}"
            );
        }
        let parens = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(err(&parens).message.contains("Weir's limit"), "parentheses");
        let calls = format!("{}battery{}", "abs(".repeat(10_000), ")".repeat(10_000));
        let calls_err = err(&calls).message;
        assert!(calls_err.contains("Weir's limit"), "{calls_err}");
        let calls = format!("{}battery{}", "abs(".repeat(400), ")".repeat(400));
        let calls_err = err(&calls).message;
        assert!(calls_err.starts_with("cannot parse"), "{calls_err}");

        let sum = format!("battery{}", " + 1".repeat(MAX_OPERATORS));
        let or = format!("n = 0{}", " OR n = 0".repeat(MAX_OPERATORS / 2 - 1));
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let s = Expr::compile(&sum, &schema()).unwrap();
                assert_eq!(s.eval(&row()), Value::I64(40 + MAX_OPERATORS as i64));
                drop(s);
                let o = Expr::compile(&or, &schema()).unwrap();
                assert_eq!(o.eval_bool(&row()), Some(false));
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
