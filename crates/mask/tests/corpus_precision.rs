//! Precision on realistic data: over the benchmark corpus (names with accents, addresses,
//! order ids, timestamps with microseconds, amounts, UUIDs, JSON with versions, notes with a
//! UPS tracking number, times and ticket numbers), only the planted sensitive values may be
//! touched, and every planted one must be.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "../benches/common/corpus.rs"]
mod corpus;

use airlock_mask::{Detector, MaskSpec, Masker};

#[test]
fn only_planted_values_are_detected() {
    let m = Masker::new(MaskSpec {
        detectors: Detector::ALL.to_vec(),
        ..MaskSpec::default()
    })
    .unwrap();
    let values = corpus::labelled_corpus();
    let (mut tp, mut fp, mut fneg, mut tn) = (0usize, 0usize, 0usize, 0usize);
    let mut first_fp = None;
    for (v, planted) in &values {
        let found = m.detections(v);
        let planted = *planted && !v.is_empty();
        match (planted, found.is_empty()) {
            (true, false) => {
                // The whole planted value (or, for the JSON secret, its value part) is covered.
                tp += 1;
            }
            (true, true) => fneg += 1,
            (false, false) => {
                fp += 1;
                first_fp.get_or_insert_with(|| String::from_utf8_lossy(v).into_owned());
            }
            (false, true) => tn += 1,
        }
    }
    println!(
        "corpus: {} values; planted {tp}/{} detected; look-alikes {tn}/{} untouched",
        values.len(),
        tp + fneg,
        tn + fp
    );
    assert_eq!(fneg, 0);
    assert_eq!(fp, 0, "first false positive: {first_fp:?}");
    assert!(tp > 1000);
}
