//! The Erlang/OTP release the Charon format tests run on: they compare the
//! store's bytes with OTP 25's `term_to_binary`, so `scripts/provision-erlang`
//! and the testkit's Erlang peer accept the real OTP 25 runtime and refuse
//! any other release, saying which they need. The other release is a
//! stand-in `erl` script answering "26" (this machine has Debian 12's OTP 25
//! only): it exercises the version checks, nothing else.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use charon_sessions_testkit::Erlang;
use charon_sessions_testkit::erlang::REQUIRED_OTP;

fn provision_erlang() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/provision-erlang")
}

/// The real `erl`: `ERL_BIN` (scripts/test sets it), else the one on PATH.
fn real_erl() -> PathBuf {
    std::env::var_os("ERL_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            let out = Command::new("sh")
                .args(["-c", "command -v erl"])
                .output()
                .ok()?;
            let path = String::from_utf8(out.stdout).ok()?;
            Some(PathBuf::from(path.trim()))
        })
        .filter(|p| p.is_file())
        .expect("no erl: run with scripts/test, or set ERL_BIN")
}

/// A directory with an `erl` that says it is OTP 26 (to the release query,
/// and to every line the peer is sent) and succeeds otherwise, and an
/// `erlc` that succeeds.
fn otp26_stand_in() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write(
        "erl",
        "#!/bin/sh\n\
         case \"$*\" in\n\
           *otp_release*) printf 26 ;;\n\
           *charon_peer*) while read -r line; do echo 'term 26'; done ;;\n\
         esac\n\
         exit 0\n",
    );
    write("erlc", "#!/bin/sh\nexit 0\n");
    dir
}

#[test]
fn provision_erlang_accepts_otp_25_only() {
    let real = real_erl();
    let out = Command::new(provision_erlang())
        .env("ERL_BIN", &real)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("ERL_BIN={}", real.display())
    );
    assert!(
        stderr.contains(&format!("(OTP {REQUIRED_OTP})")),
        "{stderr}"
    );

    let other = otp26_stand_in();
    let out = Command::new(provision_erlang())
        .env("ERL_BIN", other.path().join("erl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted OTP 26: {stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("OTP '26'") && stderr.contains("need OTP 25"),
        "{stderr}"
    );
}

#[test]
fn the_erlang_peer_needs_otp_25() {
    let mut erl = Erlang::start_with(&real_erl());
    assert_eq!(
        erl.term("list_to_integer(erlang:system_info(otp_release))."),
        REQUIRED_OTP
    );
    drop(erl);

    let other = otp26_stand_in();
    let refused = std::panic::catch_unwind(|| Erlang::start_with(&other.path().join("erl")))
        .expect_err("a peer of OTP 26 started");
    let message = refused
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("is Erlang/OTP 26") && message.contains("need Erlang/OTP 25"),
        "{message}"
    );
}
