//! The rules of a flight's life (DESIGN §6), pure: which role may do what, and which state
//! each action leads to. The store applies them inside its transactions.
//!
//! A flight goes `draft → review → live → killed | ended`. Every push makes an immutable
//! revision; a new revision of a live flight goes through review again while the live one
//! keeps running. `killed` and `ended` are final: a killed flight stays in the index with
//! `kill: true`; an ended flight is withdrawn from it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What an API token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Create and revise flights, ask for review.
    Author,
    /// Approve, kill and end flights.
    Approver,
    /// Everything, including tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Author, Role::Approver, Role::Admin];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Author => "author",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a token holder asks the tower to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read flights, revisions, audit and progress.
    Read,
    Push,
    Review,
    Approve,
    Kill,
    End,
    ManageTokens,
    /// Propose or complete a rotation of the index signing key (two people: `docs/keys.md`).
    RotateKey,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Push => "push",
            Action::Review => "review",
            Action::Approve => "approve",
            Action::Kill => "kill",
            Action::End => "end",
            Action::ManageTokens => "manage tokens",
            Action::RotateKey => "rotate the signing key",
        }
    }
}

/// The role matrix: admin may do everything; an author pushes and asks for review; an
/// approver approves, kills and ends, and takes part in a key rotation. Every role may read.
pub fn role_may(role: Role, action: Action) -> bool {
    matches!(
        (role, action),
        (Role::Admin, _)
            | (_, Action::Read)
            | (Role::Author, Action::Push | Action::Review)
            | (
                Role::Approver,
                Action::Approve | Action::Kill | Action::End | Action::RotateKey
            )
    )
}

/// Whether two token names are one person, for the two-person rules (a name differing only
/// in case is the same person).
pub fn same_person(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Who acts: a token's holder. `name` is the person's identity (two tokens with one name are
/// one person, so one cannot approve what the other wrote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub name: String,
    pub role: Role,
}

impl Actor {
    pub fn new(name: impl Into<String>, role: Role) -> Self {
        Actor {
            name: name.into(),
            role,
        }
    }
}

/// Where a flight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlightState {
    /// Not yet live; the latest revision is a draft.
    Draft,
    /// Not yet live; the latest revision is waiting for approval.
    Review,
    /// In the index (a newer revision may be pending).
    Live,
    /// In the index with `kill: true`. Final.
    Killed,
    /// Withdrawn from the index. Final.
    Ended,
}

impl FlightState {
    pub const ALL: [FlightState; 5] = [
        FlightState::Draft,
        FlightState::Review,
        FlightState::Live,
        FlightState::Killed,
        FlightState::Ended,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            FlightState::Draft => "draft",
            FlightState::Review => "review",
            FlightState::Live => "live",
            FlightState::Killed => "killed",
            FlightState::Ended => "ended",
        }
    }
    pub fn parse(s: &str) -> Option<FlightState> {
        FlightState::ALL.into_iter().find(|x| x.as_str() == s)
    }
    pub fn is_final(self) -> bool {
        matches!(self, FlightState::Killed | FlightState::Ended)
    }
    /// Whether the index carries the flight.
    pub fn in_index(self) -> bool {
        matches!(self, FlightState::Live | FlightState::Killed)
    }
}

/// Where one revision is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RevisionState {
    Draft,
    Review,
    /// The revision the index serves.
    Live,
    /// Was live; a newer approved revision replaced it.
    Retired,
    /// Never went live: a newer revision was pushed before it was approved, or the flight ended.
    Superseded,
}

impl RevisionState {
    pub const ALL: [RevisionState; 5] = [
        RevisionState::Draft,
        RevisionState::Review,
        RevisionState::Live,
        RevisionState::Retired,
        RevisionState::Superseded,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RevisionState::Draft => "draft",
            RevisionState::Review => "review",
            RevisionState::Live => "live",
            RevisionState::Retired => "retired",
            RevisionState::Superseded => "superseded",
        }
    }
    pub fn parse(s: &str) -> Option<RevisionState> {
        RevisionState::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Why an action on a flight is refused because of its state, or `Ok` with the new flight
/// state. `pending` is the state of the flight's latest revision, `live` whether it has a
/// live revision.
pub fn after(
    action: Action,
    flight: FlightState,
    latest: RevisionState,
) -> Result<FlightState, String> {
    let live_or = |s| {
        if flight == FlightState::Live {
            FlightState::Live
        } else {
            s
        }
    };
    match action {
        Action::Push if flight.is_final() => Err(format!(
            "the flight is {}, which is final: it cannot be revised (push it under a new studyname)",
            flight.as_str()
        )),
        Action::Push => Ok(live_or(FlightState::Draft)),
        Action::Review if flight.is_final() => Err(format!("the flight is {}", flight.as_str())),
        Action::Review => match latest {
            RevisionState::Draft => Ok(live_or(FlightState::Review)),
            RevisionState::Review => Err("the latest revision is already under review".into()),
            _ => Err(
                "there is no draft revision to send for review; push a new revision first".into(),
            ),
        },
        Action::Approve if flight.is_final() => Err(format!("the flight is {}", flight.as_str())),
        Action::Approve => match latest {
            RevisionState::Review => Ok(FlightState::Live),
            RevisionState::Draft => {
                Err("the latest revision is a draft; send it for review first".into())
            }
            _ => Err("there is no revision under review".into()),
        },
        Action::Kill => match flight {
            FlightState::Live => Ok(FlightState::Killed),
            FlightState::Killed => Err("the flight is already killed".into()),
            other => Err(format!(
                "only a live flight can be killed; this one is {} (use end to withdraw it)",
                other.as_str()
            )),
        },
        Action::End => match flight {
            FlightState::Ended => Err("the flight has already ended".into()),
            _ => Ok(FlightState::Ended),
        },
        Action::Read | Action::ManageTokens | Action::RotateKey => Ok(flight),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_matrix() {
        use Action::*;
        let table = [
            (
                Role::Author,
                [Read, Push, Review],
                [Approve, Kill, End, ManageTokens].as_slice(),
            ),
            (
                Role::Approver,
                [Read, Approve, Kill],
                [Push, Review, ManageTokens].as_slice(),
            ),
            (Role::Author, [Read, Read, Read], [RotateKey].as_slice()),
        ];
        for (role, may, may_not) in table {
            for a in may {
                assert!(role_may(role, a), "{role} should {}", a.as_str());
            }
            for a in may_not {
                assert!(!role_may(role, *a), "{role} should not {}", a.as_str());
            }
        }
        assert!(role_may(Role::Approver, End));
        assert!(role_may(Role::Approver, RotateKey));
        for a in [
            Read,
            Push,
            Review,
            Approve,
            Kill,
            End,
            ManageTokens,
            RotateKey,
        ] {
            assert!(role_may(Role::Admin, a));
        }
    }

    #[test]
    fn transitions() {
        use FlightState as F;
        use RevisionState as R;
        assert_eq!(after(Action::Push, F::Live, R::Live), Ok(F::Live));
        assert_eq!(after(Action::Push, F::Review, R::Review), Ok(F::Draft));
        assert!(after(Action::Push, F::Killed, R::Live).is_err());
        assert_eq!(after(Action::Review, F::Draft, R::Draft), Ok(F::Review));
        assert_eq!(after(Action::Review, F::Live, R::Draft), Ok(F::Live));
        assert!(after(Action::Review, F::Live, R::Live).is_err());
        assert_eq!(after(Action::Approve, F::Review, R::Review), Ok(F::Live));
        assert!(after(Action::Approve, F::Draft, R::Draft).is_err());
        assert_eq!(after(Action::Kill, F::Live, R::Live), Ok(F::Killed));
        assert!(after(Action::Kill, F::Draft, R::Draft).is_err());
        assert_eq!(after(Action::End, F::Killed, R::Live), Ok(F::Ended));
        assert!(after(Action::End, F::Ended, R::Live).is_err());
    }
}
