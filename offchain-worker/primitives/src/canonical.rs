//! RFC 8785 JSON Canonicalization Scheme (JCS).
//!
//! The canonical text of a value is what ECMAScript's `JSON.stringify` prints
//! for it once the members of every object are sorted by the UTF-16 code
//! units of their names:
//! - no whitespace between tokens;
//! - strings escape only `"`, `\` and the control characters below U+0020
//!   (`\b \t \n \f \r` in short form, the rest as lowercase `\u00xx`); every
//!   other character, U+2028 and U+2029 included, is written as UTF-8;
//! - numbers use ECMAScript `Number.prototype.toString`: the shortest digits
//!   that round-trip, exponent form from `1e+21` up and below `1e-6`, and
//!   `-0` printed as `0`;
//! - arrays keep their order.
//!
//! JCS works on I-JSON, where every number is an IEEE 754 double. An integer
//! held by `serde_json` as `u64`/`i64` beyond 2^53 in magnitude would change
//! value on the way through a double, so it is rejected rather than rounded.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

/// The largest integer magnitude accepted: every integer up to 2^53 has an
/// exact IEEE 754 double, so it reads back unchanged.
pub const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Why a value has no canonical form.
///
/// None of these is transient: the same value always fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// The value could not be turned into JSON.
    #[error("cannot serialise to JSON: {0}")]
    Serialize(String),
    /// An integer a double cannot hold exactly (beyond 2^53 and not a
    /// double's value).
    #[error("integer {0} cannot be held exactly by a double")]
    IntegerOutOfRange(String),
    /// A NaN or an infinity, which JSON cannot express.
    #[error("number {0} is not finite")]
    NonFinite(String),
}

/// Returns the RFC 8785 canonical JSON text of `value`.
///
/// Fails on integers beyond 2^53 in magnitude and on non-finite numbers.
pub fn to_canonical_json(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(out, number)?,
        Value::String(text) => write_string(out, text),
        Value::Array(items) => write_array(out, items)?,
        Value::Object(members) => write_object(out, members)?,
    }
    Ok(())
}

fn write_array(out: &mut String, items: &[Value]) -> Result<(), CanonicalError> {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(out, item)?;
    }
    out.push(']');
    Ok(())
}

fn write_object(
    out: &mut String,
    members: &Map<String, Value>,
) -> Result<(), CanonicalError> {
    // `Map` may iterate in UTF-8 byte order or insertion order depending on
    // serde_json features; neither is the UTF-16 order JCS requires.
    let mut sorted: Vec<_> = members.iter().collect();
    sorted.sort_by(|a, b| utf16_cmp(a.0, b.0));

    out.push('{');
    for (i, (name, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        write_value(out, value)?;
    }
    out.push('}');
    Ok(())
}

/// Orders strings as ECMAScript does: by their UTF-16 code units. This
/// differs from code point order once a supplementary character (a
/// surrogate pair, 0xD800..0xDFFF) meets a character in 0xE000..0xFFFF.
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c < '\u{20}' => {
                // Writing into a `String` cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, number: &Number) -> Result<(), CanonicalError> {
    let double = number_to_f64(number)?;
    write_f64(out, double)
}

/// Converts a JSON number to the double JCS formats, refusing integers that
/// the conversion would change. Integers beyond 2^53 are accepted only when
/// a double holds them exactly (as `1000000000000000000` does: that is how
/// a large double reads back from its own canonical text).
fn number_to_f64(number: &Number) -> Result<f64, CanonicalError> {
    let out_of_range = || CanonicalError::IntegerOutOfRange(number.to_string());

    if let Some(unsigned) = number.as_u64() {
        let double = unsigned as f64;
        // Compared in u128 so that 2^64 (the double nearest u64::MAX) differs.
        if unsigned > MAX_EXACT_INTEGER && double as u128 != u128::from(unsigned) {
            return Err(out_of_range());
        }
        return Ok(double);
    }
    if let Some(signed) = number.as_i64() {
        let double = signed as f64;
        if signed.unsigned_abs() > MAX_EXACT_INTEGER
            && double as i128 != i128::from(signed)
        {
            return Err(out_of_range());
        }
        return Ok(double);
    }
    number.as_f64().ok_or_else(|| CanonicalError::NonFinite(number.to_string()))
}

fn write_f64(out: &mut String, double: f64) -> Result<(), CanonicalError> {
    if !double.is_finite() {
        return Err(CanonicalError::NonFinite(double.to_string()));
    }

    // ECMAScript prints negative zero as "0".
    let double = if double == 0.0 { 0.0 } else { double };
    out.push_str(ryu_js::Buffer::new().format_finite(double));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(input: &str) -> Result<String, CanonicalError> {
        let value: Value = serde_json::from_str(input).expect("test input is JSON");
        to_canonical_json(&value)
    }

    #[test]
    fn rfc8785_main_example_is_reproduced() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3,
                        0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let expected = concat!(
            r#"{"literals":[null,true,false],"#,
            r#""numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"#,
            r#""string":"€$\u000f\nA'B\"\\\\\"/"}"#,
        );

        assert_eq!(canonical(input).unwrap(), expected);
    }

    #[test]
    fn object_members_are_sorted_by_utf16_code_units() {
        let cases = [
            // RFC 8785 section 3.2.3.
            (
                r#"{"\u20ac":"Euro Sign","\r":"Carriage Return",
                    "\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One",
                    "\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control",
                    "\u00f6":"Latin Small Letter O With Diaeresis"}"#,
                concat!(
                    r#"{"\r":"Carriage Return","1":"One","#,
                    "\"\u{80}\":\"Control\",",
                    "\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",",
                    "\"\u{20ac}\":\"Euro Sign\",",
                    "\"\u{1f600}\":\"Emoji: Grinning Face\",",
                    "\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}",
                ),
            ),
            // Code point order would put U+E000 before U+10000.
            (r#"{"\ue000":1,"\ud800\udc00":2}"#, "{\"\u{10000}\":2,\"\u{e000}\":1}"),
            (r#"{"b":1,"a":2,"":3,"aa":4}"#, r#"{"":3,"a":2,"aa":4,"b":1}"#),
            (r#"{"10":null,"d":true,"1":[]}"#, r#"{"1":[],"10":null,"d":true}"#),
        ];

        for (input, expected) in cases {
            assert_eq!(canonical(input).unwrap(), expected, "input {input}");
        }
    }

    #[test]
    fn structure_is_compact_nested_and_keeps_array_order() {
        let cases = [
            ("{}", "{}"),
            ("[]", "[]"),
            ("null", "null"),
            (" [ true , false ] ", "[true,false]"),
            ("[3, 1, 2]", "[3,1,2]"),
            (
                r#"{"b": [{"z": 1, "a": 2}], "a": {"d": {"y": true, "x": null}}}"#,
                r#"{"a":{"d":{"x":null,"y":true}},"b":[{"a":2,"z":1}]}"#,
            ),
            (
                r#"[56, {"d": true, "10": null, "1": []}]"#,
                r#"[56,{"1":[],"10":null,"d":true}]"#,
            ),
        ];

        for (input, expected) in cases {
            assert_eq!(canonical(input).unwrap(), expected, "input {input}");
        }
    }

    #[test]
    fn strings_escape_only_what_ecmascript_escapes() {
        let cases = [
            ("", r#""""#),
            ("plain", r#""plain""#),
            ("\"", r#""\"""#),
            ("\\", r#""\\""#),
            ("/", r#""/""#),
            ("\u{08}\t\n\u{0c}\r", r#""\b\t\n\f\r""#),
            ("\u{0}", r#""\u0000""#),
            ("\u{0b}", r#""\u000b""#),
            ("\u{1f}", r#""\u001f""#),
            ("\u{7f}", "\"\u{7f}\""),
            ("é€\u{1f600}", "\"é€\u{1f600}\""),
            ("\u{2028}\u{2029}", "\"\u{2028}\u{2029}\""),
        ];

        for (text, expected) in cases {
            let value = Value::String(text.to_owned());
            assert_eq!(to_canonical_json(&value).unwrap(), expected, "text {text:?}");
        }
    }

    #[test]
    fn doubles_print_as_ecmascript_number_to_string() {
        // RFC 8785 appendix B, plus the exponent-form boundaries.
        let cases: [(u64, &str); 26] = [
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
            (1e20f64.to_bits(), "100000000000000000000"),
            (1e-7f64.to_bits(), "1e-7"),
        ];

        for (bits, expected) in cases {
            let value = Value::from(f64::from_bits(bits));
            assert_eq!(to_canonical_json(&value).unwrap(), expected, "bits {bits:#x}");
        }
    }

    #[test]
    fn number_literals_format_through_the_double() {
        let cases = [
            ("1", "1"),
            ("1.0", "1"),
            ("-1", "-1"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("1e21", "1e+21"),
            ("1E+21", "1e+21"),
            ("1e-7", "1e-7"),
            ("0.000001", "0.000001"),
            ("0.1", "0.1"),
            ("4.50", "4.5"),
            ("333333333.33333329", "333333333.3333333"),
            ("1e300", "1e+300"),
            ("9007199254740992", "9007199254740992"),
            ("-9007199254740992", "-9007199254740992"),
        ];

        for (input, expected) in cases {
            assert_eq!(canonical(input).unwrap(), expected, "input {input}");
        }
    }

    #[test]
    fn integers_a_double_cannot_hold_are_rejected() {
        let cases = [
            Value::from(MAX_EXACT_INTEGER + 1),
            Value::from(-(MAX_EXACT_INTEGER as i64) - 1),
            Value::from(u64::MAX),
            Value::from(i64::MAX),
        ];

        for value in cases {
            let err = to_canonical_json(&value).unwrap_err();
            assert_eq!(err, CanonicalError::IntegerOutOfRange(value.to_string()));
        }
    }

    #[test]
    fn large_integers_a_double_holds_exactly_are_accepted() {
        let cases = [
            (Value::from(1_000_000_000_000_000_000_u64), "1000000000000000000"),
            (Value::from(i64::MIN), "-9223372036854776000"),
            (Value::from(1_u64 << 60), "1152921504606847000"),
        ];
        for (value, expected) in cases {
            assert_eq!(to_canonical_json(&value).unwrap(), expected, "{value}");
        }
        // A double's canonical text reads back to the same canonical text.
        let text = to_canonical_json(&serde_json::json!({ "v": 1e18 })).unwrap();
        let again: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(to_canonical_json(&again).unwrap(), text);
    }

    #[test]
    fn an_out_of_range_integer_deep_inside_fails_the_whole_value() {
        let err = canonical(r#"{"a":[1,{"b":18446744073709551615}]}"#).unwrap_err();

        assert!(matches!(err, CanonicalError::IntegerOutOfRange(_)), "{err}");
    }

    #[test]
    fn non_finite_doubles_are_rejected() {
        for double in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut out = String::new();
            let err = write_f64(&mut out, double).unwrap_err();

            assert!(matches!(err, CanonicalError::NonFinite(_)), "{double}");
            assert!(out.is_empty());
        }
    }
}
