//! Reading request parameters: typed JSON fields, form/query decoding, key order.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value};

/// A parameter that must be a JSON integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntParam {
    /// Absent or `null`.
    Missing,
    Int(i64),
    /// Anything else, numeric strings included: the portal's "requires `int` data type" (docs/bitrix24-api.md#add).
    WrongType,
}

pub(crate) fn int_param(obj: &Map<String, Value>, key: &str) -> IntParam {
    match obj.get(key) {
        None | Some(Value::Null) => IntParam::Missing,
        Some(Value::Number(n)) => n.as_i64().map_or(IntParam::WrongType, IntParam::Int),
        Some(_) => IntParam::WrongType,
    }
}

/// A present, non-null parameter.
pub(crate) fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// Decodes `a=1&b=x+y` (application/x-www-form-urlencoded) with `url::form_urlencoded`;
/// later keys win. A malformed escape (`%zz`, a trailing `%4`) stays as it is and invalid
/// UTF-8 becomes U+FFFD, as before.
pub(crate) fn parse_urlencoded(input: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(input.as_bytes())
        .into_owned()
        .collect()
}

/// Keys of the top-level `order` object in the order they were sent.
///
/// `serde_json::Map` sorts keys, but a multi-key `order` is applied in the caller's order,
/// so the raw body is read once more just for this.
pub(crate) fn order_keys(body: &[u8]) -> Vec<String> {
    #[derive(Deserialize)]
    struct Top {
        #[serde(default)]
        order: Option<MaybeKeys>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum MaybeKeys {
        Keys(KeysInOrder),
        #[allow(dead_code)]
        Other(serde::de::IgnoredAny),
    }
    struct KeysInOrder(Vec<String>);
    impl<'de> Deserialize<'de> for KeysInOrder {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = KeysInOrder;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<KeysInOrder, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(k);
                    }
                    Ok(KeysInOrder(keys))
                }
            }
            d.deserialize_map(V)
        }
    }
    match serde_json::from_slice::<Top>(body) {
        Ok(Top {
            order: Some(MaybeKeys::Keys(KeysInOrder(keys))),
        }) => keys,
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ints_are_strict() {
        let obj = json!({"a": 5, "b": "5", "c": null, "d": 5.0, "e": true})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(int_param(&obj, "a"), IntParam::Int(5));
        assert_eq!(int_param(&obj, "b"), IntParam::WrongType);
        assert_eq!(int_param(&obj, "c"), IntParam::Missing);
        assert_eq!(int_param(&obj, "d"), IntParam::WrongType);
        assert_eq!(int_param(&obj, "e"), IntParam::WrongType);
        assert_eq!(int_param(&obj, "zz"), IntParam::Missing);
    }

    #[test]
    fn urlencoded() {
        let p = parse_urlencoded("a=1&b=x+y%21&c&bad=%zz&tail=%4");
        assert_eq!(p["a"], "1");
        assert_eq!(p["b"], "x y!");
        assert_eq!(p["c"], "");
        assert_eq!(p["bad"], "%zz");
        assert_eq!(p["tail"], "%4");
    }

    #[test]
    fn order_keys_keep_request_order() {
        let body = br#"{"order":{"status":"ASC","id":"DESC","createdAt":"asc"},"x":1}"#;
        assert_eq!(order_keys(body), ["status", "id", "createdAt"]);
        assert!(order_keys(br#"{"order":"id"}"#).is_empty());
        assert!(order_keys(b"not json").is_empty());
    }
}
