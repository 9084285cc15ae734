//! Criterion benches for the hot paths: Standard Webhooks signing and verification
//! (signatures/s) and envelope sealing/opening (MB/s).
//!
//! Run: `cargo bench -p switchboard-crypto`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use switchboard_crypto::webhook::{self, WebhookSecret};
use switchboard_crypto::{Binding, Keyring, MasterKey};

fn signing(c: &mut Criterion) {
    let secret = WebhookSecret::generate().unwrap();
    let mut g = c.benchmark_group("webhook");
    for size in [256usize, 4096] {
        let body = vec![b'x'; size];
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("sign", size), &body, |b, body| {
            b.iter(|| {
                webhook::sign(
                    &secret,
                    "evt_01JD0000000000000000000000",
                    1_700_000_000,
                    black_box(body),
                )
            })
        });
        let header = webhook::sign(
            &secret,
            "evt_01JD0000000000000000000000",
            1_700_000_000,
            &body,
        );
        g.bench_with_input(BenchmarkId::new("verify", size), &body, |b, body| {
            b.iter(|| {
                webhook::verify(
                    [&secret],
                    "evt_01JD0000000000000000000000",
                    "1700000000",
                    &header,
                    black_box(body),
                    1_700_000_000,
                )
            })
        });
    }
    g.finish();
}

fn envelope(c: &mut Criterion) {
    let ring = Keyring::new(MasterKey::generate().unwrap(), []);
    let binding = Binding {
        tenant_id: "ten_01JD0000000000000000000000",
        record_id: "evt_01JD0000000000000000000000",
        purpose: "event.body",
    };
    let mut g = c.benchmark_group("envelope");
    for size in [1024usize, 65_536] {
        let plain = vec![7u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("seal", size), &plain, |b, p| {
            b.iter(|| ring.seal(black_box(p), binding).unwrap())
        });
        let sealed = ring.seal(&plain, binding).unwrap();
        g.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, s| {
            b.iter(|| ring.open(&s.key_id, black_box(&s.data), binding).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, signing, envelope);
criterion_main!(benches);
