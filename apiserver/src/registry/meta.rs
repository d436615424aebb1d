//! Small helpers for object metadata: timestamps, uids, generated names.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Now as RFC 3339 with second precision, UTC (`2026-11-24T10:00:00Z`), as Kubernetes writes
/// `metav1.Time`.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    rfc3339(secs)
}

/// `secs` seconds from now, as RFC 3339 (a graceful deletion's deadline).
pub fn rfc3339_in(secs: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    rfc3339(now.saturating_add_signed(secs))
}

/// Seconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(secs: u64) -> String {
    let t = utc(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `secs` since the epoch as a UTC date and time (the latest representable one if beyond it).
fn utc(secs: u64) -> time::OffsetDateTime {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
}

/// A fresh object uid.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `generateName` + 5 characters from kube-apiserver's alphabet (no vowels, no look-alikes).
pub fn generate_name(base: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let suffix: String = bytes[..5].iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    // Names are at most 63 characters for label-named kinds; kube-apiserver trims the base too.
    let base: String = base.chars().take(58).collect();
    format!("{base}{suffix}")
}

/// `metadata.<field>` as a string, or "".
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str).unwrap_or("")
}

/// `metadata.finalizers`, or empty.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_names() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_525_199), "2026-11-24T12:59:59Z");
        let n = generate_name("web-");
        assert!(n.starts_with("web-") && n.len() == 9, "{n}");
    }
}
