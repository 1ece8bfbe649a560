//! The rules of a flight's life (docs/api.md), pure: which role may do what, which state each
//! action leads to, and the two-person rule. [`crate::actions`] and the store apply them
//! (the store inside its transactions, against the stored state).
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
    /// Return the revision under review to its author as a draft, with a comment.
    SendBack,
    Kill,
    End,
    ManageTokens,
    /// Propose or complete a rotation of the index signing key (two people: `docs/keys.md`).
    RotateKey,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::Read,
        Action::Push,
        Action::Review,
        Action::Approve,
        Action::SendBack,
        Action::Kill,
        Action::End,
        Action::ManageTokens,
        Action::RotateKey,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Push => "push",
            Action::Review => "review",
            Action::Approve => "approve",
            Action::SendBack => "send back",
            Action::Kill => "kill",
            Action::End => "end",
            Action::ManageTokens => "manage tokens",
            Action::RotateKey => "rotate the signing key",
        }
    }
}

/// The role matrix: admin may do everything; an author pushes and asks for review; an
/// approver approves (or sends back), kills and ends, and takes part in a key rotation.
/// Every role may read.
pub fn role_may(role: Role, action: Action) -> bool {
    matches!(
        (role, action),
        (Role::Admin, _)
            | (_, Action::Read)
            | (Role::Author, Action::Push | Action::Review)
            | (
                Role::Approver,
                Action::Approve | Action::SendBack | Action::Kill | Action::End | Action::RotateKey
            )
    )
}

/// Why an action is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The actor's role may not do this at all (403).
    Role(String),
    /// The two-person rule: this person may not approve this revision (403).
    SamePerson(String),
    /// The flight's state does not allow it (409).
    State(String),
}

impl From<Refusal> for crate::Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Role(m) | Refusal::SamePerson(m) => crate::Error::Forbidden(m),
            Refusal::State(m) => crate::Error::Conflict(m),
        }
    }
}

/// Whether `actor`'s role allows `action`; the refusal names the roles that do.
pub fn permit(actor: &Actor, action: Action) -> Result<(), Refusal> {
    if role_may(actor.role, action) {
        return Ok(());
    }
    let who: Vec<&str> = Role::ALL
        .into_iter()
        .filter(|r| role_may(*r, action))
        .map(Role::as_str)
        .collect();
    Err(Refusal::Role(format!(
        "`{}` has role {}, which may not {}; that needs role {}",
        actor.name,
        actor.role,
        action.as_str(),
        who.join(" or ")
    )))
}

/// The role first, then the state: the flight's state after `actor` does `action`, or why
/// not. `latest` is the state of the flight's newest revision.
pub fn decide(
    actor: &Actor,
    action: Action,
    flight: FlightState,
    latest: RevisionState,
) -> Result<FlightState, Refusal> {
    permit(actor, action)?;
    after(action, flight, latest).map_err(Refusal::State)
}

/// Whether two names are one person: token names compare without regard to case, so
/// `Alice` cannot approve what `alice` pushed.
pub fn same_person(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// The two-person rule: `approver` may not approve a flight's newest revision if they
/// pushed any revision since the flight was last live — every revision newer than `live`
/// (its live revision), or every revision when it never was. So a second person changing
/// one character of a draft does not let its first author approve it. `revisions` are
/// `(version, pushed by)`. With `single_user` the rule is lifted: `Ok(true)` says this is
/// a self-approval, which the audit log records.
pub fn two_person<'a>(
    approver: &str,
    revisions: impl IntoIterator<Item = (u64, &'a str)>,
    live: Option<u64>,
    single_user: bool,
) -> Result<bool, Refusal> {
    let mut own: Vec<(u64, &str)> = revisions
        .into_iter()
        .filter(|(v, by)| live.is_none_or(|l| *v > l) && same_person(by, approver))
        .collect();
    own.sort_unstable();
    let Some((version, by)) = own.last() else {
        return Ok(false);
    };
    if single_user {
        return Ok(true);
    }
    let since = if live.is_some() {
        "since it was last live"
    } else {
        "before it ever went live"
    };
    Err(Refusal::SamePerson(format!(
        "`{by}` pushed revision {version} of this flight {since}, so `{approver}` cannot approve it: approval needs someone else"
    )))
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
        Action::SendBack if flight.is_final() => Err(format!("the flight is {}", flight.as_str())),
        Action::SendBack => match latest {
            RevisionState::Review => Ok(live_or(FlightState::Draft)),
            _ => Err("there is no revision under review to send back".into()),
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
    use Action::*;
    use FlightState as F;
    use RevisionState as R;

    /// What an action leads to: the new flight state, or which kind of refusal.
    #[derive(Debug, PartialEq)]
    enum Want {
        To(FlightState),
        Role,
        State,
    }
    use Want::{Role as NoRole, State as NoState, To};

    /// (flight state, newest revision's state, action, role) → result. Every row holds for
    /// the roles named; `Au` = author, `Ap` = approver, `Ad` = admin.
    #[test]
    fn state_action_role_table() {
        const AU: Role = Role::Author;
        const AP: Role = Role::Approver;
        const AD: Role = Role::Admin;
        #[rustfmt::skip]
        let table: &[(F, R, Action, &[Role], Want)] = &[
            // push: authors and admins; never on a final flight
            (F::Draft,  R::Draft,  Push, &[AU, AD], To(F::Draft)),
            (F::Review, R::Review, Push, &[AU, AD], To(F::Draft)),
            (F::Live,   R::Live,   Push, &[AU, AD], To(F::Live)),
            (F::Live,   R::Review, Push, &[AU, AD], To(F::Live)),
            (F::Draft,  R::Draft,  Push, &[AP],     NoRole),
            (F::Killed, R::Live,   Push, &[AU, AD], NoState),
            (F::Ended,  R::Superseded, Push, &[AU, AD], NoState),
            (F::Killed, R::Live,   Push, &[AP],     NoRole),
            // review: a draft goes to review; a live flight stays live meanwhile
            (F::Draft,  R::Draft,  Review, &[AU, AD], To(F::Review)),
            (F::Live,   R::Draft,  Review, &[AU, AD], To(F::Live)),
            (F::Review, R::Review, Review, &[AU, AD], NoState),
            (F::Live,   R::Live,   Review, &[AU, AD], NoState),
            (F::Killed, R::Live,   Review, &[AU, AD], NoState),
            (F::Draft,  R::Draft,  Review, &[AP],     NoRole),
            // approve: only what is under review
            (F::Review, R::Review, Approve, &[AP, AD], To(F::Live)),
            (F::Live,   R::Review, Approve, &[AP, AD], To(F::Live)),
            (F::Draft,  R::Draft,  Approve, &[AP, AD], NoState),
            (F::Live,   R::Live,   Approve, &[AP, AD], NoState),
            (F::Killed, R::Live,   Approve, &[AP, AD], NoState),
            (F::Ended,  R::Superseded, Approve, &[AP, AD], NoState),
            (F::Review, R::Review, Approve, &[AU],     NoRole),
            (F::Draft,  R::Draft,  Approve, &[AU],     NoRole),
            // send back: what is under review returns to draft; a live flight stays live
            (F::Review, R::Review, SendBack, &[AP, AD], To(F::Draft)),
            (F::Live,   R::Review, SendBack, &[AP, AD], To(F::Live)),
            (F::Draft,  R::Draft,  SendBack, &[AP, AD], NoState),
            (F::Live,   R::Live,   SendBack, &[AP, AD], NoState),
            (F::Killed, R::Live,   SendBack, &[AP, AD], NoState),
            (F::Review, R::Review, SendBack, &[AU],     NoRole),
            // kill: only a live flight
            (F::Live,   R::Live,   Kill, &[AP, AD], To(F::Killed)),
            (F::Live,   R::Draft,  Kill, &[AP, AD], To(F::Killed)),
            (F::Draft,  R::Draft,  Kill, &[AP, AD], NoState),
            (F::Review, R::Review, Kill, &[AP, AD], NoState),
            (F::Killed, R::Live,   Kill, &[AP, AD], NoState),
            (F::Ended,  R::Live,   Kill, &[AP, AD], NoState),
            (F::Live,   R::Live,   Kill, &[AU],     NoRole),
            // end: anything not ended yet
            (F::Draft,  R::Draft,  End, &[AP, AD], To(F::Ended)),
            (F::Review, R::Review, End, &[AP, AD], To(F::Ended)),
            (F::Live,   R::Live,   End, &[AP, AD], To(F::Ended)),
            (F::Killed, R::Live,   End, &[AP, AD], To(F::Ended)),
            (F::Ended,  R::Live,   End, &[AP, AD], NoState),
            (F::Live,   R::Live,   End, &[AU],     NoRole),
            // tokens: admins only, whatever the flight
            (F::Live,   R::Live,   ManageTokens, &[AD],     To(F::Live)),
            (F::Live,   R::Live,   ManageTokens, &[AU, AP], NoRole),
            // key rotation: approvers and admins, whatever the flight
            (F::Live,   R::Live,   RotateKey, &[AP, AD], To(F::Live)),
            (F::Live,   R::Live,   RotateKey, &[AU],     NoRole),
            // reading: everyone
            (F::Ended,  R::Live,   Read, &[AU, AP, AD], To(F::Ended)),
        ];
        for (flight, latest, action, roles, want) in table {
            for role in *roles {
                let actor = Actor::new("someone", *role);
                let got = match decide(&actor, *action, *flight, *latest) {
                    Ok(s) => To(s),
                    Err(Refusal::Role(_)) => NoRole,
                    Err(Refusal::State(_) | Refusal::SamePerson(_)) => NoState,
                };
                assert_eq!(
                    &got,
                    want,
                    "{} on a {} flight (newest revision {}) by role {role}",
                    action.as_str(),
                    flight.as_str(),
                    latest.as_str()
                );
            }
        }
        // Every (action, role) pair appears, so the role matrix is covered by the table.
        for action in Action::ALL {
            for role in Role::ALL {
                assert!(
                    table
                        .iter()
                        .any(|(_, _, a, rs, _)| *a == action && rs.contains(&role)),
                    "no row for {} by {role}",
                    action.as_str()
                );
            }
        }
    }

    #[test]
    fn a_role_refusal_names_who_may() {
        let e = permit(&Actor::new("alice", Role::Author), Action::Approve).unwrap_err();
        assert_eq!(
            e,
            Refusal::Role(
                "`alice` has role author, which may not approve; that needs role approver or admin"
                    .into()
            )
        );
    }

    // Issue 8, item 11: alice pushes v1, carol changes one character as v2, alice approves
    // v2 — allowed before, because only v2's pusher was compared.
    #[test]
    fn two_person_rule_covers_every_revision_since_live() {
        let never_live = [(1, "alice"), (2, "carol")];
        let e = two_person("alice", never_live, None, false).unwrap_err();
        assert!(
            matches!(&e, Refusal::SamePerson(m) if m.contains("revision 1") && m.contains("needs someone else")),
            "{e:?}"
        );
        assert_eq!(two_person("bob", never_live, None, false), Ok(false));
        // Names compare without regard to case.
        assert!(two_person("ALICE", never_live, None, false).is_err());
        assert!(two_person("Carol", never_live, None, false).is_err());
        // Only revisions since the flight was last live count: alice's v1 went live, then
        // carol pushed v2 and v3; alice may approve v3.
        let after_live = [(1, "alice"), (2, "carol"), (3, "carol")];
        assert_eq!(two_person("alice", after_live, Some(1), false), Ok(false));
        assert!(two_person("carol", after_live, Some(1), false).is_err());
        // A superseded revision since live counts too.
        let superseded = [(1, "bob"), (2, "alice"), (3, "carol")];
        assert!(two_person("alice", superseded, Some(1), false).is_err());
        // Single-user mode lifts the rule and says it was a self-approval.
        assert_eq!(two_person("alice", never_live, None, true), Ok(true));
        assert_eq!(two_person("bob", never_live, None, true), Ok(false));
    }
}
