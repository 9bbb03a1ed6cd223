//! `charon-sessions demo`: a day of a small service, played against a store.
//!
//! A tiny refresh-token service (login, refresh with rotation, logout,
//! logout everywhere) runs on top of [`SessionStore`]; the demo drives it
//! through the situations a real service meets and checks each outcome
//! against what the store documents. Every step prints one table row; any
//! step that does not behave as documented makes the command exit non-zero.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use charon_sessions::{Session, SessionLimit, SessionStore, StoreError};
use clap::Args;
use comfy_table::{Cell, Color, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use tokio::sync::Barrier;

use crate::store_args::StoreArgs;

/// Options of `charon-sessions demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    store: StoreArgs,

    /// Refresh window of the session that is left to expire, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    expiry_seconds: u64,
}

/// Refresh window of ordinary logins.
const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// One hour.
const HOUR: Duration = Duration::from_secs(3600);

/// What a client holds after login or refresh: enough to find its session
/// and prove which refresh token generation it has.
#[derive(Debug, Clone)]
struct RefreshToken {
    session_id: String,
    user_id: String,
    token_id: String,
}

/// Why the service refused a refresh.
#[derive(Debug)]
enum Refused {
    /// The session is gone: logged out, revoked or expired.
    NoSession,
    /// The token is not the session's current one (replayed or stolen).
    StaleToken,
    /// Another refresh of the same session won the optimistic-locking race.
    LostRace,
}

/// The refresh-token service the demo exercises.
#[derive(Clone)]
struct Service {
    store: Arc<dyn SessionStore>,
}

impl Service {
    async fn login(
        &self,
        user_id: &str,
        device: &str,
        ttl: Duration,
    ) -> Result<(Session, RefreshToken), StoreError> {
        let mut session = Session::new_login(user_id, ttl);
        session.extra_payload.insert("device".into(), device.into());
        self.store.upsert(&mut session).await?;
        let token = token_of(&session);
        Ok((session, token))
    }

    /// Reads the session, checks the token, rotates it and writes back.
    /// `between` runs after the read and before the write (the demo uses it
    /// to line up two concurrent refreshes).
    async fn refresh(
        &self,
        token: &RefreshToken,
        between: Option<Arc<Barrier>>,
    ) -> Result<Result<(Session, RefreshToken), Refused>, StoreError> {
        let Some(mut session) = self
            .store
            .get(&token.session_id, &token.user_id, "full")
            .await?
        else {
            return Ok(Err(Refused::NoSession));
        };
        if let Some(barrier) = between {
            barrier.wait().await;
        }
        if session.refresh_token_id != token.token_id {
            return Ok(Err(Refused::StaleToken));
        }
        session.rotate_refresh_token(REFRESH_TTL);
        match self.store.upsert(&mut session).await {
            Ok(()) => {
                let token = token_of(&session);
                Ok(Ok((session, token)))
            }
            Err(StoreError::Conflict) => Ok(Err(Refused::LostRace)),
            Err(e) => Err(e),
        }
    }
}

fn token_of(session: &Session) -> RefreshToken {
    RefreshToken {
        session_id: session.id.clone(),
        user_id: session.user_id.clone(),
        token_id: session.refresh_token_id.clone(),
    }
}

/// "accepted", or why the refresh was refused.
fn outcome<T>(result: &Result<T, Refused>) -> String {
    match result {
        Ok(_) => "accepted".to_owned(),
        Err(r) => refused(r).to_owned(),
    }
}

fn refused(r: &Refused) -> &'static str {
    match r {
        Refused::NoSession => "refused: no such session",
        Refused::StaleToken => "refused: stale refresh token",
        Refused::LostRace => "refused: lost the race (Conflict)",
    }
}

/// The rows of the report.
struct Report {
    table: Table,
    steps: usize,
    failed: usize,
}

impl Report {
    fn new() -> Report {
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(["#", "who", "what happens", "expected", "observed", ""]);
        Report {
            table,
            steps: 0,
            failed: 0,
        }
    }

    fn step(&mut self, who: &str, what: &str, expected: &str, observed: String, ok: bool) {
        self.steps += 1;
        if !ok {
            self.failed += 1;
        }
        let mark = if ok {
            Cell::new("ok").fg(Color::Green)
        } else {
            Cell::new("FAIL").fg(Color::Red)
        };
        self.table.add_row(vec![
            Cell::new(self.steps),
            Cell::new(who),
            Cell::new(what),
            Cell::new(expected),
            Cell::new(observed),
            mark,
        ]);
    }

    /// Prints the table and the verdict; `FAILURE` when a step misbehaved.
    fn finish(&self) -> ExitCode {
        println!("{}", self.table);
        if self.failed == 0 {
            println!("all {} steps behaved as documented", self.steps);
            ExitCode::SUCCESS
        } else {
            println!(
                "{} of {} steps did NOT behave as documented",
                self.failed, self.steps
            );
            ExitCode::FAILURE
        }
    }
}

fn device_of(s: &Session) -> String {
    s.extra_payload
        .get("device")
        .and_then(|d| d.as_str())
        .unwrap_or("?")
        .to_owned()
}

fn devices(sessions: &[Session]) -> String {
    let mut names: Vec<String> = sessions.iter().map(device_of).collect();
    names.sort();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Runs the demo; `Ok(FAILURE)` when a step misbehaved.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let opened = args.store.open().await?;
    println!("charon-sessions demo on the {}", opened.description);
    let mut day = Day::new(opened.store);
    let morning = morning_logins(&mut day, Duration::from_secs(args.expiry_seconds)).await?;
    refresh_with_rotation(&mut day, &morning.alice_laptop).await?;
    concurrent_refreshes(&mut day, &morning.bob_phone).await?;
    log_out_one_device(&mut day, &morning.alice_phone).await?;
    log_out_everywhere(&mut day).await?;
    more_devices_than_the_limit(&mut day).await?;
    expiry(&mut day, &morning).await?;
    clean_up(&day).await?;
    Ok(day.report.finish())
}

/// The demo's day: the service, this run's users and the report.
struct Day {
    svc: Service,
    alice: String,
    bob: String,
    carol: String,
    dave: String,
    report: Report,
}

/// What the morning's logins handed out that later steps use.
struct Morning {
    alice_laptop: RefreshToken,
    alice_phone: RefreshToken,
    bob_phone: RefreshToken,
    /// Carol's kiosk session, whose refresh window is `--expiry-seconds`.
    carol_session: Session,
    carol_kiosk: RefreshToken,
    carol_logged_in: Instant,
}

impl Day {
    fn new(store: Arc<dyn SessionStore>) -> Day {
        // User ids unique to this run, so a shared Redis is never disturbed.
        let run_id = &charon_sessions::Session::new_id()[..6];
        let uid = |name: &str| format!("{name}@demo-{run_id}");
        Day {
            svc: Service { store },
            alice: uid("alice"),
            bob: uid("bob"),
            carol: uid("carol"),
            dave: uid("dave"),
            report: Report::new(),
        }
    }

    fn store(&self) -> &dyn SessionStore {
        self.svc.store.as_ref()
    }
}

/// Morning: logins on several devices, and one on a kiosk whose refresh
/// window is `expiry`.
async fn morning_logins(day: &mut Day, expiry: Duration) -> anyhow::Result<Morning> {
    let mut tokens = Vec::new();
    for (name, user, device) in [
        ("alice", &day.alice, "laptop"),
        ("alice", &day.alice, "phone"),
        ("alice", &day.alice, "tablet"),
        ("bob", &day.bob, "laptop"),
        ("bob", &day.bob, "phone"),
    ] {
        let (session, token) = day.svc.login(user, device, REFRESH_TTL).await?;
        day.report.step(
            name,
            &format!("logs in on the {device}"),
            "stored, lock version 1",
            format!("stored, lock version {}", session.lock_version),
            session.lock_version == 1,
        );
        tokens.push(token);
    }
    let [
        alice_laptop,
        alice_phone,
        _alice_tablet,
        _bob_laptop,
        bob_phone,
    ] = <[RefreshToken; 5]>::try_from(tokens).expect("five logins");
    let (carol_session, carol_kiosk) = day.svc.login(&day.carol, "kiosk", expiry).await?;
    let carol_logged_in = Instant::now();
    day.report.step(
        "carol",
        &format!(
            "logs in on a kiosk with a {}-second refresh window",
            expiry.as_secs()
        ),
        "stored, lock version 1",
        format!("stored, lock version {}", carol_session.lock_version),
        carol_session.lock_version == 1,
    );
    Ok(Morning {
        alice_laptop,
        alice_phone,
        bob_phone,
        carol_session,
        carol_kiosk,
        carol_logged_in,
    })
}

/// A refresh with rotation, then a replay of the old token, then a
/// refresh with the new one.
async fn refresh_with_rotation(day: &mut Day, laptop: &RefreshToken) -> anyhow::Result<()> {
    let rotated = match day.svc.refresh(laptop, None).await? {
        Ok((session, token)) => {
            let new = token.token_id != laptop.token_id;
            day.report.step(
                "alice",
                "laptop refreshes: new refresh token, write back",
                "new token, lock version 2",
                format!(
                    "{} token, lock version {}",
                    if new { "new" } else { "same" },
                    session.lock_version
                ),
                new && session.lock_version == 2,
            );
            Some(token)
        }
        Err(r) => {
            day.report.step(
                "alice",
                "laptop refreshes",
                "new token, lock version 2",
                refused(&r).into(),
                false,
            );
            None
        }
    };
    let replay = day.svc.refresh(laptop, None).await?;
    day.report.step(
        "alice",
        "laptop replays the old refresh token",
        "refused: stale refresh token",
        outcome(&replay),
        matches!(replay, Err(Refused::StaleToken)),
    );
    if let Some(token) = &rotated {
        let again = day.svc.refresh(token, None).await?;
        day.report.step(
            "alice",
            "laptop refreshes with the rotated token",
            "accepted, lock version 3",
            match &again {
                Ok((s, _)) => format!("accepted, lock version {}", s.lock_version),
                Err(r) => refused(r).to_owned(),
            },
            matches!(&again, Ok((s, _)) if s.lock_version == 3),
        );
    }
    Ok(())
}

/// Two tabs refresh the same session at the same moment: both read the
/// same lock version before either writes.
async fn concurrent_refreshes(day: &mut Day, phone: &RefreshToken) -> anyhow::Result<()> {
    let barrier = Arc::new(Barrier::new(2));
    let race = |token: RefreshToken| {
        let svc = day.svc.clone();
        let barrier = Arc::clone(&barrier);
        tokio::spawn(async move { svc.refresh(&token, Some(barrier)).await })
    };
    let (first, second) = (race(phone.clone()), race(phone.clone()));
    let outcomes = [first.await??, second.await??];
    let wins = outcomes.iter().filter(|o| o.is_ok()).count();
    let conflicts = outcomes
        .iter()
        .filter(|o| matches!(o, Err(Refused::LostRace)))
        .count();
    day.report.step(
        "bob",
        "two phone tabs refresh the same session concurrently",
        "exactly one wins, one Conflict",
        format!("{wins} won, {conflicts} Conflict"),
        wins == 1 && conflicts == 1,
    );
    Ok(())
}

/// "My devices", then logging out one device: its token is refused, and
/// a request in flight cannot write its old copy back.
async fn log_out_one_device(day: &mut Day, phone: &RefreshToken) -> anyhow::Result<()> {
    let listed = day.store().get_all(&day.alice, "full").await?;
    day.report.step(
        "alice",
        "lists her signed-in devices",
        "laptop, phone, tablet",
        devices(&listed),
        devices(&listed) == "laptop, phone, tablet",
    );
    let phone_copy = day
        .store()
        .get(&phone.session_id, &day.alice, "full")
        .await?;
    day.store()
        .delete(&phone.session_id, &day.alice, "full")
        .await?;
    let listed = day.store().get_all(&day.alice, "full").await?;
    day.report.step(
        "alice",
        "logs out on the phone",
        "laptop, tablet",
        devices(&listed),
        devices(&listed) == "laptop, tablet",
    );
    let after_logout = day.svc.refresh(phone, None).await?;
    day.report.step(
        "alice",
        "logged-out phone tries to refresh",
        "refused: no such session",
        outcome(&after_logout),
        matches!(after_logout, Err(Refused::NoSession)),
    );
    write_back_after_logout(day, phone, phone_copy).await
}

/// A request in flight writes the phone's copy, read before the logout,
/// back: a Conflict, and the session stays deleted.
async fn write_back_after_logout(
    day: &mut Day,
    phone: &RefreshToken,
    phone_copy: Option<Session>,
) -> anyhow::Result<()> {
    let resurrect = match phone_copy {
        Some(mut stale) => {
            stale.rotate_refresh_token(REFRESH_TTL);
            match day.store().upsert(&mut stale).await {
                Err(StoreError::Conflict) => "Conflict".to_owned(),
                Ok(()) => "written".to_owned(),
                Err(e) => return Err(e.into()),
            }
        }
        None => "phone session was not readable before logout".to_owned(),
    };
    let gone = day
        .store()
        .get(&phone.session_id, &day.alice, "full")
        .await?
        .is_none();
    day.report.step(
        "alice",
        "a request in flight writes the phone's old copy back",
        "Conflict; session stays deleted",
        format!(
            "{resurrect}; session {}",
            if gone { "stays deleted" } else { "is back" }
        ),
        resurrect == "Conflict" && gone,
    );
    Ok(())
}

/// Log out everywhere: Bob's sessions go, Alice's stay.
async fn log_out_everywhere(day: &mut Day) -> anyhow::Result<()> {
    day.store().delete_all(&day.bob, "full").await?;
    let bob_left = day.store().get_all(&day.bob, "full").await?;
    let alice_left = day.store().get_all(&day.alice, "full").await?;
    day.report.step(
        "bob",
        "logs out everywhere",
        "bob: none; alice: laptop, tablet",
        format!(
            "bob: {}; alice: {}",
            devices(&bob_left),
            devices(&alice_left)
        ),
        bob_left.is_empty() && devices(&alice_left) == "laptop, tablet",
    );
    Ok(())
}

/// A user with very many sessions: the default limit keeps 100 of one
/// type, the one expiring soonest logged out to make room.
async fn more_devices_than_the_limit(day: &mut Day) -> anyhow::Result<()> {
    let (old_browser, _) = day.svc.login(&day.dave, "old browser", HOUR).await?;
    for n in 1..SessionLimit::DEFAULT_MAX {
        day.svc
            .login(&day.dave, &format!("browser {n}"), REFRESH_TTL)
            .await?;
    }
    let (new_phone, _) = day.svc.login(&day.dave, "new phone", REFRESH_TTL).await?;
    let kept = day.store().get_all(&day.dave, "full").await?;
    let old_gone = kept.iter().all(|s| s.id != old_browser.id);
    let phone_in = kept.iter().any(|s| s.id == new_phone.id);
    day.report.step(
        "dave",
        &format!(
            "logs in on device number {} (the oldest with a 1-hour refresh window)",
            SessionLimit::DEFAULT_MAX + 1
        ),
        "100 sessions kept; the old browser (expiring soonest) logged out",
        format!(
            "{} sessions kept; the old browser {}",
            kept.len(),
            if old_gone {
                "logged out"
            } else {
                "still there"
            }
        ),
        kept.len() == SessionLimit::DEFAULT_MAX && old_gone && phone_in,
    );
    Ok(())
}

/// A session that expires: Carol's kiosk, once its refresh window is
/// over.
async fn expiry(day: &mut Day, morning: &Morning) -> anyhow::Result<()> {
    while Session::now() < morning.carol_session.refresh_expires_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expired = day.svc.refresh(&morning.carol_kiosk, None).await?;
    let left = day.store().get_all(&day.carol, "full").await?;
    day.report.step(
        "carol",
        &format!(
            "kiosk refreshes once its refresh window is over ({:.1} s after login)",
            morning.carol_logged_in.elapsed().as_secs_f64()
        ),
        "refused: no such session; none left",
        format!("{}; {} left", outcome(&expired), devices(&left)),
        matches!(expired, Err(Refused::NoSession)) && left.is_empty(),
    );
    Ok(())
}

/// Leaves nothing behind in a shared Redis.
async fn clean_up(day: &Day) -> anyhow::Result<()> {
    for user in [&day.alice, &day.bob, &day.carol, &day.dave] {
        day.store().delete_all(user, "full").await?;
    }
    Ok(())
}
