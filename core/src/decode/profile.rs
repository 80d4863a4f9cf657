//! Mapping profiles: where each `AuditEvent` field lives in a source's JSON,
//! as JSON pointers (RFC 6901). A field may list several pointers; the first
//! one present in a record wins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One event field a profile can map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// Event time.
    Time,
    /// Credential identifier.
    KeyId,
    /// Principal.
    Principal,
    /// Source address or name.
    Source,
    /// User agent.
    UserAgent,
    /// Action.
    Action,
    /// Service the action belongs to.
    ActionNamespace,
    /// `success` / `failure` (or a boolean).
    Outcome,
    /// Error code; its presence (or an HTTP status ≥ 400) marks a failure.
    ErrorCode,
    /// Region.
    Region,
    /// Weight of a pre-aggregated record.
    Count,
}

impl Field {
    /// Every field, in slot order.
    pub const ALL: [Field; 11] = [
        Field::Time,
        Field::KeyId,
        Field::Principal,
        Field::Source,
        Field::UserAgent,
        Field::Action,
        Field::ActionNamespace,
        Field::Outcome,
        Field::ErrorCode,
        Field::Region,
        Field::Count,
    ];

    /// The field's name in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Field::Time => "time",
            Field::KeyId => "key_id",
            Field::Principal => "principal",
            Field::Source => "source",
            Field::UserAgent => "user_agent",
            Field::Action => "action",
            Field::ActionNamespace => "action_namespace",
            Field::Outcome => "outcome",
            Field::ErrorCode => "error_code",
            Field::Region => "region",
            Field::Count => "count",
        }
    }
}

/// A mapping profile as written in configuration (`[decode.profiles.NAME]`).
/// Every field is a list of JSON pointers; an empty list leaves the field unmapped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// Built-in or configured profile this one starts from; fields set here replace its fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Event time (RFC 3339 string or epoch number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Vec<String>>,
    /// Credential identifier; a record without one is skipped as `no_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Vec<String>>,
    /// Principal holding the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Vec<String>>,
    /// Source IP address or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Vec<String>>,
    /// User agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<Vec<String>>,
    /// Action name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Vec<String>>,
    /// Service the action belongs to, shown as `namespace:action`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_namespace: Option<Vec<String>>,
    /// Outcome as `success`/`failure` or a boolean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Vec<String>>,
    /// Error code; present and non-empty (or a number ≥ 400) means failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<Vec<String>>,
    /// Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Vec<String>>,
    /// Weight of a pre-aggregated usage record (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Vec<String>>,
    /// Error codes that mean success (Azure's `resultType` `0`, a Google
    /// RPC status code `0`). When set, any other code, string or number,
    /// marks a failure; when unset, a string code does and a numeric one
    /// from 400 up (an HTTP status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_codes: Option<Vec<String>>,
    /// Keep a record only if every pointer here holds the given string, or
    /// one of the given strings (e.g. Vault logs each call twice: keep
    /// `/type` = `response`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_if: Option<BTreeMap<String, OneOf>>,
    /// Skip a record if any pointer here holds the given string, or one of
    /// the given strings (e.g. Azure Activity Log calls made by users, not by
    /// a service principal's credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_if: Option<BTreeMap<String, OneOf>>,
}

/// One string, or a list of strings any of which matches: written in
/// configuration as `"x"` or `["x", "y"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOf(pub Vec<String>);

impl OneOf {
    /// The strings that match.
    pub fn values(&self) -> &[String] {
        &self.0
    }
}

impl From<&str> for OneOf {
    fn from(s: &str) -> OneOf {
        OneOf(vec![s.to_owned()])
    }
}

impl Serialize for OneOf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => s.serialize_str(one),
            many => many.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for OneOf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<OneOf, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            One(String),
            Many(Vec<String>),
        }
        match Written::deserialize(d)? {
            Written::One(s) => Ok(OneOf(vec![s])),
            Written::Many(v) if v.is_empty() => {
                Err(serde::de::Error::custom("an empty list matches nothing"))
            }
            Written::Many(v) => Ok(OneOf(v)),
        }
    }
}

impl ProfileSpec {
    fn field(&self, f: Field) -> &Option<Vec<String>> {
        match f {
            Field::Time => &self.time,
            Field::KeyId => &self.key_id,
            Field::Principal => &self.principal,
            Field::Source => &self.source,
            Field::UserAgent => &self.user_agent,
            Field::Action => &self.action,
            Field::ActionNamespace => &self.action_namespace,
            Field::Outcome => &self.outcome,
            Field::ErrorCode => &self.error_code,
            Field::Region => &self.region,
            Field::Count => &self.count,
        }
    }

    fn field_mut(&mut self, f: Field) -> &mut Option<Vec<String>> {
        match f {
            Field::Time => &mut self.time,
            Field::KeyId => &mut self.key_id,
            Field::Principal => &mut self.principal,
            Field::Source => &mut self.source,
            Field::UserAgent => &mut self.user_agent,
            Field::Action => &mut self.action,
            Field::ActionNamespace => &mut self.action_namespace,
            Field::Outcome => &mut self.outcome,
            Field::ErrorCode => &mut self.error_code,
            Field::Region => &mut self.region,
            Field::Count => &mut self.count,
        }
    }

    /// The pointers mapped for `f` (empty when unmapped).
    pub fn pointers(&self, f: Field) -> &[String] {
        self.field(f).as_deref().unwrap_or(&[])
    }

    /// `self` laid over `base`: fields set here win.
    pub fn over(&self, base: &ProfileSpec) -> ProfileSpec {
        let mut out = base.clone();
        for f in Field::ALL {
            if let Some(v) = self.field(f) {
                *out.field_mut(f) = Some(v.clone());
            }
        }
        if let Some(codes) = &self.success_codes {
            out.success_codes = Some(codes.clone());
        }
        if let Some(only) = &self.only_if {
            out.only_if = Some(only.clone());
        }
        if let Some(skip) = &self.skip_if {
            out.skip_if = Some(skip.clone());
        }
        out.extends = None;
        out
    }
}

/// Names of the built-in profiles.
pub const BUILTIN: [&str; 8] = [
    "generic",
    "cloudtrail",
    "vault",
    "kubernetes",
    "github",
    "gcp",
    "azure",
    "okta",
];

fn ptrs(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|s| (*s).to_owned()).collect())
}

/// Conditions of `only_if` / `skip_if`: each pointer with the strings it matches.
fn conditions(list: &[(&str, &[&str])]) -> Option<BTreeMap<String, OneOf>> {
    Some(
        list.iter()
            .map(|(p, v)| {
                (
                    (*p).to_owned(),
                    OneOf(v.iter().map(|s| (*s).to_owned()).collect()),
                )
            })
            .collect(),
    )
}

/// A built-in profile by name.
pub fn builtin(name: &str) -> Option<ProfileSpec> {
    let spec = match name {
        // Flat keys, as in DESIGN.md "Events".
        "generic" => ProfileSpec {
            time: ptrs(&["/time"]),
            key_id: ptrs(&["/key_id"]),
            principal: ptrs(&["/principal"]),
            source: ptrs(&["/source"]),
            user_agent: ptrs(&["/user_agent"]),
            action: ptrs(&["/action"]),
            outcome: ptrs(&["/outcome"]),
            error_code: ptrs(&["/error_code"]),
            region: ptrs(&["/region"]),
            count: ptrs(&["/count"]),
            ..ProfileSpec::default()
        },
        // AWS CloudTrail record (eventVersion 1.0x). Service events carry no
        // accessKeyId and are skipped as `no_key`.
        "cloudtrail" => ProfileSpec {
            time: ptrs(&["/eventTime"]),
            key_id: ptrs(&["/userIdentity/accessKeyId"]),
            principal: ptrs(&["/userIdentity/arn", "/userIdentity/principalId"]),
            source: ptrs(&["/sourceIPAddress"]),
            user_agent: ptrs(&["/userAgent"]),
            action: ptrs(&["/eventName"]),
            action_namespace: ptrs(&["/eventSource"]),
            error_code: ptrs(&["/errorCode"]),
            region: ptrs(&["/awsRegion"]),
            ..ProfileSpec::default()
        },
        // HashiCorp Vault file/socket audit device. Each request is logged as a
        // `request` and a `response` entry; only responses are counted, so a
        // call counts once and its error is known.
        "vault" => ProfileSpec {
            time: ptrs(&["/time"]),
            key_id: ptrs(&["/auth/accessor"]),
            principal: ptrs(&["/auth/display_name", "/auth/entity_id"]),
            source: ptrs(&["/request/remote_address"]),
            user_agent: ptrs(&["/request/headers/user-agent/0"]),
            action: ptrs(&["/request/path"]),
            action_namespace: ptrs(&["/request/operation"]),
            error_code: ptrs(&["/error"]),
            region: ptrs(&["/request/namespace/path"]),
            only_if: conditions(&[("/type", &["response"])]),
            ..ProfileSpec::default()
        },
        // Kubernetes audit.k8s.io/v1 Event. The credential is the token's
        // credential id (Kubernetes ≥ 1.29: `JTI=…`), else the user name.
        // Only the ResponseComplete stage is counted, once per request.
        "kubernetes" => ProfileSpec {
            time: ptrs(&["/requestReceivedTimestamp", "/stageTimestamp"]),
            key_id: ptrs(&[
                "/user/extra/authentication.kubernetes.io~1credential-id/0",
                "/user/username",
            ]),
            principal: ptrs(&["/user/username"]),
            source: ptrs(&["/sourceIPs/0"]),
            user_agent: ptrs(&["/userAgent"]),
            action: ptrs(&["/verb"]),
            action_namespace: ptrs(&["/objectRef/resource"]),
            error_code: ptrs(&["/responseStatus/code"]),
            only_if: conditions(&[("/stage", &["ResponseComplete"])]),
            ..ProfileSpec::default()
        },
        // GitHub enterprise/organization audit log (REST or streaming). Web
        // sessions carry no token and are skipped as `no_key`.
        "github" => ProfileSpec {
            time: ptrs(&["/@timestamp", "/created_at"]),
            key_id: ptrs(&["/hashed_token", "/token_id", "/programmatic_access_id"]),
            principal: ptrs(&["/actor"]),
            source: ptrs(&["/actor_ip"]),
            user_agent: ptrs(&["/user_agent"]),
            action: ptrs(&["/action"]),
            region: ptrs(&["/actor_location/country_code"]),
            ..ProfileSpec::default()
        },
        // Google Cloud Audit Logs: a LogEntry whose protoPayload is an
        // AuditLog, as a log sink writes it (Pub/Sub message, Cloud Storage
        // JSON line). Only calls authenticated with a user-managed service
        // account key name one; calls by users, attached service accounts
        // and Google's own agents are skipped as `no_key`. `status` is an RPC
        // status: empty or code 0 on success.
        "gcp" => ProfileSpec {
            time: ptrs(&["/timestamp", "/receiveTimestamp"]),
            key_id: ptrs(&["/protoPayload/authenticationInfo/serviceAccountKeyName"]),
            principal: ptrs(&["/protoPayload/authenticationInfo/principalEmail"]),
            source: ptrs(&["/protoPayload/requestMetadata/callerIp"]),
            user_agent: ptrs(&["/protoPayload/requestMetadata/callerSuppliedUserAgent"]),
            action: ptrs(&["/protoPayload/methodName"]),
            action_namespace: ptrs(&["/protoPayload/serviceName"]),
            error_code: ptrs(&["/protoPayload/status/code"]),
            success_codes: ptrs(&["0"]),
            region: ptrs(&[
                "/protoPayload/resourceLocation/currentLocations/0",
                "/resource/labels/location",
                "/resource/labels/region",
                "/resource/labels/zone",
            ]),
            ..ProfileSpec::default()
        },
        // Azure through diagnostic settings (Event Hubs, storage: records in
        // a `{"records": [...]}` envelope). Two kinds of record:
        // - Entra ID service-principal sign-ins: the key is the credential's
        //   key id (a secret's or certificate's `keyId`), the principal the
        //   service principal's object id, the action the resource signed
        //   into; `resultType` is `0` or the AADSTS error number.
        // - Activity Log (Administrative) calls by a service principal: they
        //   name no credential, so the key is the application (client) id,
        //   and the principal is the same object id as in its sign-ins.
        //   Users' calls and the `Start` / `Accept` records of an operation
        //   (its `Success` or `Failure` follows) are skipped as `filtered`.
        // Other categories (users' sign-ins, audit logs) are `filtered` too.
        "azure" => ProfileSpec {
            time: ptrs(&["/time", "/properties/createdDateTime"]),
            key_id: ptrs(&[
                "/properties/servicePrincipalCredentialKeyId",
                "/properties/federatedCredentialId",
                "/identity/claims/appid",
            ]),
            principal: ptrs(&[
                "/properties/servicePrincipalId",
                "/identity/claims/http:~1~1schemas.microsoft.com~1identity~1claims~1objectidentifier",
                "/properties/appId",
            ]),
            source: ptrs(&["/properties/ipAddress", "/callerIpAddress"]),
            user_agent: ptrs(&["/properties/userAgent"]),
            action: ptrs(&["/properties/resourceDisplayName", "/operationName"]),
            error_code: ptrs(&["/resultType"]),
            success_codes: ptrs(&["0", "Success"]),
            only_if: conditions(&[("/category", &["ServicePrincipalSignInLogs", "Administrative"])]),
            skip_if: conditions(&[
                ("/resultType", &["Start", "Accept"]),
                ("/identity/authorization/evidence/principalType", &["User", "Group"]),
            ]),
            ..ProfileSpec::default()
        },
        // Okta System Log (the System Log API's LogEvent, or Log Streaming).
        // An API token's use names its token id in the transaction detail;
        // sign-ins, sessions and OAuth clients carry none and are skipped as
        // `no_key`. The actor is the admin the token acts as.
        "okta" => ProfileSpec {
            time: ptrs(&["/published"]),
            key_id: ptrs(&[
                "/transaction/detail/requestApiTokenId",
                "/debugContext/debugData/requestApiTokenId",
            ]),
            principal: ptrs(&["/actor/alternateId", "/actor/id"]),
            source: ptrs(&["/client/ipAddress"]),
            user_agent: ptrs(&["/client/userAgent/rawUserAgent"]),
            action: ptrs(&["/eventType"]),
            outcome: ptrs(&["/outcome/result"]),
            ..ProfileSpec::default()
        },
        _ => return None,
    };
    Some(spec)
}

/// Splits a JSON pointer into unescaped reference tokens; `None` if it is not
/// a pointer (it must be empty or start with `/`).
pub fn pointer_tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_unescape() {
        assert_eq!(
            pointer_tokens("/user/extra/a~1b/0").unwrap(),
            vec!["user", "extra", "a/b", "0"]
        );
        assert_eq!(pointer_tokens("/m~0n").unwrap(), vec!["m~n"]);
        assert!(pointer_tokens("eventTime").is_none());
    }

    #[test]
    fn extension_replaces_only_given_fields() {
        let ext = ProfileSpec {
            key_id: ptrs(&["/credential/id"]),
            ..ProfileSpec::default()
        };
        let out = ext.over(&builtin("generic").unwrap());
        assert_eq!(out.pointers(Field::KeyId), ["/credential/id"]);
        assert_eq!(out.pointers(Field::Time), ["/time"]);
    }

    #[test]
    fn every_builtin_maps_time_and_key() {
        for name in BUILTIN {
            let p = builtin(name).unwrap();
            assert!(!p.pointers(Field::Time).is_empty(), "{name}");
            assert!(!p.pointers(Field::KeyId).is_empty(), "{name}");
        }
    }
}
