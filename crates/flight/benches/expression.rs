//! Parsing JEXL: ours against `jexl-parser`'s, whose lexer is quadratic in the length.
//!
//! Run: `cargo bench -p testpilot-flight --bench expression`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::time::Instant;
use testpilot_flight::expression::{parse, MAX_LENGTH};

/// `'x' == 'x' && 'x' == 'x' && …`, about `len` bytes, wide rather than deep: a list, so it
/// stays inside the depth limit.
fn text(len: usize) -> String {
    let item = "'abc' in ['x', 'abc']";
    let n = (len - 2) / (item.len() + 2);
    format!("[{}]", vec![item; n].join(", "))
}

fn bench(c: &mut Criterion) {
    let longest = text(MAX_LENGTH);
    assert!(longest.len() <= MAX_LENGTH && parse::parse(&longest).is_ok());
    let mut group = c.benchmark_group("parse the longest accepted expression (8 KB)");
    group.sample_size(10);
    group.bench_function("ours", |b| b.iter(|| parse::parse(black_box(&longest))));
    group.bench_function("jexl-parser", |b| {
        b.iter(|| jexl_parser::Parser::parse(black_box(&longest)))
    });
    group.finish();

    // How each grows with the length (one run each; jexl-parser's grows with the square).
    for len in [2_000, 8_000, 40_000] {
        let t = text(len);
        let start = Instant::now();
        let _ = black_box(parse::parse(&t));
        let ours = start.elapsed();
        let start = Instant::now();
        let _ = black_box(jexl_parser::Parser::parse(&t));
        let theirs = start.elapsed();
        println!(
            "{:>6} bytes: ours {:>9.3} ms (refused past {MAX_LENGTH} bytes), jexl-parser {:>9.3} ms",
            t.len(),
            ours.as_secs_f64() * 1e3,
            theirs.as_secs_f64() * 1e3
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
