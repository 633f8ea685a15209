//! The roles a key can hold in a trust policy. Separate roles make two-person integrity possible:
//! the publisher who builds a module is not the authorizer who says what it may do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a key is trusted to sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Signs trust policies (m-of-n); its public keys are pinned on every machine.
    Root,
    /// Signs modules (the `signature` custom section): who built it.
    Publisher,
    /// Signs capability grants: what a module may do, and where.
    Authorizer,
    /// Signs audit-log checkpoints and execution receipts.
    Audit,
}

impl Role {
    /// Every role, in the order they are documented.
    pub const ALL: [Self; 4] = [Self::Root, Self::Publisher, Self::Authorizer, Self::Audit];

    /// The name written in policies and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Publisher => "publisher",
            Self::Authorizer => "authorizer",
            Self::Audit => "audit",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A role name that is not one of `root`, `publisher`, `authorizer`, `audit`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected root, publisher, authorizer or audit")]
pub struct UnknownRole(String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>(), Ok(role));
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
