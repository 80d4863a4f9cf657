//! Who owns a key: the bridge between the inventory (which knows) and the
//! alert pipeline (which routes by it).

/// A key's owner and, when the inventory says, the team whose channel gets
/// its alerts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    /// Person or service account responsible for the key.
    pub owner: String,
    /// Team or channel alerts for the key are routed to.
    pub team: Option<String>,
}

/// Looks up a key's owner. Implemented by the inventory; the alert pipeline
/// works without one.
pub trait OwnerLookup: Send + Sync {
    /// The owner of `key_id`, if known.
    fn owner_of(&self, key_id: &str) -> Option<Owner>;
}
