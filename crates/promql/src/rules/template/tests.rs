//! Behaviour Prometheus documents that promtool cannot show (`pathPrefix`, `externalURL`,
//! query failures) and the errors: every case here names what a user would see. The
//! annotations promtool can check are compared with promtool's own output in
//! `tests/template_conformance.rs`.

use std::cell::RefCell;

use super::*;

/// A fake querier: answers `up` with two samples in a fixed order, fails `broken`, records
/// every query.
struct FakeQuerier {
    seen: RefCell<Vec<String>>,
}

impl FakeQuerier {
    fn new() -> Self {
        Self {
            seen: RefCell::new(Vec::new()),
        }
    }

    fn answer(&self, q: &str) -> Result<QueryRows, crate::eval::Error> {
        self.seen.borrow_mut().push(q.to_string());
        let row = |inst: &str, v: f64| {
            (
                BTreeMap::from([
                    ("__name__".to_string(), "up".to_string()),
                    ("instance".to_string(), inst.to_string()),
                ]),
                v,
            )
        };
        match q {
            "up" => Ok(vec![row("b:9100", 0.0), row("a:9100", 1.0)]),
            "broken" => Err(crate::eval::Error::Parse(
                "unexpected end of input at char 7".into(),
            )),
            "slow" => Err(crate::eval::Error::Timeout),
            _ => Ok(Vec::new()),
        }
    }
}

fn expand_with(src: &str, value: f64, url: &str, q: Option<&QueryFn>) -> Result<String> {
    Template::parse("__alert_T", src)?.expand_alert(&AlertData {
        labels: BTreeMap::from([
            ("instance".to_string(), "web-1.example.com:9100".to_string()),
            ("job".to_string(), "node".to_string()),
        ]),
        external_labels: BTreeMap::from([("cluster".to_string(), "prod".to_string())]),
        external_url: url.to_string(),
        value,
        query: q,
    })
}

fn expand(src: &str) -> Result<String> {
    let fake = FakeQuerier::new();
    let q = |s: &str| fake.answer(s);
    expand_with(src, 1.5, "http://gw.example:9091/alerts/x%20y", Some(&q))
}

fn ok(src: &str) -> String {
    expand(src).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn exec_err(src: &str) -> ExecError {
    match expand(src) {
        Err(Error::Exec { kind, .. }) => kind,
        other => panic!("{src}: expected an execution error, got {other:?}"),
    }
}

fn parse_err(src: &str) -> (usize, ParseError) {
    match Template::parse("t", src) {
        Err(Error::Parse { line, kind, .. }) => (line, kind),
        other => panic!("{src}: expected a parse error, got {other:?}"),
    }
}

fn calling(func: &str, e: ExecError) -> ExecError {
    match e {
        ExecError::Call { func: f, source } if f == func => *source,
        other => panic!("expected `error calling {func}`, got {other:?}"),
    }
}

#[test]
fn external_url_and_path_prefix_come_from_the_external_url() {
    assert_eq!(
        ok("{{ externalURL }}|{{ pathPrefix }}"),
        "http://gw.example:9091/alerts/x%20y|/alerts/x y"
    );
    let none = expand_with("[{{ pathPrefix }}]", 0.0, "http://gw:9091", None).unwrap();
    assert_eq!(none, "[]");
    // A niladic function is called where it is an argument.
    assert_eq!(
        ok(r#"{{ printf "%s/graph" externalURL }}"#),
        "http://gw.example:9091/alerts/x%20y/graph"
    );
}

#[test]
fn query_runs_through_the_querier_and_its_failure_is_named() {
    let fake = FakeQuerier::new();
    let q = |s: &str| fake.answer(s);
    let out = expand_with(
        r#"{{ range query "up" }}{{ .Labels.instance }}={{ .Value }} {{ end }}{{ with query "up" | sortByLabel "instance" | first }}{{ label "instance" . }} {{ value . }} {{ . }}{{ end }}"#,
        0.0,
        "",
        Some(&q),
    )
    .unwrap();
    assert_eq!(
        out,
        "b:9100=0 a:9100=1 a:9100 1 &{map[__name__:up instance:a:9100] 1}"
    );
    assert_eq!(*fake.seen.borrow(), ["up", "up"]);

    let e = calling("query", exec_err(r#"{{ query "broken" }}"#));
    assert_eq!(
        e,
        ExecError::Query {
            query: "broken".into(),
            source: crate::eval::Error::Parse("unexpected end of input at char 7".into())
        }
    );
    assert_eq!(
        e.to_string(),
        r#"error executing query "broken": parse error: unexpected end of input at char 7"#
    );
    // The querier's failure keeps its kind, not only its text.
    let e = calling("query", exec_err(r#"{{ query "slow" }}"#));
    assert!(
        matches!(
            &e,
            ExecError::Query {
                source: crate::eval::Error::Timeout,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        r#"error executing query "slow": query timed out in expression evaluation"#
    );
    let e = expand_with(r#"{{ query "up" }}"#, 0.0, "", None).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"template: __alert_T:1: executing "__alert_T" at <query "up">: error calling query: query is not available here"#
    );
    assert_eq!(
        calling("first", exec_err(r#"{{ query "nothing" | first }}"#)),
        ExecError::FirstOfEmpty
    );
    assert_eq!(ok(r#"{{ strvalue (query "up" | first) }}|"#), "|");
}

#[test]
fn comparisons_are_typed_as_in_go() {
    // `1000` is an int constant and `$value` a float64: Go refuses to compare them.
    assert_eq!(
        calling("gt", exec_err("{{ if gt $value 1000 }}x{{ end }}")),
        ExecError::IncompatibleComparison
    );
    assert_eq!(ok("{{ gt $value 1.0 }}"), "true");
    assert_eq!(
        calling("lt", exec_err("{{ lt $labels $labels }}")),
        ExecError::InvalidComparison
    );
    assert_eq!(
        calling("lt", exec_err("{{ lt true false }}")),
        ExecError::InvalidComparison
    );
    assert_eq!(
        calling("eq", exec_err("{{ eq 1 }}")),
        ExecError::MissingComparisonArg
    );
    // NaN equals nothing and orders with nothing.
    assert_eq!(
        ok(r#"{{ $n := humanize "NaN" }}{{ $f := 0.0 }}{{ eq $n "NaN" }} {{ ne $f 0.0 }}"#),
        "true false"
    );
}

#[test]
fn function_arguments_are_checked() {
    let e = exec_err("{{ humanize 1 2 }}");
    assert_eq!(
        e,
        ExecError::WrongArgCount {
            func: "humanize",
            want: "1",
            got: 2
        }
    );
    assert_eq!(
        calling("humanize", exec_err(r#"{{ humanize "abc" }}"#)),
        ExecError::NotANumber("abc".into())
    );
    assert_eq!(
        calling("toUpper", exec_err("{{ $value | toUpper }}")),
        ExecError::WrongType {
            want: "string",
            got: "float64"
        }
    );
    assert!(matches!(
        calling("match", exec_err(r#"{{ match "(" "x" }}"#)),
        ExecError::Regex(_)
    ));
    assert!(matches!(
        calling("reReplaceAll", exec_err(r#"{{ reReplaceAll "[" "" "x" }}"#)),
        ExecError::Regex(_)
    ));
    assert_eq!(
        calling("parseDuration", exec_err(r#"{{ parseDuration "1.5h" }}"#)),
        ExecError::InvalidDuration("1.5h".into())
    );
    assert_eq!(
        calling("parseDuration", exec_err(r#"{{ parseDuration "-1h" }}"#)),
        ExecError::InvalidDuration("-1h".into())
    );
    assert_eq!(
        ok(r#"{{ parseDuration "1d2h" }} {{ parseDuration "0" }}"#),
        "93600 0"
    );
    assert!(matches!(
        calling("toTime", exec_err(r#"{{ toTime "NaN" }}"#)),
        ExecError::NotATime(_)
    ));
    assert!(matches!(
        calling("toTime", exec_err("{{ toTime 1e300 }}")),
        ExecError::NotATime(_)
    ));
    assert_eq!(
        calling("len", exec_err("{{ len 3 }}")),
        ExecError::NoLength("int")
    );
    assert_eq!(
        calling("index", exec_err(r#"{{ index (query "up") 5 }}"#)),
        ExecError::IndexOutOfRange(5)
    );
    assert_eq!(
        calling("value", exec_err("{{ value 1.5 }}")),
        ExecError::WrongType {
            want: "*template.sample",
            got: "float64"
        }
    );
    assert_eq!(
        exec_err("{{ .Nope }}"),
        ExecError::NoField {
            field: "Nope".into(),
            type_name: "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }"
        }
    );
    assert_eq!(
        exec_err("{{ $value 1 }}"),
        ExecError::NotAFunction("$value".into())
    );
    assert_eq!(
        exec_err(r#"{{ template "nope" }}"#),
        ExecError::NoTemplate("nope".into())
    );
}

#[test]
fn string_helpers_follow_go() {
    assert_eq!(
        ok(r#"{{ title "hello wORLD a-b_c" }}"#),
        "Hello WORLD A-B_c"
    );
    assert_eq!(ok(r#"{{ "Ab" | toLower }}{{ "cd" | toUpper }}"#), "abCD");
    assert_eq!(
        ok(r#"{{ stripPort "[fe80::1]:80" }} {{ stripPort "a:b:c" }} {{ stripPort ":80" }}|"#),
        "fe80::1 a:b:c |"
    );
    assert_eq!(
        ok(
            r#"{{ stripDomain "[::1]:80" }} {{ stripDomain "db.x.y:5432" }} {{ stripDomain "fe80::1" }}"#
        ),
        "[::1]:80 db:5432 fe80::1"
    );
    assert_eq!(
        ok(r#"{{ reReplaceAll "(?P<h>[a-z]+)-\\d" "$h!" "web-1 db-2" }}"#),
        "web! db!"
    );
    assert_eq!(ok(r#"{{ match "^web" $labels.instance }}"#), "true");
    assert_eq!(
        ok(r#"{{ safeHtml "<i>" }}{{ html "<i>" }}"#),
        "<i>&lt;i&gt;"
    );
    assert_eq!(ok(r#"{{ urlquery "a b/é%~-_." }}"#), "a+b%2F%C3%A9%25~-_.");
    assert_eq!(
        ok(r#"{{ js "<a>=\"&\"" }}"#),
        r#"\u003Ca\u003E\u003D\"\u0026\""#
    );
}

#[test]
fn humanizers_cover_every_range() {
    assert_eq!(
        ok("{{ humanize 1e-10 }} {{ humanize 0.5 }} {{ humanize 1e27 }}"),
        "100p 500m 1000Y"
    );
    assert_eq!(
        ok("{{ humanize1024 1 }} {{ humanize1024 1073741824 }} {{ humanize1024 -0.5 }}"),
        "1 1Gi -0.5"
    );
    assert_eq!(
        ok("{{ humanizeDuration 86400 }}|{{ humanizeDuration -0.001 }}|{{ humanizeDuration 3600 }}"),
        "1d 0h 0m 0s|-1ms|1h 0m 0s"
    );
    assert_eq!(
        ok("{{ humanizePercentage 0.5 }} {{ humanizePercentage 2 }}"),
        "50% 200%"
    );
    assert_eq!(
        ok("{{ humanizeTimestamp -1.5 }}|{{ humanizeTimestamp 1.0005 }}"),
        "1969-12-31 23:59:58.5 +0000 UTC|1970-01-01 00:00:01 +0000 UTC"
    );
    assert_eq!(ok("{{ toTime 86400 }}"), "1970-01-02 00:00:00 +0000 UTC");
}

#[test]
fn control_flow_pipelines_and_variables() {
    let src = "{{ if gt $value 10.0 }}high{{ else if gt $value 1.0 }}mid{{ else }}low{{ end }}";
    assert_eq!(ok(src), "mid");
    assert_eq!(
        ok("{{ with $x := $labels.job }}{{ $x }}/{{ . }}{{ end }}{{ with $labels.nope }}x{{ else with $labels.job }}{{ . }}{{ end }}"),
        "node/nodenode"
    );
    assert_eq!(
        ok("{{ range $i, $e := args 1 2 }}{{ $i }}={{ $e }};{{ end }}"),
        "arg0=1;arg1=2;"
    );
    assert_eq!(ok("{{ range $e := args 7 }}{{ $e }}{{ end }}"), "7");
    assert_eq!(ok("{{ range 3 }}{{ . }}{{ end }}"), "012");
    assert_eq!(
        ok("{{ range $i, $_ := args 1 2 3 }}{{ if eq $i \"arg1\" }}{{ continue }}{{ end }}{{ if eq $i \"arg2\" }}{{ break }}{{ end }}{{ $i }}{{ end }}"),
        "arg0"
    );
    // Assignment reaches the variable of the enclosing block; declarations end with it.
    assert_eq!(
        ok("{{ $n := 0 }}{{ range args 1 2 }}{{ $n = . }}{{ end }}{{ $n }}"),
        "2"
    );
    assert_eq!(
        ok(
            r#"{{ define "row" }}{{ .arg0 }}={{ .arg1 }}{{ end }}{{ template "row" args "a" 1 }},{{ template "row" args "b" 2 }}"#
        ),
        "a=1,b=2"
    );
    assert_eq!(ok(r#"{{ $.Labels.job }} {{ $.Value }}"#), "node 1.5");
    assert_eq!(
        ok(r#"{{ $labels.job | printf "%s-%s" "x" }} {{ printf "%6.2f|%-4d|%x" 3.14159 7 "hi" }}"#),
        "x-node   3.14|7   |6869"
    );
    assert_eq!(ok(r#"{{ print "a" 1 2 "b" }} {{ len "é" }}"#), "a1 2b 2");
    assert_eq!(ok("{{ and 1 2 }} {{ or 0 0 }} {{ not 0 }}"), "2 0 true");
    assert_eq!(
        ok("{{ 'a' }} {{ 1_000 }} {{ 0o17 }} {{ 0b11 }} {{ .5 }}"),
        "97 1000 15 3 0.5"
    );
    assert_eq!(ok("a\n  {{- /* note */ -}}\n  b"), "ab");
}

#[test]
fn parse_errors_name_the_line_and_problem() {
    assert_eq!(
        parse_err("{{ if $value }}x"),
        (1, ParseError::UnexpectedEof)
    );
    assert_eq!(
        parse_err("a\nb {{ nosuchfunc 1 }}"),
        (2, ParseError::FunctionNotDefined("nosuchfunc".into()))
    );
    assert_eq!(
        parse_err("x\n{{ $labels.x "),
        (2, ParseError::UnclosedAction)
    );
    assert_eq!(
        parse_err("{{ $undefined }}"),
        (1, ParseError::UndefinedVariable("$undefined".into()))
    );
    // A variable lives until the end of the block that declared it.
    assert_eq!(
        parse_err("{{ if true }}{{ $x := 1 }}{{ end }}{{ $x }}"),
        (1, ParseError::UndefinedVariable("$x".into()))
    );
    // Inside `define` only `$` exists (Prometheus declares `$labels` in the main body).
    assert_eq!(
        parse_err(r#"{{ define "d" }}{{ $labels }}{{ end }}"#),
        (1, ParseError::UndefinedVariable("$labels".into()))
    );
    assert_eq!(
        parse_err("{{ $nope = 1 }}"),
        (1, ParseError::UndefinedVariable("$nope".into()))
    );
    assert_eq!(
        parse_err("{{ end }}"),
        (1, ParseError::UnexpectedKeyword("end".into()))
    );
    assert_eq!(
        parse_err("{{ break }}"),
        (1, ParseError::UnexpectedKeyword("break".into()))
    );
    assert_eq!(parse_err(r#"{{ "abc }}"#), (1, ParseError::UnclosedAction));
    assert_eq!(
        parse_err(r#"{{ "a\qb" }}"#),
        (1, ParseError::BadEscape(r#""a\qb""#.into()))
    );
    assert_eq!(
        parse_err("{{ 1x }}"),
        (1, ParseError::BadNumber("1x".into()))
    );
    assert_eq!(parse_err("{{ }}"), (1, ParseError::MissingValue("command")));
    assert_eq!(
        parse_err("{{ 1 | }}"),
        (1, ParseError::MissingValue("command"))
    );
    assert_eq!(parse_err("{{ (1 }}"), (1, ParseError::UnclosedParen));
    assert_eq!(parse_err("{{/* x }}"), (1, ParseError::UnclosedComment));
    assert_eq!(
        parse_err(r#"{{ define "a" }}1{{ end }}{{ define "a" }}2{{ end }}"#),
        (1, ParseError::Redefined("a".into()))
    );
    assert_eq!(
        parse_err("{{ range $a, $b, $c := 1 }}{{ end }}"),
        (1, ParseError::TooManyDeclarations("range"))
    );
    assert_eq!(
        parse_err("{{ template x }}"),
        (1, ParseError::TemplateName("template"))
    );
    let e = Template::parse("__alert_X", "ok\n{{ humanise $value }}").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"template: __alert_X:2: function "humanise" not defined"#
    );
}

#[test]
fn execution_errors_name_the_line_and_action() {
    let e = expand("line one\n{{ humanize \"abc\" }}").unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"template: __alert_T:2: executing "__alert_T" at <humanize "abc">: error calling humanize: cannot parse "abc" as a number"#
    );
}

#[test]
fn runaway_templates_are_stopped() {
    assert_eq!(
        exec_err(r#"{{ define "loop" }}{{ template "loop" . }}{{ end }}{{ template "loop" . }}"#),
        ExecError::TooDeep(exec::MAX_DEPTH)
    );
    assert_eq!(
        exec_err("{{ range 100000000 }}{{ end }}"),
        ExecError::TooManySteps(exec::MAX_STEPS)
    );
    assert_eq!(
        exec_err(r#"{{ range 200000 }}0123456789{{ end }}"#),
        ExecError::TooLong(exec::MAX_OUTPUT)
    );
}

#[test]
fn every_function_is_in_the_one_table_and_parses() {
    let names: Vec<&str> = functions::names().collect();
    for f in [
        "humanize",
        "humanize1024",
        "humanizeDuration",
        "humanizePercentage",
        "humanizeTimestamp",
        "toTime",
        "title",
        "toUpper",
        "toLower",
        "match",
        "reReplaceAll",
        "label",
        "value",
        "first",
        "query",
        "strvalue",
        "sortByLabel",
        "safeHtml",
        "stripPort",
        "stripDomain",
        "pathPrefix",
        "externalURL",
        "graphLink",
        "tableLink",
        "args",
        "parseDuration",
        "and",
        "or",
        "not",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "len",
        "index",
        "slice",
        "print",
        "printf",
        "println",
        "html",
        "js",
        "urlquery",
        "call",
    ] {
        assert!(names.contains(&f), "{f} missing");
        assert!(
            Template::parse(
                "t",
                &format!("{{{{ if false }}}}{{{{ {f} }}}}{{{{ end }}}}")
            )
            .is_ok(),
            "{f}"
        );
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "a function is listed twice");
    // Not Prometheus functions: refused at parse, as Prometheus refuses them.
    for f in ["now", "tmpl", "toDuration"] {
        assert_eq!(
            parse_err(&format!("{{{{ {f} }}}}")).1,
            ParseError::FunctionNotDefined(f.into())
        );
    }
}

#[test]
fn a_parsed_template_can_be_shared_across_threads() {
    // Rule groups holding templates are evaluated on the runtime's worker threads.
    fn shared<T: Send + Sync>(_: &T) {}
    shared(&Template::parse("t", "{{ define \"x\" }}{{ . }}{{ end }}").unwrap());
}
