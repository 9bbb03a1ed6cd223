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

use std::borrow::Cow;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use futures_util::future::Either;
use metrics::{Key, Label, Metadata};
use tracing::Instrument as _;
use tracing::field;
use tracing::instrument::Instrumented;

use crate::error::StoreError;

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

static OTHER_LOCK_CONFLICTS_LABELS: [Label; 1] =
    [Label::from_static_parts("session_type", OTHER_SESSION_TYPE)];
static OTHER_LOCK_CONFLICTS_KEY: Key =
    Key::from_static_parts(LOCK_CONFLICTS_TOTAL, &OTHER_LOCK_CONFLICTS_LABELS);

/// The `session_type` label values of one store: the first
/// [`SESSION_TYPE_LABELS`] distinct session types claim a slot each, in
/// order, with the metric key over their label built once; any other maps
/// to [`OTHER_SESSION_TYPE`]. A lookup reads at most
/// [`SESSION_TYPE_LABELS`] initialised `OnceLock`s (an atomic load each),
/// without a lock or an allocation; only claiming a slot allocates, and
/// waits for another thread claiming the same slot.
#[derive(Default)]
pub(crate) struct SessionTypeLabels {
    slots: [OnceLock<(Box<str>, Key)>; SESSION_TYPE_LABELS],
}

impl SessionTypeLabels {
    /// The `charon_sessions_lock_conflicts_total` key of `session_type`.
    fn lock_conflicts_key(&self, session_type: &str) -> &Key {
        for slot in &self.slots {
            // The slots fill in order, so `session_type` has no slot before
            // the first empty one, and claims that one.
            let (claimed, key) = slot.get_or_init(|| {
                (
                    session_type.into(),
                    Key::from_parts(
                        LOCK_CONFLICTS_TOTAL,
                        vec![Label::new("session_type", session_type.to_owned())],
                    ),
                )
            });
            if **claimed == *session_type {
                return key;
            }
        }
        &OTHER_LOCK_CONFLICTS_KEY
    }
}

impl std::fmt::Debug for SessionTypeLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.slots
                    .iter()
                    .filter_map(|slot| slot.get())
                    .map(|(t, _)| t),
            )
            .finish()
    }
}

/// A store operation, as named in spans and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    // The order of OPERATION_LABELS.
    Get = 0,
    Upsert = 1,
    Delete = 2,
    GetAll = 3,
    DeleteAll = 4,
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

/// Why a stored value was treated as absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The HMAC did not verify under any of the store's keys.
    Signature,
    /// The payload is not a session record.
    Decode,
    /// Its id, user id or type differ from where it is stored.
    OwnerMismatch,
    /// Its `refresh_expires_at` has passed.
    Expired,
}

impl Rejection {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Rejection::Signature => "signature",
            Rejection::Decode => "decode",
            Rejection::OwnerMismatch => "owner_mismatch",
            Rejection::Expired => "expired",
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

/// Every `outcome` label value (`OUTCOMES`: `ok`, `not_found`, then each
/// [`StoreError::kind`]) and the labels of every operation
/// (`OPERATION_LABELS`, `[operation]`, in [`Operation`] order) and of every
/// operation and outcome (`OPERATION_OUTCOME_LABELS`,
/// `[operation, outcome]`), and the metric keys over them
/// (`DURATION_KEYS`, `[operation]`; `OUTCOME_KEYS`, `[operation, outcome]`),
/// built at compile time: an operation's metrics are then recorded under
/// `&'static` keys whose hash is already computed, without allocating or
/// hashing on every call.
macro_rules! label_tables {
    (operations: [$($operation:literal),*], outcomes: $outcomes:tt) => {
        label_tables!(@outcomes $outcomes);
        static OPERATION_LABELS: [[Label; 1]; 5] =
            [$([Label::from_static_parts("operation", $operation)]),*];
        static OPERATION_OUTCOME_LABELS: [[[Label; 2]; OUTCOMES.len()]; 5] =
            [$(label_tables!(@row $operation, $outcomes)),*];
        static DURATION_KEYS: [Key; 5] = {
            let mut keys = [const { Key::from_static_name(OPERATION_DURATION_SECONDS) }; 5];
            let mut i = 0;
            while i < keys.len() {
                let key = Key::from_static_parts(OPERATION_DURATION_SECONDS, &OPERATION_LABELS[i]);
                // The placeholder owns nothing; `forget` because const
                // evaluation cannot run `Key`'s destructor.
                std::mem::forget(std::mem::replace(&mut keys[i], key));
                i += 1;
            }
            keys
        };
        static OUTCOME_KEYS: [[Key; OUTCOMES.len()]; 5] = {
            let mut keys =
                [const { [const { Key::from_static_name(OPERATIONS_TOTAL) }; OUTCOMES.len()] }; 5];
            let mut i = 0;
            while i < keys.len() {
                let mut j = 0;
                while j < OUTCOMES.len() {
                    let key =
                        Key::from_static_parts(OPERATIONS_TOTAL, &OPERATION_OUTCOME_LABELS[i][j]);
                    std::mem::forget(std::mem::replace(&mut keys[i][j], key));
                    j += 1;
                }
                i += 1;
            }
            keys
        };
    };
    (@outcomes [$($outcome:literal),*]) => {
        const OUTCOMES: &[&str] = &[$($outcome),*];
    };
    (@row $operation:literal, [$($outcome:literal),*]) => {
        [$([
            Label::from_static_parts("operation", $operation),
            Label::from_static_parts("outcome", $outcome),
        ]),*]
    };
}

label_tables!(
    operations: ["get", "upsert", "delete", "get_all", "delete_all"],
    outcomes: [
        "ok",
        "not_found",
        "conflict",
        "invalid_input",
        "pool_timeout",
        "connection",
        "auth",
        "server",
        "function_library_missing",
        "replication_timeout",
        "unsupported_server",
        "too_many_sessions"
    ]
);

/// What the metrics of this crate are registered with.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

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

        let operation = self.operation as usize;
        let counted = match OUTCOMES.iter().position(|known| *known == outcome) {
            Some(i) => Cow::Borrowed(&OUTCOME_KEYS[operation][i]),
            // A kind added to StoreError but not to OUTCOMES.
            None => Cow::Owned(Key::from_parts(
                OPERATIONS_TOTAL,
                vec![
                    OPERATION_LABELS[operation][0].clone(),
                    Label::from_static_parts("outcome", outcome),
                ],
            )),
        };
        metrics::with_recorder(|recorder| {
            recorder.register_counter(&counted, &METADATA).increment(1);
            recorder
                .register_histogram(&DURATION_KEYS[operation], &METADATA)
                .record(elapsed.as_secs_f64());
        });
        if matches!(result, Err(StoreError::Conflict)) {
            let key = labels.lock_conflicts_key(session_type);
            metrics::with_recorder(|recorder| {
                recorder.register_counter(key, &METADATA).increment(1);
            });
        }
        result
    }
}

/// Implements [`SessionStore`](crate::SessionStore) for a store type whose
/// inherent `get_inner`, `upsert_inner`, `delete_inner`, `get_all_inner`
/// and `delete_all_inner` do the work, whose `user_label` says whether
/// spans may carry the user id and whose `session_type_labels` field (a
/// [`SessionTypeLabels`], or an `Arc` of one) bounds the `session_type`
/// label values: each operation runs inside an
/// [`Observation`]. One definition for both stores, so their spans and
/// metrics cannot drift apart.
macro_rules! impl_session_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::SessionStore for $store {
            async fn get(
                &self,
                session_id: &str,
                user_id: &str,
                session_type: &str,
            ) -> Result<Option<$crate::session::Session>, $crate::error::StoreError> {
                let observation = $crate::telemetry::Observation::start(
                    $crate::telemetry::Operation::Get,
                    session_type,
                    self.user_label(user_id),
                );
                let result = observation
                    .run(self.get_inner(session_id, user_id, session_type))
                    .await;
                observation.finish(result, &self.session_type_labels, session_type)
            }

            async fn upsert(
                &self,
                session: &mut $crate::session::Session,
            ) -> Result<(), $crate::error::StoreError> {
                let observation = $crate::telemetry::Observation::start(
                    $crate::telemetry::Operation::Upsert,
                    &session.session_type,
                    self.user_label(&session.user_id),
                );
                let result = observation.run(self.upsert_inner(session)).await;
                observation.finish(result, &self.session_type_labels, &session.session_type)
            }

            async fn delete(
                &self,
                session_id: &str,
                user_id: &str,
                session_type: &str,
            ) -> Result<(), $crate::error::StoreError> {
                let observation = $crate::telemetry::Observation::start(
                    $crate::telemetry::Operation::Delete,
                    session_type,
                    self.user_label(user_id),
                );
                let result = observation
                    .run(self.delete_inner(session_id, user_id, session_type))
                    .await;
                observation.finish(result, &self.session_type_labels, session_type)
            }

            async fn get_all(
                &self,
                user_id: &str,
                session_type: &str,
            ) -> Result<Vec<$crate::session::Session>, $crate::error::StoreError> {
                let observation = $crate::telemetry::Observation::start(
                    $crate::telemetry::Operation::GetAll,
                    session_type,
                    self.user_label(user_id),
                );
                let result = observation
                    .run(self.get_all_inner(user_id, session_type))
                    .await;
                observation.finish(result, &self.session_type_labels, session_type)
            }

            async fn delete_all(
                &self,
                user_id: &str,
                session_type: &str,
            ) -> Result<(), $crate::error::StoreError> {
                let observation = $crate::telemetry::Observation::start(
                    $crate::telemetry::Operation::DeleteAll,
                    session_type,
                    self.user_label(user_id),
                );
                let result = observation
                    .run(self.delete_all_inner(user_id, session_type))
                    .await;
                observation.finish(result, &self.session_type_labels, session_type)
            }
        }
    };
}
pub(crate) use impl_session_store;

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

    fn label(key: &Key) -> &str {
        key.labels().next().unwrap().value()
    }

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
                        assert_eq!(label(labels.lock_conflicts_key(&t)), t);
                    }
                });
            }
        });
        let claimed: Vec<&str> = labels.slots.iter().map(|s| &*s.get().unwrap().0).collect();
        let mut distinct = claimed.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), SESSION_TYPE_LABELS, "{claimed:?}");
        let other = labels.lock_conflicts_key("late");
        assert!(std::ptr::eq(other, &OTHER_LOCK_CONFLICTS_KEY));
        assert_eq!(label(other), OTHER_SESSION_TYPE);
        assert_eq!(other.name(), LOCK_CONFLICTS_TOTAL);
        let first = labels.lock_conflicts_key("t0");
        assert_eq!(
            first,
            &Key::from_parts(LOCK_CONFLICTS_TOTAL, vec![Label::new("session_type", "t0")])
        );
        assert!(std::ptr::eq(first, labels.lock_conflicts_key("t0")));
    }

    #[test]
    fn label_tables_follow_the_operations_and_error_kinds() {
        for operation in [
            Operation::Get,
            Operation::Upsert,
            Operation::Delete,
            Operation::GetAll,
            Operation::DeleteAll,
        ] {
            let i = operation as usize;
            assert_eq!(OPERATION_LABELS[i][0].value(), operation.name());
            assert_eq!(
                DURATION_KEYS[i],
                Key::from_parts(OPERATION_DURATION_SECONDS, OPERATION_LABELS[i].to_vec())
            );
            for (j, outcome) in OUTCOMES.iter().enumerate() {
                let labels = &OPERATION_OUTCOME_LABELS[i][j];
                assert_eq!(labels[0].value(), operation.name());
                assert_eq!(labels[1].value(), *outcome);
                let key = &OUTCOME_KEYS[i][j];
                assert_eq!(key.name(), OPERATIONS_TOTAL);
                assert!(key.labels().eq(labels.iter()));
                assert_eq!(key, &Key::from_parts(OPERATIONS_TOTAL, labels.to_vec()));
            }
        }
        let errors = [
            StoreError::Conflict,
            StoreError::InvalidInput(String::new()),
            StoreError::PoolTimeout(std::time::Duration::ZERO),
            StoreError::Connection(Box::new(std::io::Error::other("x"))),
            StoreError::Auth(Box::new(std::io::Error::other("x"))),
            StoreError::Server(Box::new(std::io::Error::other("x"))),
            StoreError::FunctionLibraryMissing(String::new()),
            StoreError::ReplicationTimeout {
                acknowledged: 0,
                required: 1,
            },
            StoreError::UnsupportedServer {
                found: String::new(),
                required: "",
            },
            StoreError::TooManySessions { limit: 1 },
        ];
        for e in errors {
            assert!(OUTCOMES.contains(&e.kind()), "{} missing", e.kind());
        }
        assert!(OUTCOMES.contains(&Some(()).outcome()));
        assert!(OUTCOMES.contains(&None::<()>.outcome()));
    }
}
