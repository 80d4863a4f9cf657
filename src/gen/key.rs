//! One generated credential: its identity (access key id, IAM user,
//! account), its behaviour, and the days it is in use.

use std::collections::HashSet;
use std::ops::Range;

use rand::rngs::SmallRng;
use rand::Rng;

use super::archetype::{Archetype, Built, Pattern};
use super::traffic::Habits;

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
fn id_chars(rng: &mut SmallRng, n: usize) -> String {
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
