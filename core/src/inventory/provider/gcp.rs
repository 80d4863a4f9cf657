//! Google Cloud: `gcloud iam service-accounts keys list --format=json`
//! (one service account's array, or several concatenated).
//!
//! A key's id is its full resource name as audit logs write it
//! (`//iam.googleapis.com/projects/P/serviceAccounts/SA/keys/ID`, the `gcp`
//! profile's `serviceAccountKeyName`), so traffic and inventory meet; its
//! principal and default owner is the service account. `validAfterTime`
//! is its creation, `validBeforeTime` its expiry (Google's far-future
//! "never" is no expiry), `disabled` switches it off. `SYSTEM_MANAGED` keys
//! are left out: Google holds and rotates them, no one can download or
//! leak them.

use serde::Deserialize;

use super::super::entry::{bad, RawEntry, RawFlag};
use super::super::load::{Collector, SyntaxError};
use super::{as_raw, elements, push, record, time, Bad};

/// One key as `gcloud ... keys list --format=json` prints it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Key {
    name: String,
    valid_after_time: Option<String>,
    valid_before_time: Option<String>,
    key_type: Option<String>,
    #[serde(default)]
    disabled: bool,
}

/// The prefix audit logs put before a key's resource name.
const AUDIT_PREFIX: &str = "//iam.googleapis.com/";

pub(in super::super) fn read(text: &str, collect: &mut Collector) -> Result<(), SyntaxError> {
    for (n, (line, raw)) in elements(text)?.into_iter().enumerate() {
        let key: Key = record("element", n + 1, line, raw)?;
        if key.key_type.as_deref() == Some("SYSTEM_MANAGED") {
            collect.skip();
            continue;
        }
        let id = format!("{AUDIT_PREFIX}{}", key.name.trim_start_matches('/'));
        push(collect, line, Some(&id), entry(&key, id.clone()));
    }
    Ok(())
}

fn entry(key: &Key, id: String) -> Result<RawEntry<'static>, Bad> {
    let account = service_account(&key.name).ok_or_else(|| {
        bad(
            "name",
            key.name.as_str(),
            "expected projects/PROJECT/serviceAccounts/ACCOUNT/keys/KEY",
        )
    })?;
    match key.key_type.as_deref() {
        None | Some("USER_MANAGED") | Some("KEY_TYPE_UNSPECIFIED") => {}
        Some(other) => {
            return Err(bad(
                "keyType",
                other,
                "must be USER_MANAGED or SYSTEM_MANAGED",
            ))
        }
    }
    let created = time("validAfterTime", key.valid_after_time.as_deref())?;
    let expires = time("validBeforeTime", key.valid_before_time.as_deref())?;
    if let (Some(c), Some(e)) = (created, expires) {
        if e < c {
            return Err(bad(
                "validBeforeTime",
                key.valid_before_time.clone().unwrap_or_default(),
                "is before `validAfterTime`",
            ));
        }
    }
    Ok(RawEntry {
        key_id: Some(id.into()),
        owner: Some(account.to_owned().into()),
        principal: Some(account.to_owned().into()),
        system: Some("gcp".into()),
        created: as_raw(created),
        expires: as_raw(expires),
        disabled: Some(RawFlag::Bool(key.disabled)),
        ..RawEntry::default()
    })
}

/// The service account of a key's resource name.
fn service_account(name: &str) -> Option<&str> {
    let rest = name.trim_start_matches('/').strip_prefix("projects/")?;
    let (_, rest) = rest.split_once("/serviceAccounts/")?;
    let (account, key) = rest.split_once("/keys/")?;
    (!account.is_empty() && !key.is_empty() && !key.contains('/')).then_some(account)
}

#[cfg(test)]
mod tests {
    #[test]
    fn service_accounts_come_from_the_key_name() {
        assert_eq!(
            super::service_account(
                "projects/p/serviceAccounts/sa@p.iam.gserviceaccount.com/keys/ab12"
            ),
            Some("sa@p.iam.gserviceaccount.com")
        );
        assert_eq!(super::service_account("projects/p/keys/ab12"), None);
        assert_eq!(
            super::service_account("projects/p/serviceAccounts/sa/keys/"),
            None
        );
    }
}
