//! Property-based fuzzing of the push parsers and the store (a proptest harness; the same
//! entry points as `fuzz/fuzz_targets/*` for cargo-fuzz). Arbitrary bytes never panic;
//! anything accepted renders to an exposition that parses back to the same exposition; a
//! store fed random pushes keeps a valid, parseable `/metrics`; label limits refuse exactly
//! the series over them.
//!
//! `FUZZ_CASES=N` raises the number of cases (default 256, quick enough for CI).

use std::time::{Duration, SystemTime};

use metrics_gateway::{
    limits::LabelLimits,
    model::{render_metric, Family},
    parse::{proto, text, ParseError},
    render::render_groups,
    store::{Push, Store},
};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn render(fams: &[Family]) -> String {
    let mut out = String::new();
    for f in fams {
        out.push_str(&format!("# TYPE {} {}\n", f.name, f.kind.as_text()));
        for m in &f.metrics {
            render_metric(&f.name, m, &mut out);
        }
    }
    out
}

fn check_fixpoint(fams: Vec<Family>) {
    let once = render(&fams);
    let again = text::parse(once.as_bytes())
        .unwrap_or_else(|e| panic!("our own rendering must parse: {e}\n{once}"));
    assert_eq!(render(&again), once);
}

/// Exposition-shaped text built from plausible pieces (names, labels, escapes, values,
/// comments, TYPE lines, stray bytes), so the fuzzer reaches deep parser states.
fn exposition() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("a".to_owned()),
        Just("h".to_owned()),
        Just("h_bucket".to_owned()),
        Just("h_sum".to_owned()),
        Just("h_count".to_owned()),
        Just("s".to_owned()),
        "[a-z_:][a-z0-9_:]{0,6}",
    ];
    let value = prop_oneof![
        Just("1".to_owned()),
        Just("NaN".to_owned()),
        Just("+Inf".to_owned()),
        Just("-Inf".to_owned()),
        Just("1e-300".to_owned()),
        Just("0x1p3".to_owned()),
        "-?[0-9]{1,4}(\\.[0-9]{0,3})?(e[+-]?[0-9]{1,3})?",
    ];
    let lvalue = prop_oneof![
        Just("".to_owned()),
        Just("\\\\".to_owned()),
        Just("\\\"".to_owned()),
        Just("\\n".to_owned()),
        Just("+Inf".to_owned()),
        Just("0.5".to_owned()),
        "[a-zé/ ]{0,5}",
    ];
    let label = (
        prop_oneof![
            Just("le".to_owned()),
            Just("quantile".to_owned()),
            "[a-z_][a-z0-9_]{0,4}"
        ],
        lvalue,
    )
        .prop_map(|(k, v)| format!("{k}=\"{v}\""));
    let sample = (
        name.clone(),
        proptest::collection::vec(label, 0..4),
        value,
        proptest::option::of(any::<i32>()),
        any::<bool>(),
    )
        .prop_map(|(n, ls, v, ts, braces)| {
            let lbl = if ls.is_empty() && !braces {
                String::new()
            } else {
                format!("{{{}}}", ls.join(","))
            };
            match ts {
                Some(t) => format!("{n}{lbl} {v} {t}\n"),
                None => format!("{n}{lbl} {v}\n"),
            }
        });
    let kind = prop_oneof![
        Just("counter"),
        Just("gauge"),
        Just("histogram"),
        Just("summary"),
        Just("untyped"),
        Just("bogus")
    ];
    let line = prop_oneof![
        4 => sample,
        1 => (name.clone(), kind).prop_map(|(n, k)| format!("# TYPE {n} {k}\n")),
        1 => (name, "[ -~]{0,10}").prop_map(|(n, h)| format!("# HELP {n} {h}\n")),
        1 => "[ -~\t\r]{0,12}\n",
    ];
    proptest::collection::vec(line, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(f) = text::parse(&data) {
            check_fixpoint(f);
        }
        if let Ok(f) = proto::parse(&data) {
            // Protobuf can carry anything; only what the store accepts must render validly.
            let store = Store::default();
            let key = [("job".to_owned(), "f".to_owned())].into();
            let _ = store.push(Push { key, families: f, replace: true, ttl: None, limits: Default::default() }, SystemTime::now());
            let mut out = String::new();
            render_groups(&store, &mut out);
            text::parse(out.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{out}"));
        }
    }

    #[test]
    fn exposition_shaped_input_parses_to_a_fixpoint(body in exposition()) {
        if let Ok(f) = text::parse(body.as_bytes()) {
            check_fixpoint(f);
        }
    }

    #[test]
    fn label_limits_refuse_exactly_the_series_over_them(
        body in exposition(),
        max_labels in 0usize..3,
        max_name in 0usize..3,
        max_value in 0usize..3,
    ) {
        let limits = LabelLimits {
            max_labels_per_series: max_labels,
            max_label_name_length: max_name,
            max_label_value_length: max_value,
        };
        let over = |fams: &[Family]| {
            fams.iter()
                .flat_map(|f| f.metrics.iter().map(move |m| (f, m)))
                .any(|(f, m)| limits.check(&f.name, &m.labels).is_err())
        };
        match (text::parse(body.as_bytes()), text::parse_with(body.as_bytes(), limits)) {
            (Ok(free), Ok(limited)) => {
                prop_assert_eq!(render(&free), render(&limited));
                prop_assert!(!over(&limited), "a series over the limits got through:\n{}", body);
            }
            (Ok(free), Err(ParseError::Limit { .. })) => {
                prop_assert!(over(&free), "refused though within the limits:\n{}", body);
            }
            (Ok(_), Err(e)) => prop_assert!(false, "limits changed a valid body's error: {}", e),
            (Err(_), Ok(_)) => prop_assert!(false, "limits made an invalid body valid"),
            (Err(_), Err(_)) => {}
        }
    }

    #[test]
    fn random_push_sequences_keep_the_exposition_valid(
        pushes in proptest::collection::vec((exposition(), 0u8..4, any::<bool>(), any::<bool>()), 1..8)
    ) {
        let store = Store::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (i, (body, group, replace, delete)) in pushes.into_iter().enumerate() {
            let mut key: std::collections::BTreeMap<String, String> =
                [("job".to_owned(), "j".to_owned())].into();
            if group > 0 {
                key.insert("g".into(), group.to_string());
            }
            let now = t0 + Duration::from_secs(i as u64);
            if delete {
                store.delete(&key, now);
                continue;
            }
            if let Ok(families) = text::parse(body.as_bytes()) {
                let _ = store.push(Push { key, families, replace, ttl: None, limits: Default::default() }, now);
            }
            let mut out = String::new();
            render_groups(&store, &mut out);
            let parsed = text::parse(out.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{out}"));
            // No duplicate series and one TYPE per family: the consistency check held.
            let mut seen = std::collections::HashSet::new();
            for f in &parsed {
                prop_assert!(seen.insert(f.name.clone()), "family {} twice\n{}", f.name, out);
                let mut series = std::collections::HashSet::new();
                for m in &f.metrics {
                    prop_assert!(series.insert(m.labels.clone()), "duplicate series in {}\n{}", f.name, out);
                }
            }
        }
    }
}
