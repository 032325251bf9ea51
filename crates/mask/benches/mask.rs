//! Throughput of content masking (all detectors) and column masking over a corpus shaped like
//! query results: names, addresses, order ids, timestamps, amounts, UUIDs, JSON documents,
//! free-text notes, with a few emails, cards, phones and secrets sprinkled in.
// Bench code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use airlock_mask::{ColumnEntity, Detector, MaskCounts, MaskSpec, Masker, Strategy};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "common/corpus.rs"]
mod corpus;
use corpus::corpus;

fn bench(c: &mut Criterion) {
    let values = corpus();
    let bytes: usize = values.iter().map(Vec::len).sum();
    let content = Masker::new(MaskSpec {
        detectors: Detector::ALL.to_vec(),
        strategy: Strategy::Partial,
        ..MaskSpec::default()
    })
    .unwrap();
    let mut group = c.benchmark_group("mask");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("mask_text all detectors", |b| {
        b.iter(|| {
            let mut counts = MaskCounts::default();
            for v in &values {
                black_box(content.mask_text(black_box(v), &mut counts));
            }
            counts
        })
    });
    let redact = Masker::new(MaskSpec {
        strategy: Strategy::Redact,
        ..MaskSpec::default()
    })
    .unwrap();
    let column = ColumnEntity::new("email");
    group.bench_function("mask_column redact", |b| {
        b.iter(|| {
            let mut counts = MaskCounts::default();
            for v in &values {
                black_box(redact.mask_column(black_box(v), &column, &mut counts));
            }
            counts
        })
    });
    group.bench_function("baseline: copy every value", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(bytes);
            for v in &values {
                out.extend_from_slice(black_box(v));
            }
            out
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
