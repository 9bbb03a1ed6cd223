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
//! | `charon_sessions_lock_conflicts_total` | counter | `session_type` |
//! | `charon_sessions_rejected_values_total` | counter | `reason`: `signature`, `decode`, `owner_mismatch`, `expired` |
//! | `charon_sessions_function_registrations_total` | counter | — |
//! | `charon_sessions_pool_wait_seconds` | histogram (seconds) | — |
//!
//! `outcome` is `ok`, `not_found` (a `get` that found no valid session) or
//! the error kind ([`StoreError::kind`]).

use std::future::Future;
use std::time::Instant;

use tracing::Instrument as _;
use tracing::field;

use crate::store::StoreError;

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

/// Runs one store operation inside its span, then records its outcome and
/// duration in the span and the metrics. `user_id` is `None` when the
/// store does not record user ids.
pub(crate) async fn observe<T: Outcome>(
    operation: Operation,
    session_type: &str,
    user_id: Option<&str>,
    run: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let span = match operation {
        Operation::Get => op_span!("charon_sessions.get", operation, session_type, user_id),
        Operation::Upsert => op_span!("charon_sessions.upsert", operation, session_type, user_id),
        Operation::Delete => op_span!("charon_sessions.delete", operation, session_type, user_id),
        Operation::GetAll => op_span!("charon_sessions.get_all", operation, session_type, user_id),
        Operation::DeleteAll => {
            op_span!(
                "charon_sessions.delete_all",
                operation,
                session_type,
                user_id
            )
        }
    };
    let started = Instant::now();
    let result = run.instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let outcome = match &result {
        Ok(value) => value.outcome(),
        Err(e) => e.kind(),
    };
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    span.record("outcome", outcome);
    span.record("duration_ms", duration_ms);
    span.in_scope(|| tracing::debug!(outcome, duration_ms, "store operation finished"));

    let name = operation.name();
    metrics::counter!(OPERATIONS_TOTAL, "operation" => name, "outcome" => outcome).increment(1);
    metrics::histogram!(OPERATION_DURATION_SECONDS, "operation" => name)
        .record(elapsed.as_secs_f64());
    if matches!(result, Err(StoreError::Conflict)) {
        metrics::counter!(LOCK_CONFLICTS_TOTAL, "session_type" => session_type.to_owned())
            .increment(1);
    }
    result
}

/// Implements [`SessionStore`](crate::SessionStore) for a store type whose
/// inherent `get_inner`, `upsert_inner`, `delete_inner`, `get_all_inner`
/// and `delete_all_inner` do the work and whose `user_label` says whether
/// spans may carry the user id: each operation runs inside [`observe`].
/// One definition for both stores, so their spans and metrics cannot drift
/// apart.
macro_rules! impl_session_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::SessionStore for $store {
            async fn get(
                &self,
                session_id: &str,
                user_id: &str,
                session_type: &str,
            ) -> Result<Option<$crate::session::Session>, $crate::store::StoreError> {
                let user = self.user_label(user_id);
                let run = self.get_inner(session_id, user_id, session_type);
                $crate::telemetry::observe(
                    $crate::telemetry::Operation::Get,
                    session_type,
                    user,
                    run,
                )
                .await
            }

            async fn upsert(
                &self,
                session: &mut $crate::session::Session,
            ) -> Result<(), $crate::store::StoreError> {
                let (user_id, session_type) =
                    (session.user_id.clone(), session.session_type.clone());
                let user = self.user_label(&user_id);
                let run = self.upsert_inner(session);
                $crate::telemetry::observe(
                    $crate::telemetry::Operation::Upsert,
                    &session_type,
                    user,
                    run,
                )
                .await
            }

            async fn delete(
                &self,
                session_id: &str,
                user_id: &str,
                session_type: &str,
            ) -> Result<(), $crate::store::StoreError> {
                let user = self.user_label(user_id);
                let run = self.delete_inner(session_id, user_id, session_type);
                $crate::telemetry::observe(
                    $crate::telemetry::Operation::Delete,
                    session_type,
                    user,
                    run,
                )
                .await
            }

            async fn get_all(
                &self,
                user_id: &str,
                session_type: &str,
            ) -> Result<Vec<$crate::session::Session>, $crate::store::StoreError> {
                let user = self.user_label(user_id);
                let run = self.get_all_inner(user_id, session_type);
                $crate::telemetry::observe(
                    $crate::telemetry::Operation::GetAll,
                    session_type,
                    user,
                    run,
                )
                .await
            }

            async fn delete_all(
                &self,
                user_id: &str,
                session_type: &str,
            ) -> Result<(), $crate::store::StoreError> {
                let user = self.user_label(user_id);
                let run = self.delete_all_inner(user_id, session_type);
                $crate::telemetry::observe(
                    $crate::telemetry::Operation::DeleteAll,
                    session_type,
                    user,
                    run,
                )
                .await
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

/// Records how long a checkout waited for a pooled connection.
pub(crate) fn pool_waited(started: Instant) {
    metrics::histogram!(POOL_WAIT_SECONDS).record(started.elapsed().as_secs_f64());
}
