//! Number helpers shared by the analysers.
//!
//! Everything an analyser outputs is hashed, so only IEEE basic operations
//! (`+ - * /`, `sqrt`, comparisons) are used on the way: they are correctly
//! rounded on every platform, unlike `exp` or `ln`, whose last bit may
//! depend on the C library.

/// Clamps `x` into the finite range; NaN becomes zero.
///
/// Used after every operation that could overflow on extreme inputs, so no
/// infinity or NaN can reach an output.
pub(crate) fn saturate(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-f64::MAX, f64::MAX)
    }
}

/// Formats a number for a summary sentence: at most `decimals` decimals
/// with trailing zeros removed for ordinary magnitudes, scientific notation
/// with four significant digits for very large or very small ones.
pub(crate) fn display(x: f64, decimals: usize) -> String {
    let magnitude = x.abs();
    if x == 0.0 || !x.is_finite() {
        return if x.is_finite() { "0".to_owned() } else { format!("{x}") };
    }
    if !(1e-3..1e9).contains(&magnitude) {
        return format!("{x:.3e}");
    }
    let text = format!("{x:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    match text {
        "-0" => "0".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturate_keeps_finite_values_and_clamps_the_rest() {
        let cases = [
            (1.5, 1.5),
            (-0.0, -0.0),
            (f64::INFINITY, f64::MAX),
            (f64::NEG_INFINITY, -f64::MAX),
            (f64::NAN, 0.0),
        ];
        for (input, expected) in cases {
            assert_eq!(saturate(input).to_bits(), expected.to_bits(), "{input}");
        }
    }

    #[test]
    fn display_is_short_for_every_magnitude() {
        let cases = [
            (97.3, 1, "97.3"),
            (41.25, 3, "41.25"),
            (6.0, 1, "6"),
            (-0.0, 1, "0"),
            (-0.01, 1, "0"),
            (1e300, 1, "1.000e300"),
            (-2.5e-300, 3, "-2.500e-300"),
            (123_456_789.0, 1, "123456789"),
        ];
        for (input, decimals, expected) in cases {
            assert_eq!(display(input, decimals), expected, "{input}");
        }
    }
}
