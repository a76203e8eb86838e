//! HTML escaping shared by every page this crate writes: the sign-in pages
//! (`sign_in::page`) and the sandbox's sign-in pages (`sandbox::signin`).
//!
//! Hand-written on purpose, ten lines: the small escaping crates do not produce the
//! output the pages (and their tests) rely on. `html-escape`'s `encode_safe` and
//! `v_htmlescape` write `'` as `&#x27;` and also escape `/` (`&#x2F;`), changing every
//! URL on the pages; `html-escape`'s `encode_quoted_attribute` / `encode_text` leave `'`
//! as it is. The pages need the five characters below, `'` as `&#39;`, nothing else.

/// `s` safe inside HTML text and (single- or double-quoted) attribute values: `&`, `<`,
/// `>`, `"` and `'` are written as character references, everything else as it is.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_five_markup_characters() {
        assert_eq!(
            escape("<a href=\"x\" title='y'>&/"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;/"
        );
        assert_eq!(escape("plain é\n"), "plain é\n");
    }
}
