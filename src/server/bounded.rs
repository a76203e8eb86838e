//! The size bound of a tool answer: the JSON of `structuredContent` (repeated as the text
//! content) stays within [`MAX_ANSWER_BYTES`].
//!
//! Lists are already paged (at most 50 items), but 50 texts of 30,000 characters would
//! still be megabytes, more than any model context should take in one call. When an
//! answer is over the bound, every text longer than an equal share of the room left is
//! cut, and its item says so with `textTruncated: true` and `textLength` (the full length
//! in characters). Short texts are never touched and an answer within the bound is
//! returned as it is. Only texts are cut: the other fields of an item are small.

use serde_json::{Map, Value};

/// Largest answer, in bytes of JSON.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Room kept for the note the caller may add once texts were cut.
const NOTE_ROOM: usize = 1024;

/// One text that was cut: its position in the list (0 for a single item) and its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Position in the list.
    pub index: usize,
    /// The item's `id`.
    pub id: u64,
}

/// Cuts the `text` fields of `value` (the object itself, or the objects in its array
/// `list_key`) so that its JSON fits in `max` bytes. Returns what was cut.
pub fn fit(value: &mut Value, list_key: Option<&str>, max: usize) -> Vec<Cut> {
    if json_len(value) <= max {
        return Vec::new();
    }
    // First pass: every text emptied and flagged, which is the largest the other fields
    // can ever be; what remains is shared equally between the texts.
    let mut originals: Vec<(usize, String)> = Vec::new();
    for (index, item) in items(value, list_key).into_iter().enumerate() {
        if let Some(Value::String(text)) = item.get_mut("text") {
            let text = std::mem::take(text);
            flag(item, text.chars().count());
            originals.push((index, text));
        }
    }
    if originals.is_empty() {
        return Vec::new();
    }
    let room = max.saturating_sub(json_len(value) + NOTE_ROOM);
    let share = room / originals.len();
    let mut cuts = Vec::new();
    let mut items = items(value, list_key);
    for (index, text) in originals {
        let item = &mut items[index];
        if escaped_len(&text) <= share {
            item.remove("textTruncated");
            item.remove("textLength");
            item.insert("text".into(), Value::String(text));
        } else {
            let id = item.get("id").and_then(Value::as_u64).unwrap_or(0);
            item.insert("text".into(), Value::String(prefix(&text, share)));
            cuts.push(Cut { index, id });
        }
    }
    cuts
}

fn items<'a>(value: &'a mut Value, list_key: Option<&str>) -> Vec<&'a mut Map<String, Value>> {
    match list_key {
        None => value.as_object_mut().into_iter().collect(),
        Some(key) => match value.get_mut(key) {
            Some(Value::Array(list)) => list.iter_mut().filter_map(Value::as_object_mut).collect(),
            _ => Vec::new(),
        },
    }
}

fn flag(item: &mut Map<String, Value>, length: usize) {
    item.insert("textTruncated".into(), Value::Bool(true));
    item.insert("textLength".into(), Value::from(length));
}

/// The serialised size of `value`.
pub fn json_len(value: &Value) -> usize {
    serde_json::to_string(value).map_or(usize::MAX, |s| s.len())
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

    #[test]
    fn small_answers_are_untouched() {
        let mut v = json!({"items": [{"id": 1, "text": "short"}]});
        let before = v.clone();
        assert!(fit(&mut v, Some("items"), MAX_ANSWER_BYTES).is_empty());
        assert_eq!(v, before);
    }

    #[test]
    fn fifty_long_texts_fit_and_say_they_were_cut() {
        // Quotes, Cyrillic, emoji and control characters all escape or encode to more than one byte.
        let long: String = "\"я😀\u{1}x".repeat(6_000);
        let items: Vec<Value> = (1..=50)
            .map(|id| json!({"id": id, "taskId": 51, "text": long, "authorId": 1}))
            .chain([json!({"id": 99, "text": "keep me"})])
            .collect();
        let mut v = json!({"taskId": 51, "items": items});
        let cuts = fit(&mut v, Some("items"), MAX_ANSWER_BYTES);
        assert_eq!(cuts.len(), 50);
        assert_eq!(cuts[0], Cut { index: 0, id: 1 });
        assert!(
            json_len(&v) + NOTE_ROOM <= MAX_ANSWER_BYTES,
            "{}",
            json_len(&v)
        );
        let first = &v["items"][0];
        assert_eq!(first["textTruncated"], json!(true));
        assert_eq!(first["textLength"], json!(long.chars().count()));
        assert!(long.starts_with(first["text"].as_str().unwrap()));
        assert!(!first["text"].as_str().unwrap().is_empty());
        let kept = &v["items"][50];
        assert_eq!(kept["text"], json!("keep me"));
        assert!(kept.get("textTruncated").is_none());
    }

    #[test]
    fn a_single_item_is_cut_too() {
        let mut v = json!({"id": 7, "text": "😀".repeat(30_000)});
        let cuts = fit(&mut v, None, MAX_ANSWER_BYTES);
        assert_eq!(cuts, [Cut { index: 0, id: 7 }]);
        assert!(json_len(&v) <= MAX_ANSWER_BYTES);
        assert_eq!(v["textLength"], json!(30_000));
    }
}
