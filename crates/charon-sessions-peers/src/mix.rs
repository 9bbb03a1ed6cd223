//! The operation mix: which kind of operation a worker runs next.

use std::fmt;
use std::str::FromStr;

/// One kind of operation of the login/refresh/read loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// A new session is created and stored.
    Login,
    /// A session is read, its refresh token rotated and the session written back.
    Refresh,
    /// A session is read.
    Read,
}

impl OpKind {
    /// Every kind, in table order.
    pub const ALL: [OpKind; 3] = [OpKind::Login, OpKind::Refresh, OpKind::Read];

    /// The kind's name, as in `--mix`.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Login => "login",
            OpKind::Refresh => "refresh",
            OpKind::Read => "read",
        }
    }

    /// The index of the kind in [`OpKind::ALL`].
    pub fn index(self) -> usize {
        match self {
            OpKind::Login => 0,
            OpKind::Refresh => 1,
            OpKind::Read => 2,
        }
    }
}

/// Relative weights of the operation kinds, parsed from
/// `read=70,refresh=25,login=5` (kinds left out weigh 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// Weight per kind, indexed by [`OpKind::index`].
    weights: [u32; 3],
}

impl Mix {
    /// The kind for a number drawn uniformly from `0..self.total()`.
    pub fn pick(&self, draw: u32) -> OpKind {
        let mut rest = draw;
        for kind in OpKind::ALL {
            let weight = self.weights[kind.index()];
            if rest < weight {
                return kind;
            }
            rest -= weight;
        }
        OpKind::Read
    }

    /// The sum of the weights (never 0).
    pub fn total(&self) -> u32 {
        self.weights.iter().sum()
    }
}

impl Default for Mix {
    /// `read=70,refresh=25,login=5`.
    fn default() -> Self {
        Mix {
            weights: [5, 25, 70],
        }
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut weights = [0u32; 3];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected kind=weight"))?;
            let kind = OpKind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| format!("`{name}`: the kinds are login, refresh and read"))?;
            weights[kind.index()] = weight
                .trim()
                .parse()
                .map_err(|e| format!("`{weight}`: {e}"))?;
        }
        if weights.iter().map(|&w| u64::from(w)).sum::<u64>() == 0 {
            return Err("the weights add up to 0".to_owned());
        }
        if weights.iter().map(|&w| u64::from(w)).sum::<u64>() > u64::from(u32::MAX) {
            return Err("the weights add up to more than 2^32 - 1".to_owned());
        }
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [login, refresh, read] = self.weights;
        write!(f, "read={read},refresh={refresh},login={login}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_picks_by_weight() {
        let mix: Mix = "read=2, login=1".parse().unwrap();
        assert_eq!(mix.total(), 3);
        assert_eq!(mix.pick(0), OpKind::Login);
        assert_eq!(mix.pick(1), OpKind::Read);
        assert_eq!(mix.pick(2), OpKind::Read);
        assert_eq!(mix.to_string(), "read=2,refresh=0,login=1");
    }

    #[test]
    fn refuses_unknown_kinds_and_zero_totals() {
        assert!("get=1".parse::<Mix>().is_err());
        assert!("read=0".parse::<Mix>().is_err());
        assert!("read".parse::<Mix>().is_err());
        assert_eq!(Mix::default().to_string(), "read=70,refresh=25,login=5");
    }
}
