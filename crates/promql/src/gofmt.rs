//! Go's `fmt` formatting of `float64` (`%v`/`%g`, `%.Ng`, `%.Ne`, `%.Nf`): one copy, used
//! by histograms' text form (`count_values` of a histogram) and by alert templates.

/// Go's `%v` of a `float64` (`strconv.FormatFloat(f, 'g', -1, 64)`): the shortest
/// digits that read back as `f`, in exponent form when the decimal exponent is below -4
/// or at least 6 (`1.234567e+06`, `1e-05`), else plain (`123456.7`, `0.0001`).
pub fn format_v(f: f64) -> String {
    if let Some(s) = non_finite(f) {
        return s;
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Shortest round-trip digits, from Rust's `{:e}` (same algorithm family as Go's).
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        go_exp(mant, exp)
    } else {
        format!("{f}")
    }
}

/// Go's `%.<prec>g`.
pub fn format_g(f: f64, prec: usize) -> String {
    if let Some(s) = non_finite(f) {
        return s;
    }
    let prec = prec.max(1);
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let s = format!("{:.*e}", prec - 1, f);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        go_exp(&trim_zeros(mant), exp)
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{f:.decimals$}"))
    }
}

/// Go's `%.<prec>e`.
pub fn format_e(f: f64, prec: usize) -> String {
    if let Some(s) = non_finite(f) {
        return s;
    }
    let s = format!("{f:.prec$e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    go_exp(mant, exp.parse().unwrap_or(0))
}

/// Go's `%.<prec>f`.
pub fn format_f(f: f64, prec: usize) -> String {
    non_finite(f).unwrap_or_else(|| format!("{f:.prec$}"))
}

fn non_finite(f: f64) -> Option<String> {
    if f.is_nan() {
        Some("NaN".into())
    } else if f.is_infinite() {
        Some(if f > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

/// A mantissa and exponent in Go's form: `1.5e-05`, `1e+20` (at least two exponent digits).
fn go_exp(mant: &str, exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.unsigned_abs())
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_formatting() {
        assert_eq!(format_v(1234567.0), "1.234567e+06");
        assert_eq!(format_v(123456.7), "123456.7");
        assert_eq!(format_v(100000.0), "100000");
        assert_eq!(format_v(1e6), "1e+06");
        assert_eq!(format_v(0.001), "0.001");
        assert_eq!(format_v(1.5e-5), "1.5e-05");
        assert_eq!(format_v(1e-5), "1e-05");
        assert_eq!(format_v(-0.0), "-0");
        assert_eq!(format_v(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_v(f64::NAN), "NaN");
        assert_eq!(format_g(100000.0, 4), "1e+05");
        assert_eq!(format_g(0.000123456, 3), "0.000123");
        assert_eq!(format_e(0.0, 2), "0.00e+00");
        assert_eq!(format_e(1e100, 1), "1.0e+100");
        assert_eq!(format_f(2.5, 3), "2.500");
    }
}
