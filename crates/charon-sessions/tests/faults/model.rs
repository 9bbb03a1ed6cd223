//! The stored states one task's session may be in, as far as the task can
//! know from its own calls: what makes a result *wrong*.

use charon_sessions::Session;

use crate::common::HOUR;

/// The stored states one task's session may be in, as far as the task can
/// know from its own calls.
pub(crate) struct Model {
    /// Possible stored values of the session (`None` = absent).
    possible: Vec<Option<Session>>,
    /// The copy the task would refresh next (last read or written).
    local: Option<Session>,
    /// `data_lost` as it was when the last call started.
    seen_loss: u64,
    /// Set after a wrong result: the next read is taken as the truth.
    unknown: bool,
    /// After a conflict, the next call is a read.
    pub(crate) needs_read: bool,
}

fn show(s: &Option<Session>) -> String {
    match s {
        None => "absent".to_owned(),
        Some(s) => format!(
            "{{id {} user {} lock {} token {}}}",
            s.id, s.user_id, s.lock_version, s.refresh_token_id
        ),
    }
}

fn show_all(list: &[Option<Session>]) -> String {
    list.iter().map(show).collect::<Vec<_>>().join(" | ")
}

impl Model {
    pub(crate) fn new(loss: u64) -> Model {
        Model {
            possible: vec![None],
            local: None,
            seen_loss: loss,
            unknown: false,
            needs_read: false,
        }
    }

    fn allow(&mut self, state: Option<Session>) {
        if !self.possible.contains(&state) {
            self.possible.push(state);
        }
    }

    /// Accounts for data loss around a call that started with `loss_at_start`
    /// and ended with `loss_at_end`: a loss entirely before the call leaves
    /// "absent" as the only state; one that may have happened during it
    /// adds "absent" to the possible states.
    pub(crate) fn before_result(&mut self, loss_at_start: u64, loss_at_end: u64) {
        if loss_at_start != self.seen_loss {
            self.possible = vec![None];
            self.unknown = false;
        } else if loss_at_end != self.seen_loss {
            self.allow(None);
        }
    }

    /// Called after the result is applied: a loss after the call started
    /// may still come after the state it saw.
    pub(crate) fn after_result(&mut self, loss_at_start: u64) {
        self.seen_loss = loss_at_start;
    }

    pub(crate) fn read(&mut self, found: Option<Session>) -> Result<(), String> {
        let verdict = if self.unknown || self.possible.contains(&found) {
            Ok(())
        } else {
            Err(format!(
                "read {} but the stored session can only be {}",
                show(&found),
                show_all(&self.possible)
            ))
        };
        self.possible = vec![found.clone()];
        self.local = found;
        self.unknown = false;
        self.needs_read = false;
        verdict
    }

    pub(crate) fn next_write(&self, user: &str, id: &str, n: usize) -> Session {
        let mut s = match &self.local {
            Some(s) => {
                let mut s = s.clone();
                s.rotate_refresh_token(HOUR);
                s
            }
            None => {
                let mut s = Session::new_login(user, HOUR);
                s.id = id.to_owned();
                s
            }
        };
        s.extra_payload.insert("write".into(), serde_json::json!(n));
        s
    }

    pub(crate) fn upsert_ok(&mut self, sent_lock: u64, written: Session) -> Result<(), String> {
        let could = self.unknown
            || if sent_lock == 0 {
                self.possible.contains(&None)
            } else {
                self.possible
                    .iter()
                    .any(|p| p.as_ref().is_some_and(|s| s.lock_version == sent_lock))
            };
        let verdict = if !could {
            Err(format!(
                "upsert with lock {sent_lock} succeeded but the stored session can only be {}",
                show_all(&self.possible)
            ))
        } else if written.lock_version != sent_lock + 1 {
            Err(format!(
                "upsert with lock {sent_lock} succeeded and set lock {}",
                written.lock_version
            ))
        } else {
            Ok(())
        };
        self.possible = vec![Some(written.clone())];
        self.local = Some(written);
        self.unknown = false;
        verdict
    }

    pub(crate) fn upsert_conflict(&mut self, sent_lock: u64) -> Result<(), String> {
        let conflicts = |p: &Option<Session>| match p {
            None => sent_lock != 0,
            Some(s) => sent_lock == 0 || s.lock_version != sent_lock,
        };
        self.needs_read = true;
        if self.unknown {
            return Ok(());
        }
        if self.possible.iter().any(conflicts) {
            self.possible.retain(conflicts);
            Ok(())
        } else {
            let msg = format!(
                "upsert with lock {sent_lock} conflicted but the stored session can only be {}",
                show_all(&self.possible)
            );
            self.unknown = true;
            Err(msg)
        }
    }

    /// An upsert that failed (or hung) may or may not have been applied.
    pub(crate) fn upsert_failed(&mut self, mut attempted: Session) {
        attempted.lock_version += 1;
        self.allow(Some(attempted));
    }

    pub(crate) fn deleted(&mut self) {
        self.possible = vec![None];
        self.local = None;
        self.unknown = false;
    }

    pub(crate) fn delete_failed(&mut self) {
        self.allow(None);
    }
}
