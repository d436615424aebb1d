//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`): exact parsing into nano-units,
//! arithmetic and comparison, and kube's canonical printing (`resource.Quantity.String()`),
//! which LimitRange and ResourceQuota messages and `status.used` show.
//!
//! Worked example: `1.5Gi` is 1610612736 units, stored as 1610612736 * 10^9 nano-units with the
//! binary format; adding `512Mi` gives 2Gi, printed `2Gi`; `0.5` prints as `500m`, `1000m` as `1`,
//! `1500Mi` stays `1500Mi`, `1e3` stays `1e3`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// kube-apiserver's message for a value that is not a quantity.
pub const SYNTAX: &str = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

const NANO: i128 = 1_000_000_000;

/// How a quantity was written, which decides how it is printed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Powers of 1000: `m`, ``, `k`, `M`, `G`, ...
    DecimalSI,
    /// Powers of 1024: `Ki`, `Mi`, `Gi`, ...
    BinarySI,
    /// `e3`, `E-2`.
    DecimalExponent,
}

/// A quantity, exact to the nano-unit (smaller fractions round up, as kube does).
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// `10^exp` if it fits.
fn pow10(exp: u32) -> Option<i128> {
    10i128.checked_pow(exp)
}

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity { nanos: 0, format: Format::DecimalSI };

    /// A whole number of units (object counts).
    pub fn from_units(n: i64) -> Self {
        Self { nanos: i128::from(n) * NANO, format: Format::DecimalSI }
    }

    /// Parses kube's syntax; None if it is not a quantity or too large to hold.
    pub fn parse(s: &str) -> Option<Self> {
        let (negative, rest) = match *s.as_bytes().first()? {
            b'+' => (false, &s[1..]),
            b'-' => (true, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, suffix) = rest.split_at(num_end);
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        if int_part.len() + frac_part.len() == 0 || frac_part.contains('.') {
            return None;
        }
        let (binary_exp, decimal_exp, format) = match suffix {
            "" => (0, 0, Format::DecimalSI),
            "n" => (0, -9, Format::DecimalSI),
            "u" => (0, -6, Format::DecimalSI),
            "m" => (0, -3, Format::DecimalSI),
            "k" => (0, 3, Format::DecimalSI),
            "M" => (0, 6, Format::DecimalSI),
            "G" => (0, 9, Format::DecimalSI),
            "T" => (0, 12, Format::DecimalSI),
            "P" => (0, 15, Format::DecimalSI),
            "E" => (0, 18, Format::DecimalSI),
            "Ki" => (10, 0, Format::BinarySI),
            "Mi" => (20, 0, Format::BinarySI),
            "Gi" => (30, 0, Format::BinarySI),
            "Ti" => (40, 0, Format::BinarySI),
            "Pi" => (50, 0, Format::BinarySI),
            "Ei" => (60, 0, Format::BinarySI),
            _ => {
                let exp = suffix.strip_prefix(['e', 'E'])?;
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4 {
                    return None;
                }
                (0, exp.parse::<i32>().ok()?, Format::DecimalExponent)
            }
        };
        // The digits as one integer, scaled by 10^-len(frac); leading zeros carry nothing.
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let mut mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
        mantissa = mantissa.checked_mul(1i128.checked_shl(binary_exp)?)?;
        let exp10 = decimal_exp + 9 - frac_part.len() as i32;
        let nanos = if mantissa == 0 {
            0
        } else if exp10 >= 0 {
            mantissa.checked_mul(pow10(exp10 as u32)?)?
        } else {
            // Below a nano-unit: round up, as kube rounds sub-nano quantities.
            match pow10(exp10.unsigned_abs()) {
                Some(div) => (mantissa + div - 1) / div,
                None => 1,
            }
        };
        Some(Self { nanos: if negative { -nanos } else { nanos }, format })
    }

    /// A quantity from a JSON string or number (the schema allows both).
    pub fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::String(s) => Self::parse(s),
            Value::Number(n) => Self::parse(&n.to_string()),
            _ => None,
        }
    }

    /// Whether this is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// The value as a float of units (ratios in messages).
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANO as f64
    }
}

/// The sum; the format is the first non-zero operand's (as kube's `Add`).
impl std::ops::Add for Quantity {
    type Output = Quantity;
    fn add(self, other: Quantity) -> Quantity {
        let format = if self.nanos == 0 { other.format } else { self.format };
        Quantity { nanos: self.nanos.saturating_add(other.nanos), format }
    }
}

/// The difference, in the left operand's format.
impl std::ops::Sub for Quantity {
    type Output = Quantity;
    fn sub(self, other: Quantity) -> Quantity {
        Quantity { nanos: self.nanos.saturating_sub(other.nanos), format: self.format }
    }
}

/// The suffix of a power-of-1000 exponent, or kube's `eN` fallback.
fn decimal_suffix(exp: i32, format: Format) -> String {
    if format == Format::DecimalExponent {
        return if exp == 0 { String::new() } else { format!("e{exp}") };
    }
    match exp {
        -9 => "n".into(),
        -6 => "u".into(),
        -3 => "m".into(),
        0 => String::new(),
        3 => "k".into(),
        6 => "M".into(),
        9 => "G".into(),
        12 => "T".into(),
        15 => "P".into(),
        18 => "E".into(),
        _ => format!("e{exp}"),
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let mut format = self.format;
        // kube prints small or fractional binary quantities in decimal rather than round them.
        if format == Format::BinarySI && (self.nanos.abs() < 1024 * NANO || self.nanos % NANO != 0) {
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let mut v = self.nanos / NANO;
            let mut e = 0;
            while e < 6 && v % 1024 == 0 {
                v /= 1024;
                e += 1;
            }
            return write!(f, "{v}{}", ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][e]);
        }
        let (mut m, mut e) = (self.nanos, -9i32);
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        // The exponent goes down to a multiple of 3: 15e2 is 1500, 5e-1 is 500m.
        match e.rem_euclid(3) {
            1 => (m, e) = (m * 10, e - 1),
            2 => (m, e) = (m * 100, e - 2),
            _ => {}
        }
        write!(f, "{m}{}", decimal_suffix(e, format))
    }
}

/// A resource list (`{"cpu": "500m", "memory": "1Gi"}`), keyed by resource name.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Parses a resource list; entries that are not quantities are reported in `bad` as
/// (name, value) and left out.
pub fn resource_list(v: Option<&Value>, bad: &mut Vec<(String, Value)>) -> ResourceList {
    let mut out = ResourceList::new();
    if let Some(map) = v.and_then(Value::as_object) {
        for (k, q) in map {
            match Quantity::from_json(q) {
                Some(q) => {
                    out.insert(k.clone(), q);
                }
                None => bad.push((k.clone(), q.clone())),
            }
        }
    }
    out
}

/// A resource list with unparseable entries left out (objects already validated, policy
/// objects whose bad entries are ignored).
pub fn resource_list_lenient(v: Option<&Value>) -> ResourceList {
    resource_list(v, &mut Vec::new())
}

/// Checks every entry of a resource list at `field` (`spec.hard`): a causes entry per value
/// that is not a quantity or is negative, named as kube does (`spec.hard[cpu]`).
pub fn validate_list(v: Option<&Value>, field: &str, causes: &mut Vec<crate::error::Cause>) {
    let Some(map) = v.and_then(Value::as_object) else { return };
    for (k, q) in map {
        let detail = match Quantity::from_json(q) {
            None => SYNTAX,
            Some(q) if q.nanos < 0 => "must be greater than or equal to 0",
            Some(_) => continue,
        };
        causes.push(crate::error::Cause::invalid(format!("{field}[{k}]"), q, detail));
    }
}

/// `a=1,b=2` in key order, as kube prints resource lists in quota messages.
pub fn pretty(list: &ResourceList) -> String {
    list.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// A resource list as JSON with canonical quantity strings.
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(list.iter().map(|(k, v)| (k.clone(), Value::String(v.to_string()))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn parses_every_suffix_exactly() {
        assert_eq!(q("1").nanos, NANO);
        assert_eq!(q("500m").nanos, NANO / 2);
        assert_eq!(q("0.5").nanos, NANO / 2);
        assert_eq!(q(".5"), q("500m"));
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1Mi"), q("1048576"));
        assert_eq!(q("1.5Gi"), q("1610612736"));
        assert_eq!(q("2Ti"), q("2199023255552"));
        assert_eq!(q("1M"), q("1e6"));
        assert_eq!(q("1G"), q("1E9"));
        assert_eq!(q("3T"), q("3e12"));
        assert_eq!(q("1E"), q("1e18"));
        assert_eq!(q("1Ei"), q("1152921504606846976"));
        assert_eq!(q("12e-3"), q("12m"));
        assert_eq!(q("+2"), q("2"));
        assert_eq!(q("-1").nanos, -NANO);
        assert_eq!(q("1n").nanos, 1);
        assert_eq!(q("1u").nanos, 1000);
        // Below a nano-unit rounds up.
        assert_eq!(q("1e-12").nanos, 1);
        assert_eq!(q("000.25"), q("250m"));
        assert_eq!(Quantity::from_json(&serde_json::json!(2)), Some(q("2")));
        assert_eq!(Quantity::from_json(&serde_json::json!(0.25)), Some(q("250m")));
    }

    #[test]
    fn refuses_what_kube_refuses() {
        for bad in ["", "abc", "1.2.3", ".", "1Kb", "1 Gi", "Gi", "1e", "1e+", "--1", "1mm", "1ki", "1e99999"] {
            assert!(Quantity::parse(bad).is_none(), "{bad:?} should not parse");
        }
        assert!(Quantity::from_json(&serde_json::json!(true)).is_none());
        assert!(Quantity::parse("99999999999999999999999999999999999999E").is_none(), "overflow is refused");
    }

    #[test]
    fn prints_canonically_like_kube() {
        let cases = [
            ("1", "1"),
            ("0", "0"),
            ("0Gi", "0"),
            ("500m", "500m"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("2000000", "2M"),
            ("1G", "1G"),
            ("1000M", "1G"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("1500Mi", "1500Mi"),
            ("2048Ki", "2Mi"),
            ("512", "512"),
            ("0.5Ki", "512"),
            ("100Ki", "100Ki"),
            ("1e3", "1e3"),
            ("1E6", "1e6"),
            ("15e2", "1500"),
            ("1n", "1n"),
            ("10u", "10u"),
            ("-500m", "-500m"),
            ("0.1Ki", "102400m"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn arithmetic_keeps_kube_formats() {
        assert_eq!((q("1Gi") + q("512Mi")).to_string(), "1536Mi");
        assert_eq!((Quantity::ZERO + q("1Gi")).to_string(), "1Gi", "zero takes the other's format");
        assert_eq!((q("250m") + q("750m")).to_string(), "1");
        assert_eq!((q("2") - q("500m")).to_string(), "1500m");
        assert!(q("500m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(Quantity::from_units(3).to_string(), "3");
        assert_eq!(q("1500m").as_f64(), 1.5);
    }

    #[test]
    fn resource_lists() {
        let mut bad = Vec::new();
        let l = resource_list(Some(&serde_json::json!({"cpu": "1", "memory": "x", "pods": 2})), &mut bad);
        assert_eq!(bad, vec![("memory".to_string(), serde_json::json!("x"))]);
        assert_eq!(pretty(&l), "cpu=1,pods=2");
        assert_eq!(to_json(&l), serde_json::json!({"cpu": "1", "pods": "2"}));
        let mut causes = Vec::new();
        validate_list(Some(&serde_json::json!({"cpu": "1", "memory": "lots", "pods": "-1"})), "spec.hard", &mut causes);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["spec.hard[memory]", "spec.hard[pods]"]);
        assert!(causes[0].message.starts_with("Invalid value: \"lots\": quantities must match"), "{}", causes[0].message);
    }
}
