//! The alert rule language of Vitals.
//!
//! `blood_glucose > 115 or mean(blood_glucose, 10m) > 105`: comparisons of metrics (their
//! latest reading), window functions (`mean`, `min`, `max`, `count`, `delta`, `rate` per
//! minute, `absent`), numbers with units (`5.5 mmol/L`, converted to the metric's
//! canonical unit), arithmetic, `and`/`or`/`not`. [`parse`] checks a rule against the
//! metric catalog and reports errors with the position and what was expected;
//! [`eval`] evaluates it over stored series and turns its truth into episodes.

mod lexer;
mod parse;
mod rule;

pub mod anomaly;
pub mod autonomic;
pub mod baseline;
pub mod eval;
pub mod live;
pub mod night;
pub mod pack;
pub mod recommendation;
pub mod seizure;

pub use parse::{ArOp, CmpOp, Expr, Func, MAX_NESTING, MAX_OPERATORS, MAX_RULE_BYTES, parse};
pub use rule::{Rule, RuleError, RuleSpec, Scope, Severity};

/// A rule that does not parse: where (byte offset) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at {pos}: {message}")]
pub struct ParseError {
    pub pos: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(pos: usize, message: String) -> ParseError {
        ParseError { pos, message }
    }
}
