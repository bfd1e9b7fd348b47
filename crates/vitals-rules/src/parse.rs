//! The grammar (precedence from loosest):
//!
//! ```text
//! rule    := or
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | cmp
//! cmp     := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/") unary)*
//! unary   := "-" unary | primary
//! primary := NUMBER [UNIT] | METRIC | FUNC "(" METRIC "," DURATION ")" | "(" rule ")"
//! FUNC    := mean | min | max | count | delta | rate | absent
//! ```
//!
//! A metric alone is its latest reading; `mean(m, 10m)` and friends look at the readings in
//! the window (t - 10 min, t]; `rate` is the change per minute between the window's first
//! and last readings; `absent(m, 15m)` holds when there is none. A number with a unit is
//! converted to the canonical unit of the metric it is compared with.

use vitals_core::Catalog;

use crate::ParseError;
use crate::lexer::{Tok, lex};

/// Window functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    Mean,
    Min,
    Max,
    Count,
    Delta,
    Rate,
    Absent,
}

impl Func {
    fn parse(s: &str) -> Option<Func> {
        Some(match s {
            "mean" | "avg" => Func::Mean,
            "min" => Func::Min,
            "max" => Func::Max,
            "count" => Func::Count,
            "delta" => Func::Delta,
            "rate" => Func::Rate,
            "absent" => Func::Absent,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// A checked rule expression; numbers are in canonical units.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    /// The latest reading of a metric (its code).
    Metric(String),
    Window {
        func: Func,
        metric: String,
        window_ms: i64,
    },
    Neg(Box<Expr>),
    Arith(Box<Expr>, ArOp, Box<Expr>),
    Cmp(Box<Expr>, CmpOp, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

impl Expr {
    /// Metric codes the expression reads, and the longest window over each.
    pub fn metrics(&self, out: &mut Vec<(String, i64)>) {
        let mut add = |m: &str, w: i64| match out.iter_mut().find(|(c, _)| c == m) {
            Some(e) => e.1 = e.1.max(w),
            None => out.push((m.to_owned(), w)),
        };
        match self {
            Expr::Num(_) => {}
            Expr::Metric(m) => add(m, 0),
            Expr::Window { metric, window_ms, .. } => add(metric, *window_ms),
            Expr::Neg(e) | Expr::Not(e) => e.metrics(out),
            Expr::Arith(a, _, b) | Expr::Cmp(a, _, b) | Expr::And(a, b) | Expr::Or(a, b) => {
                a.metrics(out);
                b.metrics(out);
            }
        }
    }
}

/// What an unchecked node is: a number (with the metric it measures, if known, and whether
/// it is a difference such as `delta` or `rate`, which converts units without offset) or a
/// truth value.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Num { metric: Option<String>, difference: bool },
    Bool,
}

/// A number with a unit waiting for the metric that gives it meaning.
#[derive(Debug, Clone, PartialEq)]
enum Raw {
    Quantity { pos: usize, value: f64, unit: String },
    Num(f64),
    Metric(String),
    Window(Func, String, i64),
    Neg(Box<Raw>),
    Arith(usize, Box<Raw>, ArOp, Box<Raw>),
    Cmp(usize, Box<Raw>, CmpOp, Box<Raw>),
    And(usize, Box<Raw>, Box<Raw>),
    Or(usize, Box<Raw>, Box<Raw>),
    Not(usize, Box<Raw>),
}

/// The longest rule, in bytes of its source.
pub const MAX_RULE_BYTES: usize = 4096;
/// The deepest nesting of parentheses, `not` and unary minus.
pub const MAX_NESTING: usize = 32;
/// The most binary operators (`and`, `or`, comparisons, arithmetic) in one rule.
pub const MAX_OPERATORS: usize = 256;

struct Parser<'a> {
    toks: Vec<(usize, Tok)>,
    i: usize,
    catalog: &'a Catalog,
    /// Current nesting (parentheses, `not`, unary minus) and binary operators so far: both
    /// bounded, so parsing, checking, evaluating and dropping a rule never recurse deeply.
    nesting: usize,
    operators: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::End, |t| &t.1)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(0, |t| t.0)
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        self.i += 1;
        t
    }

    fn expected(&self, what: &str) -> ParseError {
        ParseError::at(self.pos(), format!("expected {what}, found {}", self.peek().describe()))
    }

    /// Enters one more level of nesting, refusing past [`MAX_NESTING`].
    fn enter(&mut self) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(ParseError::at(self.pos(), format!("nested deeper than {MAX_NESTING} levels")));
        }
        Ok(())
    }

    /// Counts one binary operator, refusing past [`MAX_OPERATORS`].
    fn operator(&mut self) -> Result<(), ParseError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(ParseError::at(self.pos(), format!("more than {MAX_OPERATORS} operators")));
        }
        Ok(())
    }

    fn word_is(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Word(x) if x == w)
    }

    fn or(&mut self) -> Result<Raw, ParseError> {
        let mut left = self.and()?;
        while self.word_is("or") {
            let pos = self.pos();
            self.operator()?;
            self.bump();
            left = Raw::Or(pos, Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Raw, ParseError> {
        let mut left = self.not()?;
        while self.word_is("and") {
            let pos = self.pos();
            self.operator()?;
            self.bump();
            left = Raw::And(pos, Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Raw, ParseError> {
        if self.word_is("not") {
            let pos = self.pos();
            self.enter()?;
            self.bump();
            let inner = self.not()?;
            self.nesting -= 1;
            return Ok(Raw::Not(pos, Box::new(inner)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Raw, ParseError> {
        let left = self.sum()?;
        let op = match self.peek() {
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            _ => return Ok(left),
        };
        let pos = self.pos();
        self.operator()?;
        self.bump();
        let right = self.sum()?;
        Ok(Raw::Cmp(pos, Box::new(left), op, Box::new(right)))
    }

    fn sum(&mut self) -> Result<Raw, ParseError> {
        let mut left = self.product()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => ArOp::Add,
                Tok::Minus => ArOp::Sub,
                _ => return Ok(left),
            };
            let pos = self.pos();
            self.operator()?;
            self.bump();
            left = Raw::Arith(pos, Box::new(left), op, Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<Raw, ParseError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => ArOp::Mul,
                Tok::Slash => ArOp::Div,
                _ => return Ok(left),
            };
            let pos = self.pos();
            self.operator()?;
            self.bump();
            left = Raw::Arith(pos, Box::new(left), op, Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Raw, ParseError> {
        if *self.peek() == Tok::Minus {
            self.enter()?;
            self.bump();
            let inner = self.unary()?;
            self.nesting -= 1;
            return Ok(Raw::Neg(Box::new(inner)));
        }
        self.primary()
    }

    fn metric(&mut self) -> Result<String, ParseError> {
        let pos = self.pos();
        match self.bump() {
            Tok::Word(w) if self.catalog.id(&w).is_some() => Ok(w),
            Tok::Word(w) => Err(ParseError::at(pos, format!("no metric {w:?} in the catalog"))),
            t => Err(ParseError::at(pos, format!("expected a metric code, found {}", t.describe()))),
        }
    }

    fn duration(&mut self) -> Result<i64, ParseError> {
        let pos = self.pos();
        let Tok::Num(n) = self.bump() else {
            self.i -= 1;
            return Err(self.expected("a duration like 10m"));
        };
        let per = match self.peek() {
            Tok::Unit(u) => match u.as_str() {
                "ms" => 1,
                "s" => 1_000,
                "m" | "min" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                other => return Err(ParseError::at(self.pos(), format!("{other:?} is not a time unit (s, m, h, d)"))),
            },
            _ => return Err(self.expected("a time unit after the number (s, m, h, d)")),
        };
        self.bump();
        let ms = n * per as f64;
        if !(1.0..=366.0 * 86_400_000.0).contains(&ms) || ms.fract() != 0.0 {
            return Err(ParseError::at(pos, "a window is between 1 ms and a year, in whole milliseconds".into()));
        }
        Ok(ms as i64)
    }

    fn primary(&mut self) -> Result<Raw, ParseError> {
        match self.peek().clone() {
            Tok::Num(n) => {
                self.bump();
                if let Tok::Unit(u) = self.peek().clone() {
                    let unit_pos = self.pos();
                    self.bump();
                    return Ok(Raw::Quantity { pos: unit_pos, value: n, unit: u });
                }
                Ok(Raw::Num(n))
            }
            Tok::LParen => {
                self.enter()?;
                self.bump();
                let e = self.or()?;
                self.nesting -= 1;
                if *self.peek() != Tok::RParen {
                    return Err(self.expected("')'"));
                }
                self.bump();
                Ok(e)
            }
            Tok::Word(w) => {
                if let Some(func) = Func::parse(&w)
                    && self.toks.get(self.i + 1).is_some_and(|t| t.1 == Tok::LParen)
                {
                    self.bump();
                    self.bump();
                    let metric = self.metric()?;
                    if *self.peek() != Tok::Comma {
                        return Err(self.expected("',' and a window like 10m"));
                    }
                    self.bump();
                    let window = self.duration()?;
                    if *self.peek() != Tok::RParen {
                        return Err(self.expected("')'"));
                    }
                    self.bump();
                    return Ok(Raw::Window(func, metric, window));
                }
                if matches!(w.as_str(), "or" | "and" | "not") {
                    return Err(self.expected("a number, a metric or a function"));
                }
                self.metric().map(Raw::Metric)
            }
            _ => Err(self.expected("a number, a metric or a function")),
        }
    }
}

/// Type-checks and resolves units: returns the checked expression and its type.
fn check(raw: Raw, want_metric: Option<(&str, bool)>, catalog: &Catalog) -> Result<(Expr, Ty), ParseError> {
    let num = |metric: Option<String>, difference| Ty::Num { metric, difference };
    Ok(match raw {
        Raw::Num(n) => (Expr::Num(n), num(None, false)),
        Raw::Quantity { pos, value, unit } => {
            let Some((m, difference)) = want_metric else {
                return Err(ParseError::at(pos, format!("the unit {unit:?} needs a metric to compare with")));
            };
            let metric = catalog.by_code(m).ok_or_else(|| ParseError::at(pos, format!("no metric {m:?}")))?;
            let conv = metric.conversion(&unit).ok_or_else(|| {
                let known: Vec<&str> = metric.unit_aliases().filter(|a| !a.contains('<')).collect();
                ParseError::at(pos, format!("{m} is not measured in {unit:?} (units: {})", known.join(", ")))
            })?;
            let v = if difference { conv.apply(value) - conv.apply(0.0) } else { conv.apply(value) };
            (Expr::Num(v), num(Some(m.to_owned()), difference))
        }
        Raw::Metric(m) => (Expr::Metric(m.clone()), num(Some(m), false)),
        Raw::Window(func, m, w) => {
            let ty = match func {
                Func::Count => num(None, false),
                Func::Absent => Ty::Bool,
                Func::Delta | Func::Rate => num(Some(m.clone()), true),
                _ => num(Some(m.clone()), false),
            };
            (Expr::Window { func, metric: m, window_ms: w }, ty)
        }
        Raw::Neg(e) => {
            let (e, ty) = check(*e, want_metric, catalog)?;
            (Expr::Neg(Box::new(e)), ty)
        }
        Raw::Arith(pos, a, op, b) => {
            // The first side that names a metric gives units to the other; with none, the
            // metric this is compared with. Found without checking (each side is checked
            // once: trying one side and then the other at every level took time
            // exponential in the depth, found by fuzzing).
            let units = names_metric(&a).or_else(|| names_metric(&b));
            let units = units.as_ref().map(|(m, d)| (m.as_str(), *d)).or(want_metric);
            let (ea, ta) = check(*a, units, catalog)?;
            let (eb, tb) = check(*b, metric_of(&ta).or(units), catalog)?;
            if ta == Ty::Bool || tb == Ty::Bool {
                return Err(ParseError::at(pos, "arithmetic needs numbers, not conditions".into()));
            }
            let m = metric_of(&ta).or(metric_of(&tb)).map(|(m, d)| (m.to_owned(), d));
            (Expr::Arith(Box::new(ea), op, Box::new(eb)), num(m.as_ref().map(|x| x.0.clone()), m.is_some_and(|x| x.1)))
        }
        Raw::Cmp(pos, a, op, b) => {
            let left = check(*a.clone(), None, catalog);
            let (ea, ta, eb, tb) = match left {
                Ok((ea, ta)) => {
                    let (eb, tb) = check(*b, metric_of(&ta), catalog)?;
                    (ea, ta, eb, tb)
                }
                Err(e) => {
                    // `115 mg/dL < blood_glucose`: the right side gives the unit.
                    let (eb, tb) = check(*b, None, catalog)?;
                    let (ea, ta) = check(*a, metric_of(&tb), catalog).map_err(|_| e)?;
                    (ea, ta, eb, tb)
                }
            };
            if ta == Ty::Bool || tb == Ty::Bool {
                return Err(ParseError::at(pos, "a comparison needs numbers on both sides".into()));
            }
            (Expr::Cmp(Box::new(ea), op, Box::new(eb)), Ty::Bool)
        }
        Raw::And(..) | Raw::Or(..) | Raw::Not(..) => check_bool(raw, catalog)?,
    })
}

/// The metric whose units an arithmetic expression is in (and whether as a difference), as
/// [`check`] will type it: its first side's, else its second's.
fn names_metric(raw: &Raw) -> Option<(String, bool)> {
    match raw {
        Raw::Metric(m) => Some((m.clone(), false)),
        Raw::Window(func, m, _) => match func {
            Func::Count | Func::Absent => None,
            Func::Delta | Func::Rate => Some((m.clone(), true)),
            _ => Some((m.clone(), false)),
        },
        Raw::Neg(e) => names_metric(e),
        Raw::Arith(_, a, _, b) => names_metric(a).or_else(|| names_metric(b)),
        _ => None,
    }
}

fn metric_of(t: &Ty) -> Option<(&str, bool)> {
    match t {
        Ty::Num { metric: Some(m), difference } => Some((m.as_str(), *difference)),
        _ => None,
    }
}

/// Parses and checks a rule condition: it must be a condition (true or false).
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    if src.len() > MAX_RULE_BYTES {
        return Err(ParseError::at(MAX_RULE_BYTES, format!("a rule is at most {MAX_RULE_BYTES} bytes long")));
    }
    let catalog = Catalog::standard();
    let mut p = Parser { toks: lex(src)?, i: 0, catalog, nesting: 0, operators: 0 };
    let raw = p.or()?;
    if *p.peek() != Tok::End {
        return Err(p.expected("'and', 'or' or the end of the rule"));
    }
    let (e, ty) = check_bool(raw, catalog)?;
    if ty != Ty::Bool {
        return Err(ParseError::at(0, "a rule is a condition, e.g. blood_glucose > 180".into()));
    }
    Ok(e)
}

fn check_bool(raw: Raw, catalog: &Catalog) -> Result<(Expr, Ty), ParseError> {
    match raw {
        Raw::And(pos, a, b) => {
            let (ea, ta) = check_bool(*a, catalog)?;
            let (eb, tb) = check_bool(*b, catalog)?;
            if ta != Ty::Bool || tb != Ty::Bool {
                return Err(ParseError::at(pos, "'and' joins conditions, e.g. a > 1 and b < 2".into()));
            }
            Ok((Expr::And(Box::new(ea), Box::new(eb)), Ty::Bool))
        }
        Raw::Or(pos, a, b) => {
            let (ea, ta) = check_bool(*a, catalog)?;
            let (eb, tb) = check_bool(*b, catalog)?;
            if ta != Ty::Bool || tb != Ty::Bool {
                return Err(ParseError::at(pos, "'or' joins conditions, e.g. a > 1 or b < 2".into()));
            }
            Ok((Expr::Or(Box::new(ea), Box::new(eb)), Ty::Bool))
        }
        Raw::Not(pos, e) => {
            let (e, ty) = check_bool(*e, catalog)?;
            if ty != Ty::Bool {
                return Err(ParseError::at(pos, "'not' needs a condition".into()));
            }
            Ok((Expr::Not(Box::new(e)), Ty::Bool))
        }
        other => check(other, None, catalog),
    }
}
