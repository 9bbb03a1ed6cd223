//! Tracing spans and metrics for every store operation.
//!
//! Each operation of [`LocalStore`](crate::LocalStore) and
//! [`RedisStore`](crate::RedisStore) runs inside an `INFO` span named
//! `charon_sessions.<operation>` with the fields `operation`,
//! `session_type`, `user_id` (left empty when the store was told not to
//! record user ids), and, once it ends, `outcome` and `duration_ms`; a
//! `DEBUG` event "store operation finished" repeats them. Session values,
//! refresh token ids and signing keys are never recorded.
//!
//! Metrics go through the [`metrics`] facade: nothing is recorded until
//! the application installs a recorder (for example
//! `metrics-exporter-prometheus`). The names:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `charon_sessions_operations_total` | counter | `operation`, `outcome` |
//! | `charon_sessions_operation_duration_seconds` | histogram (seconds) | `operation` |
//! | `charon_sessions_lock_conflicts_total` | counter | `session_type`: the first [`SESSION_TYPE_LABELS`] per store, then `other` |
//! | `charon_sessions_rejected_values_total` | counter | `reason`: `signature`, `decode`, `owner_mismatch`, `expired` |
//! | `charon_sessions_function_registrations_total` | counter | — |
//! | `charon_sessions_pool_wait_seconds` | histogram (seconds): how long an operation waited for a place in flight | — |
//! | `charon_sessions_reconnections_total` | counter: shared connections opened again after their socket closed | — |
//! | `charon_sessions_evicted_sessions_total` | counter: sessions evicted to keep a user within [`SessionLimit::EvictSoonestExpiring`](crate::SessionLimit::EvictSoonestExpiring) | — |
//!
//! `outcome` is `ok`, `not_found` (a `get` that found no valid session) or
//! the error kind ([`StoreError::kind`]).
//!
//! Every label has a bounded set of values, so the number of series an
//! exporter keeps cannot grow without limit. Session types are chosen by
//! the application, possibly from input: the first
//! [`SESSION_TYPE_LABELS`] (16) distinct session types that conflict on a
//! store keep their own `session_type` value, in that store, for its
//! lifetime; every later one is counted under [`OTHER_SESSION_TYPE`]
//! (`other`). A session type literally named `other` shares that series.
//! Each store (and the clones of a [`RedisStore`](crate::RedisStore))
//! keeps its own list, so an application with several stores may see up to
//! 16 named values per store. Spans and events are not aggregated into
//! series: they always carry the real session type.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures_util::future::Either;
use tracing::Instrument as _;
use tracing::field;
use tracing::instrument::Instrumented;

use crate::error::StoreError;
use crate::stored::Rejection;

/// `charon_sessions_operations_total`.
pub const OPERATIONS_TOTAL: &str = "charon_sessions_operations_total";
/// `charon_sessions_operation_duration_seconds`.
pub const OPERATION_DURATION_SECONDS: &str = "charon_sessions_operation_duration_seconds";
/// `charon_sessions_lock_conflicts_total`.
pub const LOCK_CONFLICTS_TOTAL: &str = "charon_sessions_lock_conflicts_total";
/// `charon_sessions_rejected_values_total`.
pub const REJECTED_VALUES_TOTAL: &str = "charon_sessions_rejected_values_total";
/// `charon_sessions_function_registrations_total`.
pub const FUNCTION_REGISTRATIONS_TOTAL: &str = "charon_sessions_function_registrations_total";
/// `charon_sessions_pool_wait_seconds`.
pub const POOL_WAIT_SECONDS: &str = "charon_sessions_pool_wait_seconds";
/// `charon_sessions_reconnections_total`.
pub const RECONNECTIONS_TOTAL: &str = "charon_sessions_reconnections_total";
/// `charon_sessions_evicted_sessions_total`.
pub const EVICTED_SESSIONS_TOTAL: &str = "charon_sessions_evicted_sessions_total";

/// How many distinct session types keep their own `session_type` label
/// value on one store; later ones are recorded as [`OTHER_SESSION_TYPE`].
pub const SESSION_TYPE_LABELS: usize = 16;
/// The `session_type` label value of every session type beyond the first
/// [`SESSION_TYPE_LABELS`] seen by a store.
pub const OTHER_SESSION_TYPE: &str = "other";

/// The `session_type` label values of one store: the first
/// [`SESSION_TYPE_LABELS`] distinct session types claim a slot each, in
/// order; any other maps to [`OTHER_SESSION_TYPE`]. A lookup reads at most
/// [`SESSION_TYPE_LABELS`] initialised `OnceLock`s (an atomic load each),
/// without a lock; only claiming a slot allocates, and waits for another
/// thread claiming the same slot.
#[derive(Default)]
pub(crate) struct SessionTypeLabels {
    slots: [OnceLock<Box<str>>; SESSION_TYPE_LABELS],
}

impl SessionTypeLabels {
    /// The `session_type` label value of `session_type`.
    fn label(&self, session_type: &str) -> &str {
        for slot in &self.slots {
            // The slots fill in order, so `session_type` has no slot before
            // the first empty one, and claims that one.
            let claimed = slot.get_or_init(|| session_type.into());
            if **claimed == *session_type {
                return claimed;
            }
        }
        OTHER_SESSION_TYPE
    }
}

impl std::fmt::Debug for SessionTypeLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.slots.iter().filter_map(|slot| slot.get()))
            .finish()
    }
}

/// A store operation, as named in spans and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Get,
    Upsert,
    Delete,
    GetAll,
    DeleteAll,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Upsert => "upsert",
            Operation::Delete => "delete",
            Operation::GetAll => "get_all",
            Operation::DeleteAll => "delete_all",
        }
    }
}

/// The outcome label of a successful result.
pub(crate) trait Outcome {
    fn outcome(&self) -> &'static str {
        "ok"
    }
}

impl Outcome for () {}
impl<T> Outcome for Vec<T> {}
impl<T> Outcome for Option<T> {
    fn outcome(&self) -> &'static str {
        if self.is_some() { "ok" } else { "not_found" }
    }
}

/// The span of one operation (span names must be literals).
macro_rules! op_span {
    ($name:literal, $operation:expr, $session_type:expr, $user_id:expr) => {
        tracing::info_span!(
            $name,
            operation = $operation.name(),
            session_type = $session_type,
            user_id = $user_id,
            outcome = field::Empty,
            duration_ms = field::Empty,
        )
    };
}

/// One store operation being observed: its span and when it started.
/// [`start`](Self::start) opens it, [`run`](Self::run) runs the operation
/// inside the span, [`finish`](Self::finish) records the outcome and
/// duration in the span and the metrics.
pub(crate) struct Observation {
    operation: Operation,
    span: tracing::Span,
    started: Instant,
}

impl Observation {
    /// Opens the span of `operation`; `user_id` is `None` when the store
    /// does not record user ids.
    pub(crate) fn start(
        operation: Operation,
        session_type: &str,
        user_id: Option<&str>,
    ) -> Observation {
        let span = match operation {
            Operation::Get => op_span!("charon_sessions.get", operation, session_type, user_id),
            Operation::Upsert => {
                op_span!("charon_sessions.upsert", operation, session_type, user_id)
            }
            Operation::Delete => {
                op_span!("charon_sessions.delete", operation, session_type, user_id)
            }
            Operation::GetAll => {
                op_span!("charon_sessions.get_all", operation, session_type, user_id)
            }
            Operation::DeleteAll => {
                op_span!(
                    "charon_sessions.delete_all",
                    operation,
                    session_type,
                    user_id
                )
            }
        };
        Observation {
            operation,
            span,
            started: Instant::now(),
        }
    }

    /// `operation`, to run inside the span (as it is when no subscriber
    /// wants the span). Not an `async fn`, which would hold `operation`
    /// twice.
    pub(crate) fn run<F: Future>(&self, operation: F) -> Either<F, Instrumented<F>> {
        if self.span.is_disabled() {
            Either::Left(operation)
        } else {
            Either::Right(operation.instrument(self.span.clone()))
        }
    }

    /// Records `result`'s outcome and the duration in the span and the
    /// metrics, and returns `result`. `session_type`, through the store's
    /// `labels`, labels the lock conflict counter.
    pub(crate) fn finish<T: Outcome>(
        self,
        result: Result<T, StoreError>,
        labels: &SessionTypeLabels,
        session_type: &str,
    ) -> Result<T, StoreError> {
        let elapsed = self.started.elapsed();
        let outcome = match &result {
            Ok(value) => value.outcome(),
            Err(e) => e.kind(),
        };
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        if !self.span.is_disabled() {
            self.span.record("outcome", outcome);
            self.span.record("duration_ms", duration_ms);
        }
        // The event stands on its own: a subscriber may want events without
        // spans.
        self.span
            .in_scope(|| tracing::debug!(outcome, duration_ms, "store operation finished"));

        let operation = self.operation.name();
        metrics::counter!(OPERATIONS_TOTAL, "operation" => operation, "outcome" => outcome)
            .increment(1);
        metrics::histogram!(OPERATION_DURATION_SECONDS, "operation" => operation)
            .record(elapsed.as_secs_f64());
        if matches!(result, Err(StoreError::Conflict)) {
            let session_type = labels.label(session_type).to_owned();
            metrics::counter!(LOCK_CONFLICTS_TOTAL, "session_type" => session_type).increment(1);
        }
        result
    }
}

/// How a store observes its operations: whether spans may carry user ids,
/// and the store's `session_type` label values. Cheap to clone: clones (of
/// a [`RedisStore`](crate::RedisStore)) share the labels. Both stores'
/// `SessionStore` impls go through it for every method, so their spans and
/// metrics cannot drift apart.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observer {
    record_user_ids: bool,
    labels: Arc<SessionTypeLabels>,
}

impl Observer {
    /// An observer whose spans carry user ids when `record_user_ids`.
    pub(crate) fn new(record_user_ids: bool) -> Observer {
        Observer {
            record_user_ids,
            labels: Arc::default(),
        }
    }

    /// Whether spans and warnings may carry user ids.
    pub(crate) fn records_user_ids(&self) -> bool {
        self.record_user_ids
    }

    /// Opens the span of `operation` (see [`Observation::start`]).
    pub(crate) fn start(
        &self,
        operation: Operation,
        session_type: &str,
        user_id: &str,
    ) -> Observation {
        let user_id = self.record_user_ids.then_some(user_id);
        Observation::start(operation, session_type, user_id)
    }

    /// Records `result` of `observation` (see [`Observation::finish`]).
    pub(crate) fn finish<T: Outcome>(
        &self,
        observation: Observation,
        result: Result<T, StoreError>,
        session_type: &str,
    ) -> Result<T, StoreError> {
        observation.finish(result, &self.labels, session_type)
    }

    /// Runs the store operation `work` makes, observed: inside the span of
    /// `operation`, then records its outcome and duration. Takes a maker,
    /// not the operation's future: an `async fn` holding that future as an
    /// argument as well as while running it would be twice its size (see the
    /// tests below).
    pub(crate) async fn observe<T: Outcome, F: Future<Output = Result<T, StoreError>>>(
        &self,
        operation: Operation,
        session_type: &str,
        user_id: &str,
        work: impl FnOnce() -> F,
    ) -> Result<T, StoreError> {
        let observation = self.start(operation, session_type, user_id);
        let result = observation.run(work()).await;
        self.finish(observation, result, session_type)
    }
}

/// Counts a stored value treated as absent.
pub(crate) fn rejected_value(reason: Rejection) {
    metrics::counter!(REJECTED_VALUES_TOTAL, "reason" => reason.name()).increment(1);
}

/// Counts a `FUNCTION LOAD` done because the server had lost the library.
pub(crate) fn function_registered() {
    metrics::counter!(FUNCTION_REGISTRATIONS_TOTAL).increment(1);
}

/// Records how long an operation waited for a place in flight.
pub(crate) fn place_waited(waited: std::time::Duration) {
    metrics::histogram!(POOL_WAIT_SECONDS).record(waited.as_secs_f64());
}

/// Counts sessions evicted to make room for a new one.
pub(crate) fn sessions_evicted(n: u64) {
    if n > 0 {
        metrics::counter!(EVICTED_SESSIONS_TOTAL).increment(n);
    }
}

/// Counts a shared connection opened again after its socket closed.
pub(crate) fn connection_replaced() {
    metrics::counter!(RECONNECTIONS_TOTAL).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Threads racing to claim slots end with each type in one slot, the
    /// first `SESSION_TYPE_LABELS` types named and the rest `other`.
    #[test]
    fn session_type_labels_are_claimed_once_each() {
        let labels = SessionTypeLabels::default();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for i in 0..SESSION_TYPE_LABELS {
                        let t = format!("t{i}");
                        assert_eq!(labels.label(&t), t);
                    }
                });
            }
        });
        let claimed: Vec<&str> = labels.slots.iter().map(|s| &**s.get().unwrap()).collect();
        let mut distinct = claimed.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), SESSION_TYPE_LABELS, "{claimed:?}");
        assert_eq!(labels.label("late"), OTHER_SESSION_TYPE);
        assert_eq!(labels.label("t0"), "t0");
    }

    /// Observing an operation adds its span, clock and outcome to the
    /// operation's future, not a second copy of that future (the futures
    /// of `RedisStore`'s operations are most of a kilobyte each, and
    /// `async_trait` boxes them on every call).
    #[test]
    fn observed_operations_hold_their_future_once() {
        let observer = Observer::default();
        let work = || async {
            let held_across_an_await = [7u8; 4096];
            tokio::task::yield_now().await;
            std::hint::black_box(&held_across_an_await);
            Ok::<(), StoreError>(())
        };
        let inner = std::mem::size_of_val(&work());
        let observed =
            std::mem::size_of_val(&observer.observe(Operation::Get, "full", "alice", work));
        assert!(inner >= 4096, "{inner}");
        assert!(
            observed < inner + 512,
            "inner {inner} bytes, observed {observed}"
        );
    }
}
