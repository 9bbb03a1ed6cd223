//! A real Erlang runtime for the tests of Charon's payload format: an
//! `erl -noshell` process running `erlang/charon_peer.erl`, which evaluates
//! one Erlang expression sequence per line and does what Charon 4.3's Redis
//! store does (key derivation, signing, `term_to_binary`, the checks on
//! read) with Erlang/OTP's own `crypto` and term codec.
//!
//! `erl` and `erlc` come from `ERL_BIN` (the path of `erl`; `erlc` beside
//! it), else from `PATH` (`scripts/test` installs Debian's `erlang-base` and
//! `erlang-crypto`). They must be Erlang/OTP 25 ([`REQUIRED_OTP`]): the
//! tests compare the store's bytes with OTP 25's `term_to_binary(S,
//! [{minor_version, 2}])`, and OTP 26 and later write the atom keys of
//! small maps in another order. Without them, or with another release,
//! starting a peer panics saying how to get them: a test that needs Erlang
//! never skips.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The Erlang/OTP release the tests need (`erlang:system_info(otp_release)`).
pub const REQUIRED_OTP: &str = "25";

/// The peer module's source, compiled into a temporary directory per peer.
const PEER_SOURCE: &str = include_str!("../erlang/charon_peer.erl");

/// A running `erl -noshell` evaluating the tests' expressions; killed on
/// drop.
#[derive(Debug)]
pub struct Erlang {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    _dir: tempfile::TempDir,
}

/// What one evaluation gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A binary, its bytes.
    Binary(Vec<u8>),
    /// Any other term, printed with `~w`.
    Term(String),
}

fn erl_binary() -> PathBuf {
    std::env::var_os("ERL_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join("erl"))
                    .find(|p| p.is_file())
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "no erl found: run the tests with scripts/test (it installs Debian's \
                 erlang-base and erlang-crypto), or set ERL_BIN to an erl of Erlang/OTP \
                 {REQUIRED_OTP}"
            )
        })
}

impl Erlang {
    /// Compiles the peer module and starts a runtime evaluating lines, with
    /// the `erl` of `ERL_BIN` or `PATH`.
    ///
    /// # Panics
    ///
    /// When no `erl`/`erlc` is found, the module does not compile, the
    /// runtime does not start, or it is not Erlang/OTP [`REQUIRED_OTP`].
    pub fn start() -> Erlang {
        Self::start_with(&erl_binary())
    }

    /// Like [`start`](Self::start), with the `erl` at `erl` (`erlc` beside
    /// it).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_with(erl: &Path) -> Erlang {
        let erlc = erl.with_file_name("erlc");
        let dir = tempfile::tempdir().expect("temporary directory");
        let source = dir.path().join("charon_peer.erl");
        std::fs::write(&source, PEER_SOURCE).expect("write charon_peer.erl");
        let compiled = Command::new(&erlc)
            .arg("-o")
            .arg(dir.path())
            .arg(&source)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", erlc.display()));
        assert!(
            compiled.status.success(),
            "erlc charon_peer.erl failed:\n{}{}",
            String::from_utf8_lossy(&compiled.stdout),
            String::from_utf8_lossy(&compiled.stderr)
        );
        let mut child = Command::new(erl)
            .args(["-noshell", "-pa"])
            .arg(dir.path())
            .args(["-s", "charon_peer", "main"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", erl.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut erlang = Erlang {
            child,
            stdin,
            stdout,
            _dir: dir,
        };
        let release = erlang.term("list_to_integer(erlang:system_info(otp_release)).");
        assert!(
            release == REQUIRED_OTP,
            "{} is Erlang/OTP {release}; the Charon format tests need Erlang/OTP {REQUIRED_OTP} \
             (they compare bytes with its term_to_binary): run scripts/provision-erlang, or set \
             ERL_BIN to an erl of OTP {REQUIRED_OTP}",
            erl.display()
        );
        erlang
    }

    /// Evaluates `expressions` (one line, ending with `.`); variables bound
    /// stay bound for later calls.
    ///
    /// # Errors
    ///
    /// The exception the expressions raised, printed with `~w`.
    pub fn try_eval(&mut self, expressions: &str) -> Result<Reply, String> {
        assert!(
            !expressions.contains('\n'),
            "one line per evaluation: {expressions}"
        );
        writeln!(self.stdin, "{expressions}").expect("write to erl");
        self.stdin.flush().expect("flush to erl");
        let mut line = Vec::new();
        let n = self
            .stdout
            .read_until(b'\n', &mut line)
            .expect("read from erl");
        assert!(n > 0, "erl exited while evaluating {expressions}");
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\n');
        if let Some(hex) = line.strip_prefix("bin ") {
            Ok(Reply::Binary(decode_hex(hex)))
        } else if let Some(term) = line.strip_prefix("term ") {
            Ok(Reply::Term(term.to_owned()))
        } else if let Some(error) = line.strip_prefix("error ") {
            Err(error.to_owned())
        } else {
            panic!("unexpected line from erl: {line}")
        }
    }

    /// Evaluates `expressions`, which must not raise.
    ///
    /// # Panics
    ///
    /// When they raise.
    pub fn eval(&mut self, expressions: &str) -> Reply {
        self.try_eval(expressions)
            .unwrap_or_else(|e| panic!("erl raised {e}\nevaluating {expressions}"))
    }

    /// Evaluates `expressions`, which must give a binary.
    ///
    /// # Panics
    ///
    /// When they raise or give another term.
    pub fn bytes(&mut self, expressions: &str) -> Vec<u8> {
        match self.eval(expressions) {
            Reply::Binary(bytes) => bytes,
            Reply::Term(term) => panic!("expected a binary from {expressions}, got {term}"),
        }
    }

    /// Evaluates `expressions`, which must give something other than a
    /// binary: the term printed with `~w`.
    ///
    /// # Panics
    ///
    /// When they raise or give a binary.
    pub fn term(&mut self, expressions: &str) -> String {
        match self.eval(expressions) {
            Reply::Term(term) => term,
            Reply::Binary(bytes) => panic!("expected a term from {expressions}, got {bytes:02x?}"),
        }
    }
}

/// An Erlang expression for the binary `bytes`.
pub fn binary(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
    format!("charon_peer:hex(<<\"{hex}\">>)")
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex from erl"))
        .collect()
}

impl Drop for Erlang {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
