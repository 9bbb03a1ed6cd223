//! Client-side CPU per operation, no network: what `upsert` does
//! before its `FCALL`, what `get` does after its `HGET`, and what `get_all`
//! does per session after its `HGETALL`, for the typical session of
//! `tests/common/typical.rs` (200-byte `extra_payload`).
//!
//! Run with `cargo bench -p charon-sessions --bench client_cpu`.
//!
//! Times are the **CPU time of the benchmark thread**
//! (`CLOCK_THREAD_CPUTIME_ID`), not wall-clock time: the figure asked for
//! is CPU per operation, and on a shared, busy machine wall-clock time
//! mostly measures waiting for a core. `CHARON_BENCH_CLOCK=wall` measures
//! wall-clock time instead (criterion's default).

use std::hint::black_box;

use charon_sessions::Session;
use charon_sessions::layout::{is_lock_field, lock_field};
use charon_sessions::signing::{self, SigningKey};
use charon_sessions::stored::{self, Encoding};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, Throughput};

#[path = "../tests/common/typical.rs"]
mod typical;

const USER: &str = "alice@example.com";
const TYPE: &str = "full";

fn key() -> SigningKey {
    SigningKey::from_bytes(b"0123456789abcdef0123456789abcdef").unwrap()
}

/// A stored value as `upsert` writes it: encoded at lock version 1, signed.
fn stored_value(session: &Session, key: &SigningKey) -> Vec<u8> {
    stored::seal(session, &Encoding::default(), key)
        .expect("a typical session is valid")
        .expect("and alive")
        .value
}

/// What `RedisStore` does with one value read from `field` of the hash of
/// `USER`/`TYPE`: verify with any key, decode, check the address and expiry.
fn open(field: &str, value: &[u8], keys: &[SigningKey], now: i64) -> Option<Session> {
    stored::open(value, keys, field, USER, TYPE, now).ok()
}

fn benches<M: Measurement + 'static>(c: &mut Criterion<M>) {
    let key = key();
    let keys = [key.clone()];
    let now = Session::now();
    let session = typical::session(USER, now);
    assert_eq!(
        serde_json::to_vec(&session.extra_payload).unwrap().len(),
        200,
        "the typical extra_payload is 200 bytes of JSON"
    );

    let encoding = Encoding::default();
    c.bench_function("upsert: seal (encode + sign)", |b| {
        b.iter(|| stored::seal(black_box(&session), &encoding, &key).unwrap())
    });

    let value = stored_value(&session, &key);
    println!(
        "typical session: encoded {} bytes, signed {} bytes",
        value.len() - signing::SIGNED_PREFIX.len() - signing::MAC_LEN - 1,
        value.len()
    );
    c.bench_function("get: verify + decode + checks", |b| {
        b.iter(|| open(black_box(&session.id), black_box(&value), &keys, now).unwrap())
    });

    // HGETALL of 10 sessions: 10 session fields and their 10 lock fields.
    let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..10)
        .flat_map(|_| {
            let s = typical::session(USER, now);
            let value = stored_value(&s, &key);
            [
                (s.id.clone().into_bytes(), value),
                (lock_field(&s.id).into_bytes(), b"1".to_vec()),
            ]
        })
        .collect();
    let mut group = c.benchmark_group("get_all");
    group.throughput(Throughput::Elements(10));
    group.bench_function("10 sessions: verify + decode + checks", |b| {
        b.iter_batched(
            || fields.clone(),
            |fields| {
                let sessions: Vec<Session> = fields
                    .into_iter()
                    .filter(|(field, _)| !is_lock_field(field))
                    .filter_map(|(field, value)| {
                        open(std::str::from_utf8(&field).ok()?, &value, &keys, now)
                    })
                    .collect();
                assert_eq!(sessions.len(), 10);
                sessions
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// CPU time consumed by the calling thread, in nanoseconds.
struct ThreadCpuTime;

fn thread_cpu_nanos() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; the clock id is constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_nanos()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_nanos() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Shows CPU nanoseconds as "µs cpu", and throughputs per CPU second.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1e3);
        "µs cpu"
    }
    fn scale_throughputs(
        &self,
        typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per_iteration = match *throughput {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => n,
            Throughput::Bits(n) => n,
            Throughput::ElementsAndBytes { elements, .. } => elements,
        } as f64;
        let _ = typical;
        values
            .iter_mut()
            .for_each(|v| *v = per_iteration * 1e9 / *v / 1e3);
        "K/cpu s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn main() {
    if std::env::var_os("CHARON_BENCH_CLOCK").is_some_and(|v| v == "wall") {
        let mut c = Criterion::<WallTime>::default().configure_from_args();
        benches(&mut c);
        c.final_summary();
    } else {
        let mut c = Criterion::default()
            .with_measurement(ThreadCpuTime)
            .configure_from_args();
        benches(&mut c);
        c.final_summary();
    }
}
