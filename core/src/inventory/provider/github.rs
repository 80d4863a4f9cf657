//! GitHub: an organization's fine-grained personal access tokens as the
//! REST API lists them (`GET /orgs/{org}/personal-access-tokens`: one page's
//! array, or several concatenated).
//!
//! A token's key id is its `token_id` (what the `github` profile reads from
//! audit-log events that carry no `hashed_token`), its principal and default
//! owner the token owner's login; `access_granted_at` stands for its
//! creation, `token_expires_at` is its expiry, `token_last_used_at` its last
//! use. Its privilege is the highest permission it holds (`admin`, `write`,
//! else `read`). A token GitHub reports expired is listed as such.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::super::entry::{RawEntry, RawFlag};
use super::super::load::{Collector, SyntaxError};
use super::{as_raw, elements, push, record, time, Bad};

#[derive(Deserialize)]
struct Token {
    token_id: serde_json::Value,
    owner: Owner,
    #[serde(default)]
    permissions: BTreeMap<String, BTreeMap<String, String>>,
    access_granted_at: Option<String>,
    token_expires_at: Option<String>,
    token_last_used_at: Option<String>,
}

#[derive(Deserialize)]
struct Owner {
    login: String,
}

pub(in super::super) fn read(text: &str, collect: &mut Collector) -> Result<(), SyntaxError> {
    for (n, (line, raw)) in elements(text)?.into_iter().enumerate() {
        let token: Token = record("element", n + 1, line, raw)?;
        let id = match &token.token_id {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        push(collect, line, Some(&id), entry(&token, id.clone()));
    }
    Ok(())
}

fn entry(t: &Token, id: String) -> Result<RawEntry<'static>, Bad> {
    let level = t
        .permissions
        .values()
        .flat_map(|m| m.values())
        .map(|v| match v.as_str() {
            "admin" => 2,
            "write" => 1,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let privilege = ["read", "write", "admin"][level];
    Ok(RawEntry {
        key_id: Some(id.into()),
        owner: Some(t.owner.login.clone().into()),
        principal: Some(t.owner.login.clone().into()),
        system: Some("github".into()),
        privilege: Some(privilege.into()),
        created: as_raw(time("access_granted_at", t.access_granted_at.as_deref())?),
        expires: as_raw(time("token_expires_at", t.token_expires_at.as_deref())?),
        last_used: as_raw(time("token_last_used_at", t.token_last_used_at.as_deref())?),
        disabled: Some(RawFlag::Bool(false)),
        ..RawEntry::default()
    })
}
