//! Erlang's External Term Format: what `:erlang.term_to_binary/2` writes and
//! `:erlang.binary_to_term/1` reads, for the terms a Charon session holds.
//!
//! Decoding takes any encoding Erlang/OTP writes or accepts for numbers,
//! atoms (`ATOM_EXT` 100, `SMALL_ATOM_EXT` 115, `ATOM_UTF8_EXT` 118,
//! `SMALL_ATOM_UTF8_EXT` 119), binaries, bit strings, lists (also
//! `STRING_EXT`), tuples and maps, integers of any size, and compressed
//! terms (tag 80). Pids, ports, references and funs are kept as the bytes
//! they were read as ([`Term::Opaque`]). Stored data is untrusted: nesting
//! is limited to [`MAX_DEPTH`], no allocation is larger than the input
//! justifies, a compressed term may unpack to at most [`MAX_TERM_BYTES`],
//! and every malformed input is an error, never a panic.
//!
//! Encoding writes what `term_to_binary(Term, [{minor_version, 2}])`
//! writes (the default of Erlang/OTP 26 and later): atoms as
//! `SMALL_ATOM_UTF8_EXT`, floats as `NEW_FLOAT_EXT`, integers in the
//! smallest of `SMALL_INTEGER_EXT`, `INTEGER_EXT`, `SMALL_BIG_EXT` and
//! `LARGE_BIG_EXT`, lists of integers 0–255 as `STRING_EXT`. Map entries
//! are written in the order they are held; [`sort_map`] puts them in the
//! order Erlang writes maps of up to 32 keys.
//!
//! The crates on crates.io were not usable here: `eetf` keeps maps in a
//! `HashMap` (no stable key order), panics (`unimplemented!`) on tags 68
//! and 82 and allocates whatever length a header claims; `erltf` orders
//! `1` and `1.0` as the same map key, writes lists of small integers as
//! `LIST_EXT` where Erlang writes `STRING_EXT`, and recurses without a
//! depth limit.

use std::cmp::Ordering;
use std::fmt;

use num_bigint::{BigInt, Sign};

/// First byte of every term: the format version.
pub(crate) const VERSION: u8 = 131;

/// Deepest nesting of lists, tuples and maps a stored term may have (the
/// compact format's limit too).
pub const MAX_DEPTH: usize = 128;

/// Largest term accepted, in bytes, stored or after decompression: far
/// above any session the store writes (64 KiB by default), small enough
/// that decoding a hostile one costs little memory.
pub const MAX_TERM_BYTES: usize = 1 << 20;

const COMPRESSED: u8 = 80;
const NEW_PID_EXT: u8 = 88;
const NEW_PORT_EXT: u8 = 89;
const NEWER_REFERENCE_EXT: u8 = 90;
const NEW_FLOAT_EXT: u8 = 70;
const BIT_BINARY_EXT: u8 = 77;
const SMALL_INTEGER_EXT: u8 = 97;
const INTEGER_EXT: u8 = 98;
const FLOAT_EXT: u8 = 99;
const ATOM_EXT: u8 = 100;
const REFERENCE_EXT: u8 = 101;
const PORT_EXT: u8 = 102;
const PID_EXT: u8 = 103;
const SMALL_TUPLE_EXT: u8 = 104;
const LARGE_TUPLE_EXT: u8 = 105;
const NIL_EXT: u8 = 106;
const STRING_EXT: u8 = 107;
const LIST_EXT: u8 = 108;
const BINARY_EXT: u8 = 109;
const SMALL_BIG_EXT: u8 = 110;
const LARGE_BIG_EXT: u8 = 111;
const NEW_FUN_EXT: u8 = 112;
const EXPORT_EXT: u8 = 113;
const NEW_REFERENCE_EXT: u8 = 114;
const SMALL_ATOM_EXT: u8 = 115;
const MAP_EXT: u8 = 116;
const ATOM_UTF8_EXT: u8 = 118;
const SMALL_ATOM_UTF8_EXT: u8 = 119;
const V4_PORT_EXT: u8 = 120;

/// Longest atom Erlang allows, in characters.
pub(crate) const MAX_ATOM_CHARS: usize = 255;

/// Most elements reserved for up front by a list, tuple or map header:
/// larger ones grow as their elements actually decode, so a header that
/// claims more than is there costs no memory at any nesting level.
const MAX_INITIAL_CAPACITY: usize = 64;

/// An Erlang term.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Term {
    /// An atom, by name (`true`, `false` and `nil` included).
    Atom(String),
    /// An integer that fits an `i64`.
    Int(i64),
    /// An integer outside the `i64` range (never one inside it).
    Big(BigInt),
    /// A float (Erlang has no NaN or infinity).
    Float(f64),
    /// A binary (an Elixir string when it is UTF-8).
    Binary(Vec<u8>),
    /// A bit string whose length is not a whole number of bytes: the bytes,
    /// and how many bits of the last one are used (1–7; the others zero).
    Bits(Vec<u8>, u8),
    /// A list: its elements and, for an improper list, its tail (never a
    /// list, and only present with at least one element).
    List(Vec<Term>, Option<Box<Term>>),
    /// A tuple.
    Tuple(Vec<Term>),
    /// A map, entries in Erlang's term order of their keys (module docs):
    /// as [`decode`] gives them, or sorted with [`sort_map`].
    Map(Vec<(Term, Term)>),
    /// A pid, port, reference or fun: the bytes it was read as, tag first.
    Opaque(Opaque, Vec<u8>),
}

/// The kinds of term kept as bytes, in Erlang's term order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Opaque {
    Reference,
    Fun,
    Port,
    Pid,
}

impl Term {
    pub(crate) fn atom(name: &str) -> Term {
        Term::Atom(name.to_owned())
    }

    /// An integer term, `Big` only outside the `i64` range.
    pub(crate) fn integer(value: BigInt) -> Term {
        match i64::try_from(&value) {
            Ok(small) => Term::Int(small),
            Err(_) => Term::Big(value),
        }
    }

    pub(crate) fn nil() -> Term {
        Term::List(Vec::new(), None)
    }
}

/// Why a term could not be decoded. Never quotes the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TermError {
    /// The input ends inside a term.
    Truncated,
    /// Bytes follow the term.
    TrailingBytes,
    /// The first byte is not 131 (the format version).
    Version,
    /// A tag Erlang's `binary_to_term` would not accept here (for example
    /// an atom cache reference, which only exists on distribution links).
    UnknownTag(u8),
    /// Lists, tuples and maps nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The term is, or unpacks to, more than [`MAX_TERM_BYTES`] bytes.
    TooLarge,
    /// A term Erlang would refuse too: says which rule it breaks.
    Invalid(&'static str),
}

impl fmt::Display for TermError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TermError::Truncated => f.write_str("truncated"),
            TermError::TrailingBytes => f.write_str("bytes after the term"),
            TermError::Version => f.write_str("not an external term (first byte is not 131)"),
            TermError::UnknownTag(tag) => write!(f, "tag {tag} is not accepted"),
            TermError::TooDeep => write!(f, "nested more than {MAX_DEPTH} levels deep"),
            TermError::TooLarge => write!(f, "larger than {MAX_TERM_BYTES} bytes"),
            TermError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for TermError {}

/// Decodes one term written by `term_to_binary` (compressed or not).
pub(crate) fn decode(input: &[u8]) -> Result<Term, TermError> {
    if input.len() > MAX_TERM_BYTES {
        return Err(TermError::TooLarge);
    }
    let (&version, rest) = input.split_first().ok_or(TermError::Truncated)?;
    if version != VERSION {
        return Err(TermError::Version);
    }
    if rest.first() == Some(&COMPRESSED) {
        let mut reader = Reader::new(&rest[1..]);
        let size = reader.u32()? as usize;
        if size > MAX_TERM_BYTES {
            return Err(TermError::TooLarge);
        }
        // Bounded by the size the header states (itself bounded), so a
        // small input cannot unpack to much.
        let inflated = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(reader.rest(), size)
            .map_err(|_| TermError::Invalid("compressed data does not inflate"))?;
        if inflated.len() != size {
            return Err(TermError::Invalid(
                "compressed data has another size than stated",
            ));
        }
        return decode_all(&inflated);
    }
    decode_all(rest)
}

fn decode_all(body: &[u8]) -> Result<Term, TermError> {
    let mut reader = Reader::new(body);
    let term = reader.term(0)?;
    if !reader.rest().is_empty() {
        return Err(TermError::TrailingBytes);
    }
    Ok(term)
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Reader { input, pos: 0 }
    }

    fn rest(&self) -> &'a [u8] {
        &self.input[self.pos..]
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TermError> {
        let end = self.pos.checked_add(n).ok_or(TermError::Truncated)?;
        let bytes = self.input.get(self.pos..end).ok_or(TermError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TermError> {
        let bytes = self.take(N)?;
        Ok(bytes.try_into().expect("take returns N bytes"))
    }

    fn u8(&mut self) -> Result<u8, TermError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, TermError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, TermError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Room to reserve for `count` elements of at least `min_bytes` bytes
    /// each: never more than the input left can hold, and never more than
    /// [`MAX_INITIAL_CAPACITY`], whatever a header claims (the vector grows
    /// past that as elements really decode).
    fn capacity(&self, count: usize, min_bytes: usize) -> usize {
        count
            .min((self.input.len() - self.pos) / min_bytes)
            .min(MAX_INITIAL_CAPACITY)
    }

    fn term(&mut self, depth: usize) -> Result<Term, TermError> {
        let start = self.pos;
        let tag = self.u8()?;
        let term = match tag {
            SMALL_INTEGER_EXT => Term::Int(i64::from(self.u8()?)),
            INTEGER_EXT => Term::Int(i64::from(i32::from_be_bytes(self.array()?))),
            SMALL_BIG_EXT => {
                let n = usize::from(self.u8()?);
                self.big(n)?
            }
            LARGE_BIG_EXT => {
                let n = self.u32()? as usize;
                self.big(n)?
            }
            NEW_FLOAT_EXT => finite(f64::from_be_bytes(self.array()?))?,
            FLOAT_EXT => {
                let text = std::str::from_utf8(self.take(31)?)
                    .map_err(|_| TermError::Invalid("FLOAT_EXT is not text"))?;
                let value = text
                    .trim_end_matches('\0')
                    .trim()
                    .parse()
                    .map_err(|_| TermError::Invalid("FLOAT_EXT is not a number"))?;
                finite(value)?
            }
            ATOM_EXT | SMALL_ATOM_EXT | ATOM_UTF8_EXT | SMALL_ATOM_UTF8_EXT => self.atom(tag)?,
            BINARY_EXT => {
                let n = self.u32()? as usize;
                Term::Binary(self.take(n)?.to_vec())
            }
            BIT_BINARY_EXT => {
                let n = self.u32()? as usize;
                let bits = self.u8()?;
                let bytes = self.take(n)?;
                match (bytes.split_last(), bits) {
                    (_, 8) if n > 0 => Term::Binary(bytes.to_vec()),
                    (Some((last, init)), 1..=7) => {
                        let mut kept = init.to_vec();
                        kept.push(last & (0xFF << (8 - bits)));
                        Term::Bits(kept, bits)
                    }
                    _ => return Err(TermError::Invalid("bit string with a bad bit count")),
                }
            }
            SMALL_TUPLE_EXT => {
                let n = usize::from(self.u8()?);
                Term::Tuple(self.terms(n, depth)?)
            }
            LARGE_TUPLE_EXT => {
                let n = self.u32()? as usize;
                Term::Tuple(self.terms(n, depth)?)
            }
            NIL_EXT => Term::nil(),
            STRING_EXT => {
                let n = usize::from(self.u16()?);
                let bytes = self.take(n)?;
                Term::List(
                    bytes.iter().map(|&b| Term::Int(i64::from(b))).collect(),
                    None,
                )
            }
            LIST_EXT => {
                let n = self.u32()? as usize;
                let mut elements = self.terms(n, depth)?;
                match self.nested(depth)? {
                    // A list as the tail continues the list: [a | [b]] is [a, b].
                    Term::List(more, tail) => {
                        elements.extend(more);
                        if elements.is_empty() && tail.is_some() {
                            return Err(TermError::Invalid("improper list without elements"));
                        }
                        Term::List(elements, tail)
                    }
                    tail if elements.is_empty() => {
                        // `[ | tail]` does not exist: such a term is the tail itself.
                        tail
                    }
                    tail => Term::List(elements, Some(Box::new(tail))),
                }
            }
            MAP_EXT => {
                let n = self.u32()? as usize;
                // An entry is at least two bytes (two NIL_EXT).
                let mut entries = Vec::with_capacity(self.capacity(n, 2));
                for _ in 0..n {
                    let key = self.nested(depth)?;
                    let value = self.nested(depth)?;
                    entries.push((key, value));
                }
                // A sort compares every two keys that end up next to each
                // other (else it could not order them), so a repeated key
                // shows as an equal comparison, confirmed below.
                let mut equal_seen = false;
                entries.sort_by(|(a, _), (b, _)| {
                    let order = compare(a, b);
                    equal_seen |= order.is_eq();
                    order
                });
                if equal_seen
                    && entries
                        .windows(2)
                        .any(|pair| compare(&pair[0].0, &pair[1].0).is_eq())
                {
                    return Err(TermError::Invalid("map with a repeated key"));
                }
                Term::Map(entries)
            }
            NEW_PID_EXT | PID_EXT => {
                self.node_atom()?;
                self.take(if tag == NEW_PID_EXT { 12 } else { 9 })?;
                self.opaque(Opaque::Pid, start)
            }
            NEW_PORT_EXT | V4_PORT_EXT | PORT_EXT => {
                self.node_atom()?;
                self.take(match tag {
                    NEW_PORT_EXT => 8,
                    V4_PORT_EXT => 12,
                    _ => 5,
                })?;
                self.opaque(Opaque::Port, start)
            }
            NEWER_REFERENCE_EXT | NEW_REFERENCE_EXT => {
                let words = usize::from(self.u16()?);
                if !(1..=5).contains(&words) {
                    return Err(TermError::Invalid("reference of a bad length"));
                }
                self.node_atom()?;
                self.take(if tag == NEWER_REFERENCE_EXT { 4 } else { 1 })?;
                self.take(4 * words)?;
                self.opaque(Opaque::Reference, start)
            }
            REFERENCE_EXT => {
                self.node_atom()?;
                self.take(5)?;
                self.opaque(Opaque::Reference, start)
            }
            EXPORT_EXT => {
                // Module and function: atoms; arity: SMALL_INTEGER_EXT. Read
                // here, not as nested terms, so that nothing recurses.
                self.node_atom()?;
                self.node_atom()?;
                if self.u8()? != SMALL_INTEGER_EXT {
                    return Err(TermError::Invalid("export with a bad arity"));
                }
                self.u8()?;
                self.opaque(Opaque::Fun, start)
            }
            NEW_FUN_EXT => {
                // The size counts itself; the free variables are Erlang's
                // business, the bytes are kept as they are.
                let size = self.u32()? as usize;
                self.take(size.checked_sub(4).ok_or(TermError::Truncated)?)?;
                self.opaque(Opaque::Fun, start)
            }
            other => return Err(TermError::UnknownTag(other)),
        };
        Ok(term)
    }

    /// A term one level deeper than `depth`.
    fn nested(&mut self, depth: usize) -> Result<Term, TermError> {
        if depth >= MAX_DEPTH {
            return Err(TermError::TooDeep);
        }
        self.term(depth + 1)
    }

    fn terms(&mut self, n: usize, depth: usize) -> Result<Vec<Term>, TermError> {
        let mut elements = Vec::with_capacity(self.capacity(n, 1));
        for _ in 0..n {
            elements.push(self.nested(depth)?);
        }
        Ok(elements)
    }

    fn big(&mut self, n: usize) -> Result<Term, TermError> {
        let sign = match self.u8()? {
            0 => Sign::Plus,
            1 => Sign::Minus,
            _ => return Err(TermError::Invalid("big integer with a bad sign byte")),
        };
        let digits = self.take(n)?;
        Ok(Term::integer(BigInt::from_bytes_le(sign, digits)))
    }

    /// An atom whose tag (100, 115, 118 or 119) was just read.
    fn atom(&mut self, tag: u8) -> Result<Term, TermError> {
        let n = match tag {
            SMALL_ATOM_EXT | SMALL_ATOM_UTF8_EXT => usize::from(self.u8()?),
            _ => usize::from(self.u16()?),
        };
        let name = self.take(n)?;
        if matches!(tag, ATOM_EXT | SMALL_ATOM_EXT) {
            latin1_atom(name)
        } else {
            utf8_atom(name)
        }
    }

    /// The node name of a pid, port or reference, or the module or function
    /// of an export: an atom, read by its tag alone (never as a nested
    /// term, which could be another pid or export, and so on without end).
    fn node_atom(&mut self) -> Result<(), TermError> {
        match self.u8()? {
            tag @ (ATOM_EXT | SMALL_ATOM_EXT | ATOM_UTF8_EXT | SMALL_ATOM_UTF8_EXT) => {
                self.atom(tag).map(drop)
            }
            _ => Err(TermError::Invalid(
                "pid, port, reference or fun without an atom",
            )),
        }
    }

    fn opaque(&self, kind: Opaque, start: usize) -> Term {
        Term::Opaque(kind, self.input[start..self.pos].to_vec())
    }
}

fn finite(value: f64) -> Result<Term, TermError> {
    if value.is_finite() {
        Ok(Term::Float(value))
    } else {
        Err(TermError::Invalid("float that is not finite"))
    }
}

fn latin1_atom(bytes: &[u8]) -> Result<Term, TermError> {
    if bytes.len() > MAX_ATOM_CHARS {
        return Err(TermError::Invalid("atom longer than 255 characters"));
    }
    Ok(Term::Atom(bytes.iter().map(|&b| char::from(b)).collect()))
}

fn utf8_atom(bytes: &[u8]) -> Result<Term, TermError> {
    let name =
        std::str::from_utf8(bytes).map_err(|_| TermError::Invalid("atom that is not UTF-8"))?;
    if name.chars().count() > MAX_ATOM_CHARS {
        return Err(TermError::Invalid("atom longer than 255 characters"));
    }
    Ok(Term::Atom(name.to_owned()))
}

/// Encodes `term` as `term_to_binary(Term, [{minor_version, 2}])` does.
pub(crate) fn encode(term: &Term) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(VERSION);
    write(&mut out, term);
    out
}

fn write(out: &mut Vec<u8>, term: &Term) {
    match term {
        Term::Atom(name) => match u8::try_from(name.len()) {
            Ok(n) => {
                out.extend_from_slice(&[SMALL_ATOM_UTF8_EXT, n]);
                out.extend_from_slice(name.as_bytes());
            }
            Err(_) => {
                // At most 255 characters of at most 4 bytes: fits a u16.
                out.push(ATOM_UTF8_EXT);
                out.extend_from_slice(&(name.len() as u16).to_be_bytes());
                out.extend_from_slice(name.as_bytes());
            }
        },
        Term::Int(value) => {
            if let Ok(small) = u8::try_from(*value) {
                out.extend_from_slice(&[SMALL_INTEGER_EXT, small]);
            } else if let Ok(int) = i32::try_from(*value) {
                out.push(INTEGER_EXT);
                out.extend_from_slice(&int.to_be_bytes());
            } else {
                write_big(out, &BigInt::from(*value));
            }
        }
        Term::Big(value) => write_big(out, value),
        Term::Float(value) => {
            out.push(NEW_FLOAT_EXT);
            out.extend_from_slice(&value.to_be_bytes());
        }
        Term::Binary(bytes) => {
            out.push(BINARY_EXT);
            write_len(out, bytes.len());
            out.extend_from_slice(bytes);
        }
        Term::Bits(bytes, bits) => {
            out.push(BIT_BINARY_EXT);
            write_len(out, bytes.len());
            out.push(*bits);
            out.extend_from_slice(bytes);
        }
        Term::List(elements, None) if elements.is_empty() => out.push(NIL_EXT),
        Term::List(elements, None) if is_byte_string(elements) => {
            out.push(STRING_EXT);
            out.extend_from_slice(&(elements.len() as u16).to_be_bytes());
            out.extend(elements.iter().map(|e| match e {
                Term::Int(b) => *b as u8,
                _ => unreachable!("is_byte_string checked every element"),
            }));
        }
        Term::List(elements, tail) => {
            out.push(LIST_EXT);
            write_len(out, elements.len());
            for element in elements {
                write(out, element);
            }
            match tail {
                Some(tail) => write(out, tail),
                None => out.push(NIL_EXT),
            }
        }
        Term::Tuple(elements) => {
            match u8::try_from(elements.len()) {
                Ok(n) => out.extend_from_slice(&[SMALL_TUPLE_EXT, n]),
                Err(_) => {
                    out.push(LARGE_TUPLE_EXT);
                    write_len(out, elements.len());
                }
            }
            for element in elements {
                write(out, element);
            }
        }
        Term::Map(entries) => {
            out.push(MAP_EXT);
            write_len(out, entries.len());
            for (key, value) in entries {
                write(out, key);
                write(out, value);
            }
        }
        Term::Opaque(_, bytes) => out.extend_from_slice(bytes),
    }
}

/// Lengths are 32-bit in the format; nothing the store encodes comes near
/// (sessions are limited to `max_session_size`).
fn write_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("a term part longer than 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
}

fn write_big(out: &mut Vec<u8>, value: &BigInt) {
    let (sign, digits) = value.to_bytes_le();
    match u8::try_from(digits.len()) {
        Ok(n) => out.extend_from_slice(&[SMALL_BIG_EXT, n]),
        Err(_) => {
            out.push(LARGE_BIG_EXT);
            write_len(out, digits.len());
        }
    }
    out.push(u8::from(sign == Sign::Minus));
    out.extend_from_slice(&digits);
}

/// Whether Erlang writes this proper list as `STRING_EXT`.
fn is_byte_string(elements: &[Term]) -> bool {
    elements.len() <= usize::from(u16::MAX)
        && elements.iter().all(|e| matches!(e, Term::Int(0..=255)))
}

/// Puts map entries in the order Erlang writes a map of up to 32 keys:
/// keys in term order, integers before floats.
pub(crate) fn sort_map(entries: &mut [(Term, Term)]) {
    entries.sort_by(|(a, _), (b, _)| compare(a, b));
}

/// Erlang's term order as maps order their keys ("exact" comparison: an
/// integer and a float are never equal, integers come first):
/// number < atom < reference < fun < port < pid < tuple < map < nil < list
/// < bit string. Pids, ports, references and funs of one kind are ordered
/// by their encoded bytes, which is not Erlang's order among them; no
/// session holds one as a map key.
///
/// Allocates nothing and takes time linear in the smaller term at most:
/// maps hold their entries in term order already (module docs).
pub(crate) fn compare(a: &Term, b: &Term) -> Ordering {
    match (a, b) {
        (Term::Int(x), Term::Int(y)) => x.cmp(y),
        // A `Big` is outside the i64 range: above every `Int` when positive.
        (Term::Int(_), Term::Big(y)) => match y.sign() {
            Sign::Minus => Ordering::Greater,
            _ => Ordering::Less,
        },
        (Term::Big(x), Term::Int(_)) => match x.sign() {
            Sign::Minus => Ordering::Less,
            _ => Ordering::Greater,
        },
        (Term::Big(x), Term::Big(y)) => x.cmp(y),
        (Term::Int(_) | Term::Big(_), Term::Float(_)) => Ordering::Less,
        (Term::Float(_), Term::Int(_) | Term::Big(_)) => Ordering::Greater,
        (Term::Float(x), Term::Float(y)) => x.total_cmp(y),
        (Term::Atom(x), Term::Atom(y)) => x.cmp(y),
        (Term::Opaque(kx, x), Term::Opaque(ky, y)) => kx.cmp(ky).then_with(|| x.cmp(y)),
        (Term::Tuple(x), Term::Tuple(y)) => x
            .len()
            .cmp(&y.len())
            .then_with(|| compare_all(x.iter(), y.iter())),
        // Keys in term order, then the values in key order.
        (Term::Map(x), Term::Map(y)) => x.len().cmp(&y.len()).then_with(|| {
            compare_all(x.iter().map(|(k, _)| k), y.iter().map(|(k, _)| k))
                .then_with(|| compare_all(x.iter().map(|(_, v)| v), y.iter().map(|(_, v)| v)))
        }),
        (Term::List(x, x_tail), Term::List(y, y_tail)) if !x.is_empty() && !y.is_empty() => {
            for (ex, ey) in x.iter().zip(y) {
                match compare(ex, ey) {
                    Ordering::Equal => {}
                    unequal => return unequal,
                }
            }
            // One ran out of elements: what is left of it is its tail (nil
            // for a proper list, never a list), compared with what is left
            // of the other, as Erlang compares cons cells.
            match x.len().cmp(&y.len()) {
                Ordering::Equal => match (x_tail.as_deref(), y_tail.as_deref()) {
                    (None, None) => Ordering::Equal,
                    (Some(xt), Some(yt)) => compare(xt, yt),
                    (None, Some(yt)) => compare(&Term::nil(), yt),
                    (Some(xt), None) => compare(xt, &Term::nil()),
                },
                Ordering::Less => tail_against_list(x_tail.as_deref()),
                Ordering::Greater => tail_against_list(y_tail.as_deref()).reverse(),
            }
        }
        (Term::Binary(x), Term::Binary(y)) => x.cmp(y),
        (Term::Binary(x), Term::Bits(y, bits)) => compare_bits(x, 8, y, *bits),
        (Term::Bits(x, bits), Term::Binary(y)) => compare_bits(x, *bits, y, 8),
        (Term::Bits(x, xb), Term::Bits(y, yb)) => compare_bits(x, *xb, y, *yb),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// A list's tail (nil when `None`; never a list) against a non-empty list.
fn tail_against_list(tail: Option<&Term>) -> Ordering {
    match tail {
        None => Ordering::Less,
        Some(tail) => rank(tail).cmp(&NON_EMPTY_LIST_RANK),
    }
}

fn compare_all<'a>(
    x: impl Iterator<Item = &'a Term>,
    y: impl Iterator<Item = &'a Term>,
) -> Ordering {
    for (a, b) in x.zip(y) {
        match compare(a, b) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
    }
    Ordering::Equal
}

/// Bit strings compare bit by bit, a prefix first.
fn compare_bits(x: &[u8], x_bits: u8, y: &[u8], y_bits: u8) -> Ordering {
    let len = |bytes: &[u8], bits: u8| (bytes.len() * 8).saturating_sub(8 - usize::from(bits));
    let common = len(x, x_bits).min(len(y, y_bits));
    for bit in 0..common {
        let get = |bytes: &[u8]| bytes[bit / 8] >> (7 - bit % 8) & 1;
        match get(x).cmp(&get(y)) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
    }
    len(x, x_bits).cmp(&len(y, y_bits))
}

const NON_EMPTY_LIST_RANK: u8 = 9;

fn rank(term: &Term) -> u8 {
    match term {
        Term::Int(_) | Term::Big(_) | Term::Float(_) => 0,
        Term::Atom(_) => 1,
        Term::Opaque(Opaque::Reference, _) => 2,
        Term::Opaque(Opaque::Fun, _) => 3,
        Term::Opaque(Opaque::Port, _) => 4,
        Term::Opaque(Opaque::Pid, _) => 5,
        Term::Tuple(_) => 6,
        Term::Map(_) => 7,
        Term::List(elements, None) if elements.is_empty() => 8,
        Term::List(..) => NON_EMPTY_LIST_RANK,
        Term::Binary(_) | Term::Bits(..) => 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        hex::encode_upper(bytes)
    }

    fn unhex(text: &str) -> Vec<u8> {
        hex::decode(text).unwrap()
    }

    /// Bytes Erlang/OTP 25 wrote with `term_to_binary(T, [{minor_version, 2}])`
    /// (recorded from `erl`; tests/charon.rs checks the same against a live
    /// runtime), decoded and written again byte for byte.
    #[test]
    fn erlang_written_terms_round_trip_byte_for_byte() {
        for written in [
            // #{1.0 => a, 2 => b, 0.5 => c, -1 => d, 10^20 => e, 1.0e30 => f}
            "83740000000662FFFFFFFF77016461027701626E0900000010632D5EC76B05770165463FE0000000000000770163463FF00000000000007701614646293E5939A08CEA770166",
            // keys of every kind: 3, b, {1}, {0.5}, {1.0}, {1,2}, #{}, [], "a", [a], <<>>, <<"b">>
            "83740000000C6103610777016261026801610161036801463FE0000000000000610B6801463FF0000000000000610C680261016102610A740000000061066A61046B00016161086C000000017701616A61056D0000000061096D00000001626101",
            // [<<1:3>>, [1|2], "abc", [300], -5, 3.5, 1 bsl 70, -(1 bsl 70), 2147483648, -2147483649]
            "836C0000000A4D0000000103206C00000001610161026B00036162636C00000001620000012C6A62FFFFFFFB46400C0000000000006E09000000000000000000406E09010000000000000000406E0400000000806E0401010000806A",
            // #{'Z' => 4, z => 2, 'ä' => 3, 'é' => 1}
            "83740000000477015A610477017A61027702C3A461037702C3A96101",
        ] {
            let bytes = unhex(written);
            let term = decode(&bytes).unwrap();
            assert_eq!(hex(&encode(&term)), written);
            // Sorting the entries of a map Erlang wrote changes nothing.
            if let Term::Map(mut entries) = term.clone() {
                sort_map(&mut entries);
                assert_eq!(hex(&encode(&Term::Map(entries))), written);
            }
        }
    }

    #[test]
    fn every_atom_encoding_decodes() {
        // ATOM_EXT (OTP 25's default) with a Latin-1 byte, SMALL_ATOM_EXT,
        // ATOM_UTF8_EXT, SMALL_ATOM_UTF8_EXT.
        let expected = Term::List(vec![Term::atom("é"), Term::atom("z")], None);
        for written in [
            "836C00000002640001E96400017A6A",
            "836C000000027301E973017A6A",
            "836C00000002760002C3A97600017A6A",
            "836C000000027702C3A977017A6A",
        ] {
            assert_eq!(decode(&unhex(written)).unwrap(), expected, "{written}");
        }
    }

    #[test]
    fn integers_take_the_smallest_encoding_and_normalise() {
        for (value, written) in [
            (0i64, "836100"),
            (255, "8361FF"),
            (256, "836200000100"),
            (-1, "8362FFFFFFFF"),
            (i64::from(i32::MAX) + 1, "836E040000000080"),
            (i64::MIN, "836E08010000000000000080"),
        ] {
            assert_eq!(hex(&encode(&Term::Int(value))), written);
            assert_eq!(decode(&unhex(written)).unwrap(), Term::Int(value));
        }
        // A big integer that fits an i64 (Erlang never writes one) reads as one.
        assert_eq!(decode(&unhex("836E010005")).unwrap(), Term::Int(5));
        assert_eq!(decode(&unhex("836E02000500")).unwrap(), Term::Int(5));
        let huge = BigInt::from(u64::MAX) * BigInt::from(u64::MAX);
        let term = Term::integer(huge.clone());
        assert_eq!(decode(&encode(&term)).unwrap(), Term::Big(huge));
        assert_eq!(Term::integer(BigInt::from(7)), Term::Int(7));
    }

    #[test]
    fn compressed_terms_decode_within_limits() {
        let plain = encode(&Term::Binary(vec![b'x'; 1000]));
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(&plain[1..], 6);
        let mut compressed = vec![VERSION, COMPRESSED];
        compressed.extend_from_slice(&((plain.len() - 1) as u32).to_be_bytes());
        compressed.extend_from_slice(&packed);
        assert_eq!(decode(&compressed).unwrap(), Term::Binary(vec![b'x'; 1000]));
        // A stated size that is wrong, or too large, is refused.
        let mut wrong = compressed.clone();
        wrong[5] ^= 1;
        assert!(decode(&wrong).is_err());
        let bomb = encode(&Term::Binary(vec![0; MAX_TERM_BYTES + 1]));
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(&bomb[1..], 9);
        let mut compressed = vec![VERSION, COMPRESSED];
        compressed.extend_from_slice(&((bomb.len() - 1) as u32).to_be_bytes());
        compressed.extend_from_slice(&packed);
        assert_eq!(decode(&compressed), Err(TermError::TooLarge));
    }

    /// Counts the bytes this test binary's threads hold, so that a test can
    /// measure the most its own thread held at once while decoding.
    mod meter {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        pub struct Meter;

        thread_local! {
            static LIVE: Cell<isize> = const { Cell::new(0) };
            static PEAK: Cell<isize> = const { Cell::new(0) };
        }

        fn add(delta: isize) {
            // `try_with`: allocations while a thread is being torn down are
            // not counted (const thread-locals never allocate themselves).
            let _ = LIVE.try_with(|live| {
                live.set(live.get() + delta);
                let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
            });
        }

        // SAFETY: every call is passed on to the system allocator unchanged;
        // the counting touches only thread-local cells.
        unsafe impl GlobalAlloc for Meter {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                // SAFETY: the caller's layout, as GlobalAlloc requires.
                let p = unsafe { System.alloc(layout) };
                if !p.is_null() {
                    add(layout.size() as isize);
                }
                p
            }

            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                // SAFETY: as alloc.
                let p = unsafe { System.alloc_zeroed(layout) };
                if !p.is_null() {
                    add(layout.size() as isize);
                }
                p
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: ptr was allocated by System with this layout.
                unsafe { System.dealloc(ptr, layout) };
                add(-(layout.size() as isize));
            }

            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                // SAFETY: as dealloc, with the new size the caller asks for.
                let p = unsafe { System.realloc(ptr, layout, new_size) };
                if !p.is_null() {
                    add(new_size as isize - layout.size() as isize);
                }
                p
            }
        }

        /// The most bytes this thread held at once while `f` ran, beyond
        /// what it held when `f` started.
        pub fn peak_while<T>(f: impl FnOnce() -> T) -> (T, usize) {
            let start = LIVE.with(Cell::get);
            PEAK.with(|peak| peak.set(start));
            let value = f();
            let peak = PEAK.with(Cell::get);
            (value, (peak - start).max(0) as usize)
        }
    }

    #[global_allocator]
    static METER: meter::Meter = meter::Meter;

    /// `bytes` compressed as `term_to_binary(T, [compressed])` writes it.
    fn compressed(bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![VERSION, COMPRESSED];
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec_zlib(bytes, 9));
        out
    }

    /// Headers claiming up to 4 billion elements, alone, nested 128 deep
    /// and compressed, are refused; the most the decoding thread holds at
    /// once (measured by this binary's counting allocator) stays small:
    /// for a 1 MiB term of nested headers, a few times what the inflated
    /// term itself takes (reserving what each header claims would mean a
    /// million elements at each of the 128 levels: gigabytes).
    #[test]
    fn hostile_headers_allocate_nothing_large_and_fail() {
        for input in [
            "836CFFFFFFFF",                       // a list of 4 billion elements, none there
            "8368FF",                             // a tuple of 255, none there
            "8369FFFFFFFF",                       // a large tuple
            "8374FFFFFFFF",                       // a map
            "836DFFFFFFFF00",                     // a binary
            "836FFFFFFFFF00",                     // a big integer
            "8352",                               // an atom cache reference
            "8344",                               // a distribution header
            "8379",                               // LOCAL_EXT
            "83",                                 // nothing
            "",                                   // less
            "846A",                               // another version
            "836A6A",                             // bytes after the term
            "8374000000027701616101770161610202", // a repeated key
            "83467FF8000000000000",               // NaN
            "83467FF0000000000000",               // infinity
            "834D0000000000",                     // a bit string without bytes
        ] {
            let (result, peak) = meter::peak_while(|| decode(&unhex(input)));
            assert!(result.is_err(), "{input}");
            assert!(peak < 4096, "{input}: held {peak} bytes at once");
        }
        // Every level of nesting claims 4 billion elements, for lists,
        // tuples and maps, filling 1 MiB once inflated.
        for header in [
            &[LIST_EXT, 0xFF, 0xFF, 0xFF, 0xFF][..],
            &[LARGE_TUPLE_EXT, 0xFF, 0xFF, 0xFF, 0xFF],
            &[MAP_EXT, 0xFF, 0xFF, 0xFF, 0xFF],
        ] {
            let body: Vec<u8> = header
                .iter()
                .copied()
                .cycle()
                .take(MAX_TERM_BYTES)
                .collect();
            let input = compressed(&body);
            assert!(input.len() < 4096, "{}", input.len());
            let (result, peak) = meter::peak_while(|| decode(&input));
            assert_eq!(result, Err(TermError::TooDeep), "tag {}", header[0]);
            assert!(
                peak < 4 * MAX_TERM_BYTES,
                "tag {}: held {peak} bytes at once",
                header[0]
            );
        }
        // Deeper than MAX_DEPTH: refused, without exhausting the stack.
        let mut deep = vec![VERSION];
        for _ in 0..100_000 {
            deep.extend_from_slice(&[SMALL_TUPLE_EXT, 1]);
        }
        deep.push(NIL_EXT);
        assert_eq!(decode(&deep), Err(TermError::TooDeep));
        let mut ok = vec![VERSION];
        for _ in 0..MAX_DEPTH {
            ok.extend_from_slice(&[SMALL_TUPLE_EXT, 1]);
        }
        ok.push(NIL_EXT);
        assert!(decode(&ok).is_ok());
    }

    /// A pid's node, a port's, a reference's, and an export's module and
    /// function are atoms, read by tag: chains of pids or exports whose
    /// "atom" is another pid or export (20 000 long, and compressed: 49
    /// bytes for the pids) are refused at the first link, without
    /// recursing, rather than exhausting the stack.
    #[test]
    fn pid_and_export_chains_are_refused_at_once() {
        for tag in [
            NEW_PID_EXT,
            PID_EXT,
            NEW_PORT_EXT,
            REFERENCE_EXT,
            EXPORT_EXT,
        ] {
            let chain = vec![tag; 20_000];
            let plain = [&[VERSION][..], &chain].concat();
            assert!(
                matches!(decode(&plain), Err(TermError::Invalid(_))),
                "tag {tag}"
            );
            let packed = compressed(&chain);
            assert!(
                matches!(decode(&packed), Err(TermError::Invalid(_))),
                "tag {tag}"
            );
        }
        assert_eq!(compressed(&[NEW_PID_EXT; 20_000]).len(), 49);
        // An export's arity is SMALL_INTEGER_EXT and nothing else.
        let export = |arity: &[u8]| {
            [
                &[VERSION, EXPORT_EXT, SMALL_ATOM_UTF8_EXT, 1, b'm'][..],
                &[SMALL_ATOM_UTF8_EXT, 1, b'f'],
                arity,
            ]
            .concat()
        };
        assert!(matches!(
            decode(&export(&[SMALL_INTEGER_EXT, 2])),
            Ok(Term::Opaque(Opaque::Fun, _))
        ));
        assert!(decode(&export(&[INTEGER_EXT, 0, 0, 0, 2])).is_err());
        assert!(decode(&export(&[EXPORT_EXT])).is_err());
    }

    /// `level(depth, last)`: the integer `last` at depth 0, else the map
    /// `#{level(depth - 1, 0) => 0, level(depth - 1, 1) => last}`. The two
    /// keys of every level differ only in their very last value, so
    /// comparing them walks both whole; the input is twice the size per
    /// level of nesting.
    fn maps_as_keys(depth: usize) -> Vec<u8> {
        fn level(depth: usize, last: u8, out: &mut Vec<u8>) {
            if depth == 0 {
                out.extend_from_slice(&[SMALL_INTEGER_EXT, last]);
                return;
            }
            out.push(MAP_EXT);
            out.extend_from_slice(&2u32.to_be_bytes());
            level(depth - 1, 0, out);
            out.extend_from_slice(&[SMALL_INTEGER_EXT, 0]);
            level(depth - 1, 1, out);
            out.extend_from_slice(&[SMALL_INTEGER_EXT, last]);
        }
        let mut out = vec![VERSION];
        level(depth, 0, &mut out);
        out
    }

    /// Maps whose keys are maps, nested so that every comparison of two
    /// keys walks both whole (up to 1 MiB of them), decode in time that
    /// grows with the input, not with its nesting: under a second even in
    /// a debug build (about 0.2 s for the largest). Comparing maps used to
    /// re-sort both (cloned) at every level, which took seconds at the
    /// smallest of these sizes.
    #[test]
    fn maps_as_keys_decode_in_linear_time() {
        for depth in [10, 14, 16] {
            let input = maps_as_keys(depth);
            assert!(input.len() <= MAX_TERM_BYTES, "{}", input.len());
            let started = std::time::Instant::now();
            let term = decode(&input).unwrap();
            let took = started.elapsed();
            assert!(
                took.as_secs_f64() < 1.0,
                "{} bytes, depth {depth}: {took:?}",
                input.len()
            );
            // The keys come out in term order, and write back the same.
            assert_eq!(encode(&term), input);
        }
    }

    #[test]
    fn list_tails_that_are_lists_continue_the_list() {
        // [1 | [2]] written as nested cons cells reads as [1, 2].
        let nested = unhex("836C0000000161016C0000000161026A");
        assert_eq!(
            decode(&nested).unwrap(),
            Term::List(vec![Term::Int(1), Term::Int(2)], None)
        );
        assert_eq!(hex(&encode(&decode(&nested).unwrap())), "836B00020102");
    }

    #[test]
    fn opaque_terms_are_kept_as_read() {
        // Written by erl: {self(), make_ref()} (NEW_PID_EXT, NEWER_REFERENCE_EXT),
        // and {fun lists:map/2, fun(X) -> X end} (EXPORT_EXT, NEW_FUN_EXT).
        for (written, kinds) in [
            (
                "83680258770D6E6F6E6F6465406E6F686F73740000000900000000000000005A0003770D6E6F6E6F6465406E6F686F737400000000000310E83E1000018BBBD243",
                [Opaque::Pid, Opaque::Reference],
            ),
            (
                "8368027177056C6973747377036D61706102700000009701065361AA461590D1BDF1EB62D1A6EB080000002A00000001770865726C5F6576616C612A6200329B0D58770D6E6F6E6F6465406E6F686F7374000000090000000000000000680661016A77046E6F6E6577046E6F6E6574000000006C0000000168057706636C6175736561016C000000016803770376617261017701586A6A6C000000016803770376617261017701586A6A",
                [Opaque::Fun, Opaque::Fun],
            ),
        ] {
            let term = decode(&unhex(written)).unwrap();
            let Term::Tuple(parts) = &term else {
                panic!("{term:?}")
            };
            for (part, kind) in parts.iter().zip(kinds) {
                assert!(matches!(part, Term::Opaque(k, _) if *k == kind), "{part:?}");
            }
            assert_eq!(hex(&encode(&term)), written);
        }
    }
}
