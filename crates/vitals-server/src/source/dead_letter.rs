//! Keeping refused input as a dead letter: line-based formats keep only the refused lines
//! (and a CSV header), other formats the whole body. Only the pipeline keeps dead letters.

use std::collections::BTreeMap;

use vitals_core::Rejection;
use vitals_ingest::Format;
use vitals_ingest::health_auto_export::Unsupported;
use vitals_storage::dead_letter::{DeadLetter, DeadLetters, RefusedItem};

use super::wire_format::{WireFormat, precision_name};

/// Refused items described in one dead letter (all of them are counted in its reason).
pub(crate) const MAX_ITEMS: usize = 1000;

/// What a body refused.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Refused<'a> {
    /// The refused items listed (the first ones only, when `truncated`).
    pub(crate) rejections: &'a [Rejection],
    /// More items were refused than listed: a line-based body is then kept whole (once),
    /// since the lines of the unlisted ones are not known.
    pub(crate) truncated: bool,
    /// Set when the body could not be decoded at all.
    pub(crate) whole_failure: Option<&'a str>,
    /// Parts that cannot be stored yet (the whole body is kept for a later replay).
    pub(crate) unsupported: &'a [Unsupported],
    /// The patient of formats without patient ids in the body.
    pub(crate) patient: Option<&'a str>,
    /// More context to record (the dropped file's name, ...).
    pub(crate) context: &'a [(&'a str, String)],
}

impl Refused<'_> {
    fn is_empty(&self) -> bool {
        self.rejections.is_empty() && self.whole_failure.is_none() && self.unsupported.is_empty()
    }
}

/// Keeps what a body refused; `None` when nothing was refused, or when keeping failed
/// (logged: the sender still gets the per-item answer).
pub(crate) fn keep(
    dead: &DeadLetters,
    now_ms: i64,
    source: &str,
    format: WireFormat,
    body: &[u8],
    refused: &Refused<'_>,
) -> Option<u64> {
    if refused.is_empty() {
        return None;
    }
    let Refused { rejections, truncated, whole_failure, unsupported, patient, context: extra } = *refused;
    let mut context = BTreeMap::new();
    if let WireFormat::LineProtocol(p) = format {
        context.insert("precision".to_owned(), precision_name(p).to_owned());
    }
    if let Some(p) = patient {
        context.insert("patient".to_owned(), p.to_owned());
    }
    for (k, v) in extra {
        context.insert((*k).to_owned(), v.clone());
    }
    let described = &rejections[..rejections.len().min(MAX_ITEMS)];
    let (raw, items): (Vec<u8>, Vec<RefusedItem>) = if format.line_based() && whole_failure.is_none() && !truncated {
        // Only the refused lines (and a CSV header), renumbered in the excerpt; the original
        // line is in each item's message.
        let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
        let mut raw = Vec::new();
        let mut items = Vec::new();
        let header = matches!(format, WireFormat::Native(Format::Csv))
            && lines.first().is_some_and(|l| l.starts_with(b"patient"));
        if header {
            raw.extend_from_slice(lines[0]);
            raw.push(b'\n');
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in rejections.iter().enumerate() {
            if seen.insert(r.index)
                && let Some(l) = lines.get(r.index)
            {
                raw.extend_from_slice(l);
                raw.push(b'\n');
            }
            if i < MAX_ITEMS {
                items.push(RefusedItem {
                    index: seen.len() - 1 + usize::from(header),
                    code: r.code.as_str().to_owned(),
                    message: format!("(line {} of the original) {}", r.index + 1, r.message),
                });
            }
        }
        (raw, items)
    } else {
        let items = described
            .iter()
            .map(|r| RefusedItem { index: r.index, code: r.code.as_str().to_owned(), message: r.message.clone() })
            .collect();
        (body.to_vec(), items)
    };
    let reason = match (whole_failure, rejections.first()) {
        (Some(why), _) => why.to_owned(),
        (None, Some(first)) if !truncated => format!("{} item(s) refused, first: {}", rejections.len(), first.code),
        (None, Some(first)) => {
            format!("more than {} item(s) refused (the whole body is kept), first: {}", rejections.len(), first.code)
        }
        (None, None) => {
            let parts: Vec<String> = unsupported.iter().map(|u| format!("{} ({})", u.section, u.count)).collect();
            format!("not stored yet: {}", parts.join(", "))
        }
    };
    let letter = DeadLetter {
        id: 0,
        time_ms: now_ms,
        source: source.to_owned(),
        format: format.name().to_owned(),
        reason,
        items,
        context,
        raw_bytes: 0,
    };
    match dead.add(letter, &raw) {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::error!(error = %e, source, "could not keep a dead letter");
            None
        }
    }
}
