//! Tokens of the rule language, each with its byte position.

use crate::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Num(f64),
    /// A unit right after a number (`mg/dL`, `%`, `10m`'s `m`).
    Unit(String),
    Word(String),
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    End,
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Num(n) => format!("the number {n}"),
            Tok::Unit(u) => format!("the unit {u:?}"),
            Tok::Word(w) => format!("{w:?}"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Plus => "'+'".into(),
            Tok::Minus => "'-'".into(),
            Tok::Star => "'*'".into(),
            Tok::Slash => "'/'".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
            Tok::Eq => "'=='".into(),
            Tok::Ne => "'!='".into(),
            Tok::End => "the end of the rule".into(),
        }
    }
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_unit_start(c: char) -> bool {
    c.is_alphabetic() || matches!(c, '%' | '°' | 'µ' | 'μ')
}

fn is_unit(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '%' | '°' | 'µ' | 'μ' | '/' | '_' | '[' | ']')
}

/// Splits a rule into tokens; the last is `End` at the text's length.
pub(crate) fn lex(src: &str) -> Result<Vec<(usize, Tok)>, ParseError> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut i = 0;
    let at = |i: usize| chars.get(i).map_or(src.len(), |c| c.0);
    while i < chars.len() {
        let (pos, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.1.is_ascii_digit())) {
            let start = i;
            while i < chars.len() && (chars[i].1.is_ascii_digit() || chars[i].1 == '.') {
                i += 1;
            }
            let text = &src[pos..at(i)];
            let n: f64 = text.parse().map_err(|_| ParseError::at(pos, format!("{text:?} is not a number")))?;
            out.push((chars[start].0, Tok::Num(n)));
            // A unit may follow, with or without a space; `or`/`and`/`not` are not units.
            let mut j = i;
            while j < chars.len() && chars[j].1 == ' ' {
                j += 1;
            }
            if j < chars.len() && is_unit_start(chars[j].1) {
                let mut k = j;
                while k < chars.len() && is_unit(chars[k].1) {
                    k += 1;
                }
                let word = &src[chars[j].0..at(k)];
                if !matches!(word, "or" | "and" | "not" | "for") {
                    out.push((chars[j].0, Tok::Unit(word.to_owned())));
                    i = k;
                }
            }
            continue;
        }
        if is_word_start(c) {
            let start = i;
            while i < chars.len() && is_word(chars[i].1) {
                i += 1;
            }
            out.push((chars[start].0, Tok::Word(src[pos..at(i)].to_owned())));
            continue;
        }
        let next = chars.get(i + 1).map(|c| c.1);
        let (tok, len) = match (c, next) {
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            (',', _) => (Tok::Comma, 1),
            ('+', _) => (Tok::Plus, 1),
            ('-', _) => (Tok::Minus, 1),
            ('*', _) => (Tok::Star, 1),
            ('/', _) => (Tok::Slash, 1),
            ('<', Some('=')) => (Tok::Le, 2),
            ('<', _) => (Tok::Lt, 1),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('>', _) => (Tok::Gt, 1),
            ('=', Some('=')) => (Tok::Eq, 2),
            ('=', _) => (Tok::Eq, 1),
            ('!', Some('=')) => (Tok::Ne, 2),
            _ => return Err(ParseError::at(pos, format!("unexpected character {c:?}"))),
        };
        out.push((pos, tok));
        i += len;
    }
    out.push((src.len(), Tok::End));
    Ok(out)
}
