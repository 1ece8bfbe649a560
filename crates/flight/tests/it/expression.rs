//! Our parse-once evaluator against `jexl-eval`, the reference: the same result (numbers
//! compared by value) or both an error, over a corpus of expressions.

use proptest::prelude::*;
use serde_json::{json, Value};
use testpilot_flight::expression::{
    check, compile, eval, parse, transform, Context, FlightContext, MAX_DEPTH, MAX_LENGTH,
    MAX_NESTING, TRANSFORMS,
};
use testpilot_flight::{Person, Timestamp};

const CORPUS: &[&str] = &[
    "1", "1 + 2 * 3", "(2 + 3) * 4", "7 // 2", "7 % 4", "2 ^ 10", "1 / 0 == 1 / 0", "'a' + 'b'",
    "'bar' in 'foobar'", "'x' in ['x', 'y']", "3 in [1, 2, 3]", "'k' in {k: 1}", "1 in 'abc'",
    "true && 'x'", "false || 0 || 'last'", "null || 5", "'' && 1", "1 == 1.0000000001",
    "'a' < 'b'", "'b' >= 'b'", "true == true", "null == null", "[1, [2]] == [1, [2]]",
    "{a: 1} == {a: 1}", "1 == '1'", "1 != 2", "'x' != 'x'", "[1, 2, 3][1]", "[1, 2][5]",
    "{a: {b: 'c'}}.a.b", "{a: 1}['a']", "{a: 1}.zz", "true ? 'y' : 'n'", "0 ? 'y' : 'n'",
    "person.channel", "person.channel == 'beta'", "person.missing", "person.missing.deeper",
    "person['os']", "flight.studyname", "flight.version", "now > 0", "now",
    "person.tags[.name == 'x']", "person.tags[.n > 1]", "person.tags[0].name", "person.tags|length",
    "person|keys|length", "person.channel|length", "'abc'|length", "5|keys",
    "person.appversion|versionCompare('115.0')", "'1.0'|versionCompare('1.0.0')",
    "'2026-04-23'|date", "'nope'|date", "1|date",
    "person.locale|regExpMatch('^(en)-(US)')", "person.locale|regExpMatch('^fr') == null",
    "'ABC'|regExpMatch('b', 'i')", "'x'|regExpMatch('(')",
    "[person.personid, 'k']|stableSample(0.5)", "['test-1']|stableSample(0.5)", "['test-4']|stableSample(0.5)",
    "'test-0'|bucketSample(0, 5, 10)", "'test'|bucketSample(8, 5, 10)", "'x'|bucketSample(0, 1, 0)",
    "'x'|stableSample('half')", "'x'|nosuch", "undefinedName", "1 + 'a'", "true + 1", "[1] < [2]",
    "person.channel == 'beta' && [person.personid, flight.studyname]|stableSample(0.25) && now < '2027-06-01'|date",
];

fn reference() -> jexl_eval::Evaluator<'static> {
    TRANSFORMS
        .iter()
        .fold(jexl_eval::Evaluator::new(), |ev, name| {
            ev.with_transform(name, move |a: &[Value]| {
                transform(name, a).map_err(anyhow::Error::msg)
            })
        })
}

/// Numbers by value: jexl-eval writes `3.0` where we write `3`.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn agrees_with_jexl_eval() {
    let person = Person::new("299eed1e-be6d-457d-9e53-da7b1a03f10d")
        .with("channel", "beta")
        .with("os", "linux")
        .with("locale", "en-US")
        .with("appversion", "128.0b3")
        .with(
            "tags",
            json!([{"name": "x", "n": 1}, {"name": "y", "n": 2}]),
        );
    let flight = FlightContext {
        studyname: "study",
        version: Some(3),
    };
    let now = Timestamp(1_798_000_000_000);
    let ctx = Context {
        person: &person,
        flight: &flight,
        now,
    };
    let ref_ctx =
        json!({"person": person, "flight": {"studyname": "study", "version": 3}, "now": now.0});
    let ev = reference();
    let mut disagreements = Vec::new();
    for e in CORPUS {
        let ours = eval(e, &ctx);
        let theirs = ev.eval_in_context(e, &ref_ctx).map_err(|x| x.to_string());
        let agree = match (&ours, &theirs) {
            (Ok(a), Ok(b)) => same(a, b),
            (Err(_), Err(_)) => true,
            _ => false,
        };
        if !agree {
            disagreements.push(format!("{e}: ours {ours:?}, jexl-eval {theirs:?}"));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// Evaluates `text` for `person`, in a flight `s` at time 0.
pub fn eval_for(person: &Person, text: &str) -> Result<Value, String> {
    let flight = FlightContext {
        studyname: "s",
        version: None,
    };
    let ctx = Context {
        person,
        flight: &flight,
        now: Timestamp(0),
    };
    eval(text, &ctx)
}

/// Whole numbers hash as JavaScript writes them, so inputs with numbers bucket as in Normandy.
#[test]
fn whole_numbers_hash_like_javascript() {
    let person = Person::new("p");
    assert_eq!(
        eval_for(&person, "[1234, 'test_namespace']")
            .unwrap()
            .to_string(),
        r#"[1234,"test_namespace"]"#
    );
    // Nimbus's vector for [1234, "test_namespace"] is 2a6e18a86edc; both sides of 0.16 agree.
    let h = testpilot_flight::sampling::truncated_hash(
        &eval_for(&person, "[1234, 'test_namespace']").unwrap(),
    );
    assert_eq!(h, "2a6e18a86edc");
}

/// Our parser against `jexl-parser`'s: the same tree, or both refuse. (`jexl-parser` only
/// gets ASCII: it slices text with character counts as byte offsets.)
fn parses_alike(text: &str) -> Result<(), String> {
    let ours = parse::parse(text);
    let theirs = jexl_parser::Parser::parse(text);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) if **a == *b => Ok(()),
        (Err(_), Err(_)) => Ok(()),
        _ => Err(format!("{text:?}: ours {ours:?}, jexl-parser {theirs:?}")),
    }
}

const PARSE_CORPUS: &[&str] = &[
    "",
    " ",
    "1 +",
    "(1",
    "1)",
    "[1,]",
    "[,]",
    "[1 2]",
    "{}",
    "{a: 1,}",
    "{'a': 1, \"b\": 2}",
    "{1: 2}",
    "{a 1}",
    "a ? b : c ? d : e",
    "a ? b + 1 : c",
    "a % b ? c : d",
    "a ? b : c % d",
    "a|t.x",
    "a|t(1, 2,)|u",
    "a|t()",
    "a | t",
    "a|",
    "a[.b == 1]",
    "a[.b + 1]",
    "a[.b == c.d]",
    "a[. b < 'x']",
    "a[.5]",
    "a.b[0].c",
    "a.true",
    "a.5",
    "1.2.3",
    "1.",
    ".5 + 5.",
    "1 == 2 == 3",
    "a && b || c && d",
    "1 - 2 - 3",
    "2 ^ 3 ^ 2",
    "8 / 2 // 3 * 4",
    "x in y in z",
    "'a\\'b'",
    "\"a\\\"b\"",
    "'a\\b'",
    "'unterminated",
    "a = b",
    "a ! b",
    "a & b",
    "a | | b",
    "a||b",
    "null",
    "true",
    "false",
    "in",
    "person.in",
    "_x1 + y_2",
    "a<=b>=c<d>e!=f",
    "((((1))))",
    "[[1], [2, [3]]][1][1][0]",
    "{a: {b: [1, {c: 2}]}}.a.b[1].c",
    "1 ? 2 : 3 | t",
];

#[test]
fn parses_like_jexl_parser() {
    let problems: Vec<String> = CORPUS
        .iter()
        .chain(PARSE_CORPUS)
        .filter_map(|t| parses_alike(t).err())
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Random token soup, mostly invalid, some valid: both parsers agree on every one.
    #[test]
    fn random_token_sequences_parse_like_jexl_parser(
        toks in prop::collection::vec(prop::sample::select(TOKENS), 0..14),
        spaced in any::<bool>(),
    ) {
        let text = toks.join(if spaced { " " } else { "" });
        if let Err(e) = parses_alike(&text) {
            prop_assert!(false, "{}", e);
        }
    }
}

const TOKENS: &[&str] = &[
    "1", "2.5", ".5", "'a'", "\"b\"", "true", "null", "x", "person", "t", "+", "-", "*", "/", "//",
    "%", "^", "==", "!=", "<", "<=", ">", ">=", "in", "&&", "||", "(", ")", "[", "]", "{", "}",
    ",", ".", ":", "?", "|", "(", "[", "x", "1",
];

/// The worst inputs the bounds let through: the deepest trees of each kind, the deepest
/// brackets, the longest text.
pub fn worst_accepted() -> Vec<String> {
    let n = MAX_DEPTH - 1; // operators in a chain whose tree is MAX_DEPTH deep
    let chain = |head: &str, link: &str| format!("{head}{}", link.repeat(n));
    // `open` repeated as often as the bracket limit allows, around `inner`.
    let nest = |open: &str, inner: &str, close: &str| {
        let brackets = open.matches(['(', '[', '{']).count();
        let times = MAX_NESTING / brackets;
        format!("{}{inner}{}", open.repeat(times), close.repeat(times))
    };
    let wide = |item: &str| {
        let items = (MAX_LENGTH - 2) / (item.len() + 1);
        format!("[{}]", vec![item; items].join(","))
    };
    vec![
        chain("1", "+1"),
        chain("1", "^1"),
        chain("true", " && true"),
        chain("'x'", "|length"),
        chain("person", ".os"),
        chain("person", "[0]"),
        chain("true", " ? 1 : 2"),
        format!("person{}", "[.n > 1]".repeat(n - 1)), // a filter is two deep
        nest("(", "1", ")"),
        nest("[", "1", "]"),
        nest("{a: ", "1", "}"),
        nest("'x'|length(", "1", ")"),
        nest("person[", "0", "]"),
        nest("(1+", "1", ")"),
        nest("person.tags[.n == (", "1", ")]"),
        nest("(", &chain("1", "+1"), ")"),
        format!("'{}'", "x".repeat(MAX_LENGTH - 2)),
        wide("1"),
        wide("'x'"),
    ]
}

/// Parse, check, evaluate and drop the worst accepted inputs on a thread with a small stack:
/// none may overflow it. (Unoptimized, as tests build, they need about 120 KiB, the deepest
/// brackets being the worst; optimized frames are several times smaller. Threads that run
/// flights have 2 MiB or more.)
#[test]
fn worst_accepted_expressions_run_on_a_small_stack() {
    let inputs = worst_accepted();
    for text in &inputs {
        assert!(
            compile(text).is_ok(),
            "{text:.80}… should be accepted: {:?}",
            compile(text).err()
        );
    }
    let handle = std::thread::Builder::new()
        .stack_size(192 * 1024)
        .spawn(move || {
            let person = Person::new("p")
                .with("os", "linux")
                .with("tags", json!([{"n": 1}, {"n": 2}]));
            for text in &inputs {
                let tree = parse::parse(text).unwrap();
                let _ = check(text);
                let _ = eval_for(&person, text);
                drop(tree);
            }
        })
        .unwrap();
    handle
        .join()
        .expect("the worst accepted expressions failed on a 192 KiB stack");
}

/// Regression: a 20,000-term `1+1+…+1` (40 KB) overflowed the stack and took the tower down;
/// it is refused before parsing, saying the limit. One past each bound is refused too.
#[test]
fn expressions_past_the_bounds_are_refused_saying_the_limit() {
    let huge = format!("1{}", "+1".repeat(19_999));
    let e = compile(&huge).err().unwrap();
    assert!(e.contains("39999 bytes") && e.contains("8192"), "{e}");

    let deep = format!("1{}", "+1".repeat(MAX_DEPTH));
    let e = compile(&deep).err().unwrap();
    assert!(e.contains(&format!("more than {MAX_DEPTH}")), "{e}");
    let transforms = format!("1{}", "|length".repeat(MAX_DEPTH));
    assert!(compile(&transforms).is_err());

    let nested = format!(
        "{}1{}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    let e = compile(&nested).err().unwrap();
    assert!(e.contains(&format!("more than {MAX_NESTING} deep")), "{e}");

    // The longest chain that fits the length limit is refused by depth, without a deep tree.
    let longest = format!("1{}", "+1".repeat((MAX_LENGTH - 1) / 2));
    assert!(longest.len() <= MAX_LENGTH);
    assert!(compile(&longest).is_err());
}

/// Regression: `jexl-parser` sliced text with character counts, so non-ASCII text before a
/// string panicked. Ours parses it.
#[test]
fn non_ascii_text_parses() {
    let tree = parse::parse("'é' == 'ü' || person.ñ == \"€\"").unwrap();
    assert!(matches!(
        *tree,
        jexl_parser::ast::Expression::BinaryOperation { .. }
    ));
}
