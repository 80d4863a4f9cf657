//! One generated credential: its identity (access key id, IAM user,
//! account), its behaviour, and the days it is in use.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Range;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::archetype::{Archetype, Built, Pattern};
use super::traffic::{mix, Call, Habits, HOUR_MS};

/// Who a key belongs to, as CloudTrail's `userIdentity` shows it.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Access key id: `AKIA` + 16 characters.
    pub key_id: String,
    /// IAM user name.
    pub user_name: String,
    /// IAM user id: `AIDA` + 17 characters.
    pub principal_id: String,
    /// 12-digit account id.
    pub account_id: String,
    /// `arn:aws:iam::ACCOUNT:user/NAME`.
    pub arn: String,
    /// Name of the bucket/table/queue the key works on.
    pub resource: String,
    /// Set for an IAM role used through STS sessions: each call's key and
    /// ARN are its session's ([`Identity::for_call`]).
    pub role: Option<Role>,
}

/// An IAM role whose credentials are hourly STS sessions (an instance or
/// workload role): every hour a new `ASIA…` key, named after the instance.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    /// Role name.
    pub name: String,
    /// Session name of the role's own sessions (the instance id).
    pub instance: String,
    /// Session name an attacker gives the sessions it mints.
    pub attacker_session: String,
    /// Seeds the session key ids.
    pub seed: u64,
}

impl Identity {
    /// The identity a call is made with: the key itself, or for a role the
    /// STS session of the call's hour (or the attacker's session).
    pub fn for_call(&self, call: &Call) -> Cow<'_, Identity> {
        let Some(role) = &self.role else {
            return Cow::Borrowed(self);
        };
        let (index, session) = match call.session {
            0 => ((call.time_ms / HOUR_MS) as u64, role.instance.clone()),
            n => (
                (1 << 48) | u64::from(n),
                format!("{}-{n}", role.attacker_session),
            ),
        };
        let mut rng = SmallRng::seed_from_u64(mix(role.seed, index));
        Cow::Owned(Identity {
            key_id: format!("ASIA{}", id_chars(&mut rng, 16)),
            principal_id: format!("{}:{session}", self.principal_id),
            arn: format!(
                "arn:aws:sts::{}:assumed-role/{}/{session}",
                self.account_id, role.name
            ),
            role: None,
            ..self.clone()
        })
    }

    /// The role's ARN as keywatch tracks it (sessions share it).
    pub fn role_arn(&self) -> Option<String> {
        self.role
            .as_ref()
            .map(|r| format!("arn:aws:sts::{}:assumed-role/{}", self.account_id, r.name))
    }
}

/// A key of the scenario.
#[derive(Debug)]
pub(crate) struct Key {
    /// Who it is.
    pub identity: Identity,
    /// How it behaves when it is not under attack.
    pub archetype: Archetype,
    /// Root of all its random streams.
    pub seed: u64,
    /// What it calls.
    pub habits: Habits,
    /// User-agent strings its calls refer to by index.
    pub agents: Vec<String>,
    /// When and from where.
    pub pattern: Box<dyn Pattern>,
    /// Days on which its pattern runs.
    pub active: Range<u32>,
}

impl Key {
    /// Gives a built behaviour an identity. `names` keeps user names
    /// unique across the scenario.
    pub fn new(
        archetype: Archetype,
        seed: u64,
        built: Built,
        accounts: &[String],
        names: &mut HashSet<String>,
        rng: &mut SmallRng,
        days: u32,
    ) -> Key {
        let mut user_name = built.user_name;
        if !names.insert(user_name.clone()) {
            let stem = user_name.clone();
            user_name = (2..)
                .map(|n| format!("{stem}-{n}"))
                .find(|name| names.insert(name.clone()))
                .expect("an unused suffix exists");
        }
        let account_id = accounts[rng.gen_range(0..accounts.len())].clone();
        let identity = Identity {
            key_id: format!("AKIA{}", id_chars(rng, 16)),
            principal_id: format!("AIDA{}", id_chars(rng, 17)),
            arn: format!("arn:aws:iam::{account_id}:user/{user_name}"),
            account_id,
            user_name,
            resource: built.resource,
            role: None,
        };
        Key {
            identity,
            archetype,
            seed,
            habits: built.habits,
            agents: built.agents,
            pattern: built.pattern,
            active: 0..days,
        }
    }
}

/// Uppercase letters and digits, as in AWS key and user ids.
pub(crate) fn id_chars(rng: &mut SmallRng, n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..n)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// The organisation's accounts (12 digits each).
pub(crate) fn accounts(rng: &mut SmallRng) -> Vec<String> {
    (0..3)
        .map(|_| {
            format!(
                "{:012}",
                rng.gen_range(100_000_000_000u64..1_000_000_000_000)
            )
        })
        .collect()
}
