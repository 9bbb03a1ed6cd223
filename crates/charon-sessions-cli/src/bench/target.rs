//! What a phase runs each operation against: the store, or the bare Redis
//! commands the store's operations are made of (the baseline), on the same
//! connections and client.
//!
//! Only the operation itself is timed. Untimed: rotating the refresh token
//! before an upsert (the application's work), and creating a deleted
//! session again after a delete (so the data set stays the same size).
//!
//! Both loops do the same untimed application work, since it competes for
//! the same cores as the timed operations: the baseline also rotates the
//! refresh token of its slot's session before an upsert (its prepared
//! `FCALL` value stays as it is, but it carries the moved expiry, so the
//! server's work matches too: `UpsertCommand::cmd_expiring_at`), and also
//! builds the new session the store builds after a delete (then writes
//! its prepared value again instead).

use std::time::{Duration, Instant};

use charon_sessions::{RedisStore, SessionStore};

use super::dataset::{REFRESH_TTL, SESSION_TYPE, User, new_session};
use super::mix::Op;

/// The two things a phase can measure.
#[derive(Clone)]
pub enum Target {
    /// The store's operations (`get`, `upsert`, `get_all`, `delete`).
    Store(RedisStore),
    /// The bare commands (`HGET`, `FCALL` with a precomputed value,
    /// `HGETALL`, `HDEL`) through [`RedisStore::run_command`]: no
    /// validation, signing, verification, encoding or decoding.
    Baseline(RedisStore),
}

impl Target {
    /// Runs `op` on one of `user`'s sessions (drawn with `rng`) and returns
    /// how long the operation took, or what went wrong.
    pub async fn run(
        &self,
        op: Op,
        user: &mut User,
        rng: &mut fastrand::Rng,
    ) -> Result<Duration, String> {
        let i = rng.usize(..user.slots.len());
        match self {
            Target::Store(store) => store_op(store, op, user, i).await,
            Target::Baseline(store) => baseline_op(store, op, user, i).await,
        }
    }
}

async fn store_op(
    store: &RedisStore,
    op: Op,
    user: &mut User,
    i: usize,
) -> Result<Duration, String> {
    let expected = user.slots.len();
    let slot = &mut user.slots[i];
    let started;
    match op {
        Op::Get => {
            started = Instant::now();
            let found = store
                .get(&slot.session.id, &user.id, SESSION_TYPE)
                .await
                .map_err(|e| e.to_string())?;
            let elapsed = started.elapsed();
            match found {
                Some(s) if s.lock_version == slot.session.lock_version => Ok(elapsed),
                Some(_) => Err("get: read another lock version than last written".to_owned()),
                None => Err("get: session missing".to_owned()),
            }
        }
        Op::Upsert => {
            slot.session.rotate_refresh_token(REFRESH_TTL);
            started = Instant::now();
            store
                .upsert(&mut slot.session)
                .await
                .map_err(|e| e.to_string())?;
            Ok(started.elapsed())
        }
        Op::GetAll => {
            started = Instant::now();
            let all = store
                .get_all(&user.id, SESSION_TYPE)
                .await
                .map_err(|e| e.to_string())?;
            let elapsed = started.elapsed();
            if all.len() == expected {
                Ok(elapsed)
            } else {
                Err(format!(
                    "get_all: {} sessions, expected {expected}",
                    all.len()
                ))
            }
        }
        Op::Delete => {
            started = Instant::now();
            store
                .delete(&slot.session.id, &user.id, SESSION_TYPE)
                .await
                .map_err(|e| e.to_string())?;
            let elapsed = started.elapsed();
            let mut again = new_session(&user.id, i);
            store
                .upsert(&mut again)
                .await
                .map_err(|e| format!("delete: creating the session again: {e}"))?;
            slot.session = again;
            Ok(elapsed)
        }
    }
}

async fn baseline_op(
    store: &RedisStore,
    op: Op,
    user: &mut User,
    i: usize,
) -> Result<Duration, String> {
    let expected_fields = 2 * user.slots.len();
    let slot = &mut user.slots[i];
    let (prepared, lock) = slot
        .prepared
        .as_mut()
        .ok_or("the baseline needs prepared commands")?;
    let key = prepared.key();
    // The application's work before an upsert, as in `store_op`.
    if op == Op::Upsert {
        slot.session.rotate_refresh_token(REFRESH_TTL);
    }
    let started = Instant::now();
    match op {
        Op::Get => {
            let mut cmd = redis::cmd("HGET");
            cmd.arg(key).arg(&slot.session.id);
            let value: Option<Vec<u8>> =
                store.run_command(&cmd).await.map_err(|e| e.to_string())?;
            let elapsed = started.elapsed();
            match value {
                Some(_) => Ok(elapsed),
                None => Err("HGET: field missing".to_owned()),
            }
        }
        Op::Upsert => {
            // The expiry the rotation moved, as the store's upsert sends
            // it: only the value stays the prepared one.
            let cmd = prepared.cmd_expiring_at(*lock + 1, slot.session.refresh_expires_at);
            let written: i64 = store.run_command(&cmd).await.map_err(|e| e.to_string())?;
            let elapsed = started.elapsed();
            if written != 1 {
                return Err("FCALL: lock version conflict".to_owned());
            }
            *lock += 1;
            Ok(elapsed)
        }
        Op::GetAll => {
            let mut cmd = redis::cmd("HGETALL");
            cmd.arg(key);
            let fields: Vec<(Vec<u8>, Vec<u8>)> =
                store.run_command(&cmd).await.map_err(|e| e.to_string())?;
            let elapsed = started.elapsed();
            if fields.len() == expected_fields {
                Ok(elapsed)
            } else {
                Err(format!(
                    "HGETALL: {} fields, expected {expected_fields}",
                    fields.len()
                ))
            }
        }
        Op::Delete => {
            let mut cmd = redis::cmd("HDEL");
            cmd.arg(key)
                .arg(&slot.session.id)
                .arg(charon_sessions::layout::lock_field(&slot.session.id));
            let removed: i64 = store.run_command(&cmd).await.map_err(|e| e.to_string())?;
            let elapsed = started.elapsed();
            if removed != 2 {
                return Err(format!("HDEL: removed {removed} fields, expected 2"));
            }
            // The new session the store builds after a delete; the
            // prepared value of the old one is written instead.
            std::hint::black_box(new_session(&user.id, i));
            let written: i64 = store
                .run_command(&prepared.cmd(1))
                .await
                .map_err(|e| format!("HDEL: creating the session again: {e}"))?;
            if written != 1 {
                return Err("HDEL: creating the session again conflicted".to_owned());
            }
            *lock = 1;
            Ok(elapsed)
        }
    }
}
