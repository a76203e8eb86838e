//! The size bound of a tool answer: its JSON (structured content, repeated as text) stays
//! within [`MAX_ANSWER_BYTES`].
//!
//! Lists are already paged (at most 50 items), but 50 texts of 30,000 characters would
//! still be megabytes, more than any model context should take in one call. When an
//! answer is over the bound, every text longer than an equal share of the room left is
//! cut, and its item says so with `textTruncated: true` and `textLength` (the full length
//! in characters). Short texts are never touched and an answer within the bound is
//! returned as it is. Only texts are cut: the other fields of an item are small.
//!
//! The domain types know nothing of this: [`Shown`] wraps an item as the model sees it.

use schemars::JsonSchema;
use serde::Serialize;

use super::Answer;
use crate::chat::ChatMessage;
use crate::results::TaskResult;

/// Largest answer, in bytes of JSON.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Room kept for the note an answer adds once texts were cut.
const NOTE_ROOM: usize = 1024;

/// An item whose text may be cut.
pub trait HasText {
    /// The item's id (named in the note).
    fn id(&self) -> u64;
    /// The text.
    fn text_mut(&mut self) -> &mut String;
}

impl HasText for TaskResult {
    fn id(&self) -> u64 {
        self.id
    }
    fn text_mut(&mut self) -> &mut String {
        &mut self.text
    }
}

impl HasText for ChatMessage {
    fn id(&self) -> u64 {
        self.id
    }
    fn text_mut(&mut self) -> &mut String {
        &mut self.text
    }
}

// An item as the model sees it: the domain item, marked when its text was cut. (A plain
// comment: a doc comment would replace the item's own description in the schemas.)
#[allow(missing_docs)]
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Shown<T> {
    /// The item.
    #[serde(flatten)]
    pub item: T,
    /// Present and true when `text` was cut to keep the answer within its size bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_truncated: Option<bool>,
    /// Length of the full text in characters, present when `text` was cut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_length: Option<usize>,
}

impl<T> Shown<T> {
    /// `item`, uncut.
    pub fn new(item: T) -> Self {
        Self {
            item,
            text_truncated: None,
            text_length: None,
        }
    }
}

/// A single result, as the add, add-from-chat and update tools answer it.
impl Answer for Shown<TaskResult> {
    fn fit(&mut self) {
        fit(self, std::slice::from_mut, MAX_ANSWER_BYTES);
    }
}

/// One text that was cut: its position in the list (0 for a single item) and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Position in the list.
    pub index: usize,
    /// The item's id.
    pub id: u64,
}

/// Cuts the texts of the items `items` picks out of `answer` so that the JSON of
/// `answer` fits in `max` bytes. Returns what was cut.
pub fn fit<A, T>(answer: &mut A, items: impl Fn(&mut A) -> &mut [Shown<T>], max: usize) -> Vec<Cut>
where
    A: Serialize,
    T: HasText + Serialize,
{
    if json_len(answer) <= max {
        return Vec::new();
    }
    // First pass: every text emptied and flagged, which is the largest the other fields
    // can ever be; what remains is shared equally between the texts.
    let originals: Vec<String> = items(answer)
        .iter_mut()
        .map(|shown| {
            let text = std::mem::take(shown.item.text_mut());
            shown.text_truncated = Some(true);
            shown.text_length = Some(text.chars().count());
            text
        })
        .collect();
    if originals.is_empty() {
        return Vec::new();
    }
    let room = max.saturating_sub(json_len(answer) + NOTE_ROOM);
    let share = room / originals.len();
    let mut cuts = Vec::new();
    for (index, (shown, text)) in items(answer).iter_mut().zip(originals).enumerate() {
        if escaped_len(&text) <= share {
            shown.text_truncated = None;
            shown.text_length = None;
            *shown.item.text_mut() = text;
        } else {
            *shown.item.text_mut() = prefix(&text, share);
            cuts.push(Cut {
                index,
                id: shown.item.id(),
            });
        }
    }
    cuts
}

/// The ids of `cuts`, comma-separated, for a note.
pub fn ids(cuts: &[Cut]) -> String {
    cuts.iter()
        .map(|c| c.id.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The serialised size of `value`.
pub fn json_len(value: &impl Serialize) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |s| s.len())
}

/// Bytes `c` takes inside a JSON string (serde_json's escaping).
fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn escaped_len(s: &str) -> usize {
    s.chars().map(escaped_char_len).sum()
}

/// Cuts `text` so that its escaped form takes at most `budget` bytes, marking the cut
/// with "… (cut)"; returns whether it cut. For short fields (titles) that only a broken
/// or hostile portal makes long.
pub fn clip(text: &mut String, budget: usize) -> bool {
    const MARK: &str = "… (cut)";
    if escaped_len(text) <= budget {
        return false;
    }
    let mut cut = prefix(text, budget.saturating_sub(MARK.len()));
    cut.push_str(MARK);
    *text = cut;
    true
}

/// The longest prefix of `s` whose escaped form takes at most `budget` bytes.
fn prefix(s: &str, budget: usize) -> String {
    let mut used = 0;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        used += escaped_char_len(c);
        if used > budget {
            break;
        }
        end = i + c.len_utf8();
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(id: u64, text: &str) -> Shown<TaskResult> {
        Shown::new(
            serde_json::from_value(json!({"id": id, "taskId": 51, "text": text, "authorId": 1}))
                .unwrap(),
        )
    }

    fn list(v: &mut Vec<Shown<TaskResult>>) -> &mut [Shown<TaskResult>] {
        v
    }

    #[test]
    fn small_answers_are_untouched() {
        let mut v = vec![result(1, "short")];
        let before = serde_json::to_value(&v).unwrap();
        assert!(fit(&mut v, list, MAX_ANSWER_BYTES).is_empty());
        assert_eq!(serde_json::to_value(&v).unwrap(), before);
    }

    #[test]
    fn fifty_long_texts_fit_and_say_they_were_cut() {
        // Quotes, Cyrillic, emoji and control characters all escape or encode to more than one byte.
        let long: String = "\"я😀\u{1}x".repeat(6_000);
        let mut v: Vec<Shown<TaskResult>> = (1..=50)
            .map(|id| result(id, &long))
            .chain([result(99, "keep me")])
            .collect();
        let cuts = fit(&mut v, list, MAX_ANSWER_BYTES);
        assert_eq!(cuts.len(), 50);
        assert_eq!(cuts[0], Cut { index: 0, id: 1 });
        assert!(
            json_len(&v) + NOTE_ROOM <= MAX_ANSWER_BYTES,
            "{}",
            json_len(&v)
        );
        let json = serde_json::to_value(&v).unwrap();
        let first = &json[0];
        assert_eq!(first["textTruncated"], json!(true));
        assert_eq!(first["textLength"], json!(long.chars().count()));
        assert!(long.starts_with(first["text"].as_str().unwrap()));
        assert!(!first["text"].as_str().unwrap().is_empty());
        let kept = &json[50];
        assert_eq!(kept["text"], json!("keep me"));
        assert!(kept.get("textTruncated").is_none());
    }

    #[test]
    fn clip_cuts_only_what_is_over_and_says_so() {
        let mut short = "title".to_string();
        assert!(!clip(&mut short, 100));
        assert_eq!(short, "title");
        let mut long = "я".repeat(10_000);
        assert!(clip(&mut long, 1000));
        assert!(
            escaped_len(&long) <= 1000 && long.ends_with("… (cut)"),
            "{}",
            long.len()
        );
    }

    #[test]
    fn a_single_item_is_cut_too() {
        let mut one = result(7, &"😀".repeat(30_000));
        let cuts = fit(&mut one, std::slice::from_mut, MAX_ANSWER_BYTES);
        assert_eq!(cuts, [Cut { index: 0, id: 7 }]);
        assert!(json_len(&one) <= MAX_ANSWER_BYTES);
        assert_eq!(one.text_length, Some(30_000));
    }
}
