//! The operations the benchmark runs and the weighted mix it draws them
//! from (`--mix get=70,upsert=25,get_all=4,delete=1`).

use std::fmt;
use std::str::FromStr;

/// One kind of store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `get`: read one session (`HGET`).
    Get,
    /// `upsert`: a refresh written back with optimistic locking (`FCALL`).
    Upsert,
    /// `get_all`: all sessions of a user (`HGETALL`).
    GetAll,
    /// `delete`: a logout (`HDEL`); the session is then created again.
    Delete,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 4] = [Op::Get, Op::Upsert, Op::GetAll, Op::Delete];

    /// The name used in `--mix`, the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Upsert => "upsert",
            Op::GetAll => "get_all",
            Op::Delete => "delete",
        }
    }

    /// The Redis command the operation is made of.
    pub fn command(self) -> &'static str {
        match self {
            Op::Get => "HGET",
            Op::Upsert => "FCALL",
            Op::GetAll => "HGETALL",
            Op::Delete => "HDEL",
        }
    }

    /// Position in [`Op::ALL`], for per-operation arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Relative weights of the operations; an operation is drawn with
/// probability weight / total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// Weight per operation, indexed by [`Op::index`].
    weights: [u32; 4],
}

impl Mix {
    /// The weight of `op`.
    pub fn weight(&self, op: Op) -> u32 {
        self.weights[op.index()]
    }

    /// Draws an operation; `roll` is uniform in `0..self.total()`.
    pub fn pick(&self, roll: u32) -> Op {
        let mut left = roll;
        for op in Op::ALL {
            let w = self.weight(op);
            if left < w {
                return op;
            }
            left -= w;
        }
        unreachable!("roll {roll} is below the total weight")
    }

    /// Sum of the weights (at least 1).
    pub fn total(&self) -> u32 {
        self.weights.iter().sum()
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `name=weight` pairs separated by commas; operations left out get
    /// weight 0.
    fn from_str(s: &str) -> Result<Mix, String> {
        let mut weights = [0u32; 4];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not name=weight"))?;
            let op = Op::ALL
                .into_iter()
                .find(|op| op.name() == name.trim())
                .ok_or_else(|| {
                    format!("unknown operation {name:?} (get, upsert, get_all, delete)")
                })?;
            weights[op.index()] = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight of {name} is not a whole number: {weight:?}"))?;
        }
        if weights.iter().map(|&w| u64::from(w)).sum::<u64>() == 0 {
            return Err("the mix has no operation with a weight above 0".to_owned());
        }
        if weights.iter().map(|&w| u64::from(w)).sum::<u64>() > u64::from(u32::MAX) {
            return Err("the weights add up to more than 4294967295".to_owned());
        }
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Op::ALL
            .iter()
            .filter(|op| self.weight(**op) > 0)
            .map(|op| format!("{}={}", op.name(), self.weight(*op)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_draws_in_proportion() {
        let mix: Mix = "get=70,upsert=25,get_all=4,delete=1".parse().unwrap();
        assert_eq!(mix.total(), 100);
        assert_eq!(mix.to_string(), "get=70,upsert=25,get_all=4,delete=1");
        let mut counts = [0; 4];
        for roll in 0..100 {
            counts[mix.pick(roll).index()] += 1;
        }
        assert_eq!(counts, [70, 25, 4, 1]);
    }

    #[test]
    fn missing_operations_weigh_nothing() {
        let mix: Mix = "upsert=1".parse().unwrap();
        assert_eq!(mix.pick(0), Op::Upsert);
        assert_eq!(mix.weight(Op::Get), 0);
    }

    #[test]
    fn rejects_bad_mixes() {
        for bad in ["", "get=0", "read=5", "get", "get=x", "get=-1"] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?}");
        }
    }
}
