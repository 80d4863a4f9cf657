//! Rendering a [`Call`] as one JSON line: the flat `generic` profile, a
//! CloudTrail record shaped like the ones CloudTrail writes, or a Google
//! Cloud Audit Log entry, an Azure service-principal sign-in or an Okta
//! System Log event.
//!
//! The fleet is an AWS fleet: its keys, principals and calls keep their AWS
//! names in every format, so a replay of one format finds what a replay of
//! another finds (the engine's rules for session keys, roles and sensitive
//! calls read those names). The other formats change the record around
//! them: its shape, nesting, times, status codes and outcome words are the
//! provider's.

use std::net::Ipv4Addr;

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;
use serde_json::{json, Value};

use super::catalog::{ActionDef, REGIONS};
use super::key::Identity;
use super::traffic::{mix, Call, ErrorKind};
use super::Format;

/// The event as one JSON object on one line.
pub(crate) fn render(format: Format, call: &Call, identity: &Identity, agent: &str) -> String {
    let region = region_of(call);
    let out = match format {
        Format::Generic => serde_json::to_string(&Generic {
            time: &timestamp(call.time_ms, SecondsFormat::Millis),
            key_id: &identity.key_id,
            principal: &identity.arn,
            source: call.source,
            user_agent: agent,
            action: call.action.name,
            outcome: if call.error.is_some() {
                "failure"
            } else {
                "success"
            },
            error_code: call.error.map(|e| error_code(call.action, e)),
            region,
        }),
        Format::CloudTrail => serde_json::to_string(&cloudtrail(call, identity, agent, region)),
        Format::Gcp => serde_json::to_string(&gcp(call, identity, agent, region)),
        Format::Azure => serde_json::to_string(&azure(call, identity, agent)),
        Format::Okta => serde_json::to_string(&okta(call, identity, agent)),
    };
    out.expect("generated records always serialize")
}

/// The flat `generic` profile of DESIGN.md "Events".
#[derive(Serialize)]
struct Generic<'a> {
    time: &'a str,
    key_id: &'a str,
    principal: &'a str,
    source: Ipv4Addr,
    user_agent: &'a str,
    action: &'a str,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    region: &'a str,
}

/// A CloudTrail record (eventVersion 1.09) for an IAM user's access key;
/// `tlsDetails` and `resources` are left out to keep records near 800 bytes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    event_version: &'static str,
    user_identity: UserIdentity<'a>,
    event_time: String,
    event_source: &'static str,
    event_name: &'static str,
    aws_region: &'a str,
    #[serde(rename = "sourceIPAddress")]
    source_ip_address: Ipv4Addr,
    user_agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    request_parameters: Value,
    response_elements: Option<()>,
    #[serde(rename = "requestID")]
    request_id: String,
    #[serde(rename = "eventID")]
    event_id: String,
    read_only: bool,
    event_type: &'static str,
    management_event: bool,
    recipient_account_id: &'a str,
    event_category: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserIdentity<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    principal_id: &'a str,
    arn: &'a str,
    account_id: &'a str,
    access_key_id: &'a str,
    /// Absent for a role's session, as in CloudTrail.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<&'a str>,
}

fn cloudtrail<'a>(
    call: &Call,
    identity: &'a Identity,
    agent: &'a str,
    region: &'a str,
) -> Record<'a> {
    let action = call.action;
    Record {
        event_version: "1.09",
        user_identity: UserIdentity {
            kind: if identity.key_id.starts_with("ASIA") {
                "AssumedRole"
            } else {
                "IAMUser"
            },
            principal_id: &identity.principal_id,
            arn: &identity.arn,
            account_id: &identity.account_id,
            access_key_id: &identity.key_id,
            user_name: (!identity.key_id.starts_with("ASIA"))
                .then_some(identity.user_name.as_str()),
        },
        event_time: timestamp(call.time_ms, SecondsFormat::Secs),
        event_source: action.event_source,
        event_name: action.event_name(),
        aws_region: region,
        source_ip_address: call.source,
        user_agent: agent,
        error_code: call.error.map(|e| error_code(action, e)),
        error_message: call
            .error
            .map(|e| error_message(action, e, identity, region)),
        request_parameters: request_parameters(call, identity, region),
        response_elements: None,
        request_id: if action.service() == "s3" {
            format!("{:016X}", mix(call.nonce, 1))
        } else {
            uuid(mix(call.nonce, 1))
        },
        event_id: uuid(mix(call.nonce, 2)),
        read_only: action.read_only(),
        event_type: "AwsApiCall",
        management_event: !action.data_event,
        recipient_account_id: &identity.account_id,
        event_category: if action.data_event {
            "Data"
        } else {
            "Management"
        },
    }
}

/// A Cloud Audit Logs entry (a `LogEntry` with an `AuditLog` payload) for a
/// call made with a service-account key. `status` is an RPC status: empty
/// on success.
fn gcp(call: &Call, identity: &Identity, agent: &str, region: &str) -> Value {
    let action = call.action;
    let project = format!("fleet-{}", identity.account_id);
    let status = match call.error {
        None => json!({}),
        Some(e) => json!({ "code": rpc_code(e), "message": rpc_message(action, e) }),
    };
    let log = if action.read_only() || action.data_event {
        "data_access"
    } else {
        "activity"
    };
    json!({
        "insertId": format!("{:012x}", mix(call.nonce, 2) >> 16),
        "logName": format!("projects/{project}/logs/cloudaudit.googleapis.com%2F{log}"),
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "status": status,
            "authenticationInfo": {
                "principalEmail": identity.arn,
                "serviceAccountKeyName": identity.key_id,
            },
            "requestMetadata": {
                "callerIp": call.source,
                "callerSuppliedUserAgent": agent,
                "requestAttributes": {},
                "destinationAttributes": {},
            },
            "serviceName": service_host(action),
            "methodName": action.event_name(),
            "resourceName": format!("projects/{project}/resources/{}", identity.resource),
            "resourceLocation": { "currentLocations": [region] },
        },
        "resource": {
            "type": "audited_resource",
            "labels": {
                "project_id": project,
                "service": service_host(action),
                "method": action.event_name(),
            },
        },
        "timestamp": timestamp(call.time_ms, SecondsFormat::Micros),
        "severity": if call.error.is_some() { "ERROR" } else { "INFO" },
        "receiveTimestamp": timestamp(call.time_ms + 612, SecondsFormat::Micros),
    })
}

/// The call's service as a host name: the IAM prefix keeps the action's
/// service what it is in the `generic` format (`cloudwatch`, not CloudTrail's
/// `monitoring`).
fn service_host(action: &ActionDef) -> String {
    format!("{}.amazonaws.com", action.service())
}

/// The `google.rpc.Code` of a kind of failure.
fn rpc_code(error: ErrorKind) -> u32 {
    match error {
        ErrorKind::NotFound => 5,
        ErrorKind::AccessDenied => 7,
        ErrorKind::Throttled => 8,
    }
}

fn rpc_message(action: &ActionDef, error: ErrorKind) -> String {
    match error {
        ErrorKind::NotFound => "Requested entity was not found.".to_owned(),
        ErrorKind::AccessDenied => format!(
            "Permission '{}' denied on resource (or it may not exist).",
            action.name
        ),
        ErrorKind::Throttled => "Quota exceeded for quota metric 'Requests'.".to_owned(),
    }
}

/// An Entra ID `ServicePrincipalSignInLogs` record as diagnostic settings
/// write it, one per use of the credential: `resultType` is `0` or the
/// AADSTS error number; the resource signed into is the call.
fn azure(call: &Call, identity: &Identity, agent: &str) -> Value {
    let tenant = uuid(mix(fnv(&identity.account_id), 7));
    let time = timestamp(call.time_ms, SecondsFormat::Micros);
    let result = match call.error {
        None => "0",
        Some(ErrorKind::AccessDenied) => "7000215",
        Some(ErrorKind::Throttled) => "50196",
        Some(ErrorKind::NotFound) => "500011",
    };
    json!({
        "time": format!("{}0Z", time.trim_end_matches('Z')),
        "resourceId": format!("/tenants/{tenant}/providers/Microsoft.aadiam"),
        "operationName": "Sign-in activity",
        "operationVersion": "1.0",
        "category": "ServicePrincipalSignInLogs",
        "tenantId": tenant,
        "resultType": result,
        "resultSignature": "None",
        "durationMs": 0,
        "callerIpAddress": call.source,
        "correlationId": uuid(mix(call.nonce, 1)),
        "Level": 4,
        "properties": {
            "id": uuid(mix(call.nonce, 2)),
            "createdDateTime": time,
            "appId": uuid(mix(fnv(&identity.principal_id), 1)),
            "servicePrincipalId": identity.arn,
            "servicePrincipalName": identity.user_name,
            "servicePrincipalCredentialKeyId": identity.key_id,
            "servicePrincipalCredentialThumbprint": "",
            "ipAddress": call.source,
            "userAgent": agent,
            "resourceDisplayName": call.action.name,
            "status": { "errorCode": result.parse::<u32>().unwrap_or_default() },
        },
    })
}

/// An Okta System Log event of a call made with an API token.
fn okta(call: &Call, identity: &Identity, agent: &str) -> Value {
    let (result, reason) = match call.error {
        None => ("SUCCESS", None),
        Some(ErrorKind::AccessDenied) => ("DENY", Some("INSUFFICIENT_PERMISSIONS")),
        Some(ErrorKind::Throttled) => ("FAILURE", Some("RATE_LIMIT_EXCEEDED")),
        Some(ErrorKind::NotFound) => ("FAILURE", Some("RESOURCE_NOT_FOUND")),
    };
    let request = format!("{:016x}", mix(call.nonce, 1));
    json!({
        "uuid": uuid(mix(call.nonce, 2)),
        "published": timestamp(call.time_ms, SecondsFormat::Millis),
        "eventType": call.action.name,
        "version": "0",
        "severity": if call.error.is_some() { "WARN" } else { "INFO" },
        "displayMessage": call.action.event_name(),
        "actor": {
            "id": format!("00u{}", identity.principal_id.chars().skip(4).take(17).collect::<String>()),
            "type": "User",
            "alternateId": identity.arn,
            "displayName": identity.user_name,
        },
        "client": {
            "userAgent": { "rawUserAgent": agent, "os": "Unknown", "browser": "UNKNOWN" },
            "zone": "null",
            "device": "Unknown",
            "ipAddress": call.source,
        },
        "outcome": { "result": result, "reason": reason },
        "transaction": {
            "type": "WEB",
            "id": request,
            "detail": { "requestApiTokenId": identity.key_id },
        },
        "debugContext": { "debugData": { "requestId": request } },
    })
}

/// FNV-1a of a string: a stable seed for ids derived from a name.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The small `requestParameters` object CloudTrail logs for the call.
fn request_parameters(call: &Call, identity: &Identity, region: &str) -> Value {
    let action = call.action;
    let account = &identity.account_id;
    let resource = &identity.resource;
    match (action.service(), action.event_name()) {
        ("s3", "ListBuckets") => Value::Null,
        ("s3", event) => s3_parameters(event, call, identity, region),
        ("dynamodb", _) => json!({ "tableName": resource }),
        ("sqs", _) => json!({
            "queueUrl": format!("https://sqs.{region}.amazonaws.com/{account}/{resource}"),
        }),
        ("sns", _) => json!({ "topicArn": format!("arn:aws:sns:{region}:{account}:{resource}") }),
        ("kinesis", _) => json!({ "streamName": resource }),
        ("lambda", "ListFunctions") => Value::Null,
        ("lambda", _) => json!({ "functionName": resource }),
        ("ecr", "GetAuthorizationToken") => Value::Null,
        ("ecr", _) => json!({ "repositoryName": resource, "registryId": account }),
        ("cloudformation", _) => json!({ "stackName": resource }),
        ("kms", "ListKeys") => Value::Null,
        ("kms", _) => json!({
            "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
            "keyId": format!("arn:aws:kms:{region}:{account}:key/{}", uuid(mix(u64::from(call.key), 3))),
        }),
        ("secretsmanager", "ListSecrets") => Value::Null,
        ("secretsmanager", _) => json!({ "secretId": format!("prod/{resource}/db") }),
        ("ssm", "DescribeParameters") => json!({ "maxResults": 50 }),
        ("ssm", _) => json!({ "name": format!("/{resource}/config"), "withDecryption": true }),
        ("logs", _) => json!({ "logGroupName": format!("/aws/{resource}") }),
        ("cloudwatch", _) => json!({ "namespace": format!("App/{resource}") }),
        ("athena", "StartQueryExecution") => json!({
            "queryString": format!("SELECT * FROM {} WHERE dt = current_date", resource.replace('-', "_")),
            "workGroup": "primary",
        }),
        ("athena", _) => json!({ "queryExecutionId": uuid(mix(call.nonce, 4)) }),
        ("glue", _) => json!({ "databaseName": resource.replace('-', "_"), "tableName": "events" }),
        ("ec2", _) => json!({ "filterSet": {}, "maxResults": 1000 }),
        ("iam", "CreateUser" | "CreateAccessKey") => json!({ "userName": backdoor(call) }),
        ("iam", "AttachUserPolicy") => json!({
            "userName": backdoor(call),
            "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess",
        }),
        ("ce", _) => json!({
            "granularity": "MONTHLY",
            "metrics": ["UnblendedCost"],
            "groupBy": [{ "type": "DIMENSION", "key": "LINKED_ACCOUNT" }],
        }),
        _ => Value::Null,
    }
}

/// S3 names the bucket and, for object calls, the object.
fn s3_parameters(event: &str, call: &Call, identity: &Identity, region: &str) -> Value {
    let bucket = format!("{}-{}", identity.resource, &identity.account_id[8..]);
    let host = format!("{bucket}.s3.{region}.amazonaws.com");
    match event {
        "ListObjects" => json!({
            "bucketName": bucket,
            "Host": host,
            "prefix": format!("{}/", identity.resource),
            "list-type": "2",
        }),
        "GetBucketLocation" => json!({ "bucketName": bucket, "Host": host, "location": "" }),
        _ => {
            let date = timestamp(call.time_ms, SecondsFormat::Secs)[..10].replace('-', "/");
            let part = call.nonce % 100_000;
            json!({
                "bucketName": bucket,
                "Host": host,
                "key": format!("{date}/part-{part:05}.json.gz"),
            })
        }
    }
}

/// The user an escalating attacker creates (stable across its three calls).
fn backdoor(call: &Call) -> String {
    const NAMES: [&str; 4] = [
        "backup-svc",
        "support-admin",
        "monitoring",
        "ops-automation",
    ];
    NAMES[(mix(u64::from(call.key), call.time_ms as u64 / 3_600_000) % 4) as usize].to_owned()
}

/// Region the call is logged in: global services always in `us-east-1`.
fn region_of(call: &Call) -> &'static str {
    if call.action.global() {
        REGIONS[0].name
    } else {
        REGIONS[usize::from(call.region)].name
    }
}

/// The error code each service returns for a kind of failure.
pub(crate) fn error_code(action: &ActionDef, error: ErrorKind) -> &'static str {
    let service = action.service();
    match error {
        ErrorKind::AccessDenied => match service {
            "s3" | "iam" | "sts" | "ce" => "AccessDenied",
            "ec2" => "Client.UnauthorizedOperation",
            _ => "AccessDeniedException",
        },
        ErrorKind::Throttled => match service {
            "ec2" => "Client.RequestLimitExceeded",
            "s3" => "SlowDown",
            "dynamodb" => "ProvisionedThroughputExceededException",
            _ => "ThrottlingException",
        },
        ErrorKind::NotFound => match service {
            "s3" => "NoSuchKey",
            "glue" => "EntityNotFoundException",
            _ => "ResourceNotFoundException",
        },
    }
}

fn error_message(
    action: &ActionDef,
    error: ErrorKind,
    identity: &Identity,
    region: &str,
) -> String {
    match error {
        ErrorKind::AccessDenied => format!(
            "User: {} is not authorized to perform: {} on resource: arn:aws:{}:{region}:{}:{} \
             because no identity-based policy allows the {} action",
            identity.arn,
            action.name,
            action.service(),
            identity.account_id,
            identity.resource,
            action.name,
        ),
        ErrorKind::Throttled => "Rate exceeded".to_owned(),
        ErrorKind::NotFound => match action.service() {
            "s3" => "The specified key does not exist.".to_owned(),
            _ => "Requested resource not found".to_owned(),
        },
    }
}

/// RFC 3339 UTC with `Z`.
fn timestamp(ms: i64, precision: SecondsFormat) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(precision, true)
}

/// A version-4-shaped UUID from 64 random bits (stretched).
fn uuid(x: u64) -> String {
    let y = mix(x, 0x5EED);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        x >> 32,
        (x >> 16) & 0xffff,
        x & 0xfff,
        ((y >> 48) & 0x3fff) | 0x8000,
        y & 0xffff_ffff_ffff,
    )
}
