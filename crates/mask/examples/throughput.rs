//! CPU-time throughput of `mask_text` (all detectors) over the benchmark corpus, for busy
//! machines where criterion's wall-clock figures mostly measure the neighbours:
//! `cargo run --release -p airlock-mask --example throughput [ROUNDS [DETECTOR,…]]`.
// Example code: clippy.toml exempts only #[test] fns and cfg(test) code, not helpers like these.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../benches/common/corpus.rs"]
mod corpus;

use std::time::Instant;

use airlock_mask::{Detector, MaskCounts, MaskSpec, Masker, Strategy};

/// Process CPU time from /proc (Linux), falling back to wall time elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let values = corpus::corpus();
    let bytes: usize = values.iter().map(Vec::len).sum();
    let detectors = match std::env::args().nth(2) {
        Some(list) => list.split(',').filter_map(Detector::parse).collect(),
        None => Detector::ALL.to_vec(),
    };
    let masker = Masker::new(MaskSpec {
        detectors,
        strategy: Strategy::Partial,
        ..MaskSpec::default()
    })
    .unwrap();
    let mut counts = MaskCounts::default();
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    for _ in 0..rounds {
        for v in &values {
            std::hint::black_box(masker.mask_text(std::hint::black_box(v), &mut counts));
        }
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = match (cpu0, cpu_seconds()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => wall,
    };
    let mb = (bytes * rounds) as f64 / 1e6;
    println!(
        "{mb:.0} MB in {cpu:.2} s CPU ({wall:.2} s wall): {:.0} MB/s per core; masked: {:?}",
        mb / cpu,
        counts.iter().collect::<Vec<_>>()
    );
}
