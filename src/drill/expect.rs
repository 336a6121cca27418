//! Expectations of SQL checks: `equals`, `atLeast`, `atMost` against one observed value.
//! Numbers compare numerically (exactly for integers, as floats otherwise), anything else
//! as trimmed text. Pure.

use std::cmp::Ordering;

use crate::crd::dr_drill::Expectation;

/// A number as written in a query result or an expectation.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Number {
    Int(i128),
    Float(f64),
}

fn number(s: &str) -> Option<Number> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(i) = t.parse::<i128>() {
        return Some(Number::Int(i));
    }
    // `NaN`/`inf` parse as floats but are no use as counts or thresholds.
    t.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Number::Float)
}

fn compare(a: Number, b: Number) -> Ordering {
    match (a, b) {
        (Number::Int(x), Number::Int(y)) => x.cmp(&y),
        _ => {
            let f = |n| match n {
                Number::Int(i) => i as f64,
                Number::Float(f) => f,
            };
            f(a).partial_cmp(&f(b)).unwrap_or(Ordering::Equal)
        }
    }
}

/// Which comparison an expectation makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Equals,
    AtLeast,
    AtMost,
}

fn single(e: &Expectation) -> Result<(Op, &str), String> {
    let Expectation {
        equals,
        at_least,
        at_most,
    } = e;
    let set: Vec<(Op, &str)> = [
        (Op::Equals, equals),
        (Op::AtLeast, at_least),
        (Op::AtMost, at_most),
    ]
    .into_iter()
    .filter_map(|(op, v)| v.as_deref().map(|v| (op, v)))
    .collect();
    match set.as_slice() {
        [one] => Ok(*one),
        [] => Err("set one of equals, atLeast and atMost".into()),
        _ => Err("set only one of equals, atLeast and atMost".into()),
    }
}

/// Checks that an expectation is usable: exactly one comparison, and a number for
/// `atLeast`/`atMost`.
pub fn validate(e: &Expectation) -> Result<(), String> {
    let (op, v) = single(e)?;
    if op != Op::Equals && number(v).is_none() {
        return Err(format!(
            "{} must be a number, got {v:?}",
            if op == Op::AtLeast {
                "atLeast"
            } else {
                "atMost"
            }
        ));
    }
    Ok(())
}

/// The expectation for people: `= 500`, `>= 1`, `<= 10`.
pub fn describe(e: &Expectation) -> String {
    match single(e) {
        Ok((Op::Equals, v)) => format!("= {}", v.trim()),
        Ok((Op::AtLeast, v)) => format!(">= {}", v.trim()),
        Ok((Op::AtMost, v)) => format!("<= {}", v.trim()),
        Err(e) => format!("(invalid expectation: {e})"),
    }
}

/// Whether `observed` meets the expectation. `Err` when it cannot be evaluated (an
/// invalid expectation); a non-numeric value against a numeric bound does not meet it.
pub fn meets(observed: &str, e: &Expectation) -> Result<bool, String> {
    validate(e)?;
    let (op, want) = single(e)?;
    let (obs, wanted) = (number(observed), number(want));
    Ok(match op {
        Op::Equals => match (obs, wanted) {
            (Some(a), Some(b)) => compare(a, b) == Ordering::Equal,
            _ => observed.trim() == want.trim(),
        },
        Op::AtLeast => obs.is_some_and(|a| compare(a, wanted.expect("validated")).is_ge()),
        Op::AtMost => obs.is_some_and(|a| compare(a, wanted.expect("validated")).is_le()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(v: &str) -> Expectation {
        Expectation {
            equals: Some(v.into()),
            ..Expectation::default()
        }
    }
    fn ge(v: &str) -> Expectation {
        Expectation {
            at_least: Some(v.into()),
            ..Expectation::default()
        }
    }
    fn le(v: &str) -> Expectation {
        Expectation {
            at_most: Some(v.into()),
            ..Expectation::default()
        }
    }

    #[test]
    fn numbers_compare_numerically_and_text_as_text() {
        let cases: &[(&str, Expectation, bool)] = &[
            ("500", eq("500"), true),
            ("500.0", eq("500"), true),
            (" 500 ", eq("500"), true),
            ("0500", eq("500"), true),
            ("499", eq("500"), false),
            ("abc", eq("abc"), true),
            ("abc", eq("ABC"), false),
            ("500", ge("1"), true),
            ("0", ge("1"), false),
            ("1", ge("1"), true),
            ("1.5", ge("1"), true),
            ("10", le("10"), true),
            ("11", le("10"), false),
            ("-3", le("0"), true),
            ("", ge("1"), false),
            ("NULL", ge("0"), false),
            // Exact for big integers, where f64 would round both to the same value.
            ("9007199254740993", eq("9007199254740992"), false),
            ("9007199254740993", ge("9007199254740993"), true),
        ];
        for (observed, e, want) in cases {
            assert_eq!(
                meets(observed, e),
                Ok(*want),
                "{observed:?} {}",
                describe(e)
            );
        }
    }

    #[test]
    fn invalid_expectations_are_reported() {
        assert!(validate(&Expectation::default()).is_err());
        let two = Expectation {
            equals: Some("1".into()),
            at_least: Some("1".into()),
            ..Expectation::default()
        };
        assert!(validate(&two).unwrap_err().contains("only one"));
        assert!(
            validate(&ge("many"))
                .unwrap_err()
                .contains("atLeast must be a number")
        );
        assert!(meets("1", &le("x")).is_err());
        assert!(validate(&eq("anything")).is_ok());
        assert_eq!(describe(&ge("10")), ">= 10");
    }
}
