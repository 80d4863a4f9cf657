use super::*;

fn decoder(profile: &str) -> Decoder {
    Decoder::for_profile(profile, &BTreeMap::new()).unwrap()
}

fn decode_all<'a>(
    d: &Decoder,
    input: &'a [u8],
) -> Result<Vec<Result<AuditEvent<'a>, SkipReason>>, DecodeError> {
    let mut out = Vec::new();
    d.decode(input, |r| out.push(r))?;
    Ok(out)
}

fn one<'a>(d: &Decoder, input: &'a str) -> Result<AuditEvent<'a>, SkipReason> {
    let mut v = decode_all(d, input.as_bytes()).expect("message decodes");
    assert_eq!(v.len(), 1);
    v.pop().unwrap()
}

#[test]
fn generic_flat_event() {
    let e = one(
        &decoder("generic"),
        r#"{"time":"2026-03-01T10:00:00.5Z","key_id":"AKIAEXAMPLE1","principal":"svc-billing",
            "source":"198.51.100.7","user_agent":"aws-cli/2.15.0 Python/3.11","action":"s3:GetObject",
            "outcome":"failure","error_code":"AccessDenied","region":"eu-west-1","count":3,"extra":{"x":[1,2]}}"#,
    )
    .unwrap();
    assert_eq!(e.key_id, "AKIAEXAMPLE1");
    assert!(
        matches!(e.key_id, Cow::Borrowed(_)),
        "no allocation for plain strings"
    );
    assert_eq!(e.time_ms, 1_772_359_200_500);
    assert_eq!(e.principal.as_deref(), Some("svc-billing"));
    assert_eq!(e.source, Some(Source::Ip("198.51.100.7".parse().unwrap())));
    assert_eq!(
        e.outcome,
        Outcome::Failure {
            code: Some(Cow::Borrowed("AccessDenied"))
        }
    );
    assert_eq!(e.count, 3);
    assert_eq!(e.region.as_deref(), Some("eu-west-1"));
}

#[test]
fn generic_epoch_times_and_defaults() {
    let d = decoder("generic");
    let e = one(&d, r#"{"time":1772359200,"key_id":"k"}"#).unwrap();
    assert_eq!(e.time_ms, 1_772_359_200_000);
    assert_eq!(e.count, 1);
    assert_eq!(e.outcome, Outcome::Success);
    let e = one(
        &d,
        r#"{"time":1772359200123,"key_id":"k","outcome":"success"}"#,
    )
    .unwrap();
    assert_eq!(e.time_ms, 1_772_359_200_123);
}

#[test]
fn outcome_words_are_read_in_any_case() {
    let d = decoder("generic");
    let outcome_of = |word: &str| {
        let line = format!(r#"{{"time":1772359200,"key_id":"k","outcome":"{word}"}}"#);
        one(&d, &line).unwrap().is_failure()
    };
    for failed in ["failure", " DENIED ", "Unauthorized", "false", "Error"] {
        assert!(outcome_of(failed), "{failed}");
    }
    for ok in ["success", "Success", "allowed", "failures", ""] {
        assert!(!outcome_of(ok), "{ok}");
    }
}

#[test]
fn escaped_strings_are_unescaped() {
    let e = one(
        &decoder("generic"),
        r#"{"time":"2026-03-01T10:00:00Z","key_id":"a\"b\u00e9"}"#,
    )
    .unwrap();
    assert_eq!(e.key_id, "a\"bé");
}

const CLOUDTRAIL: &str = r#"{"Records":[
 {"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::123456789012:user/alice",
   "accountId":"123456789012","accessKeyId":"AKIAIOSFODNN7EXAMPLE","userName":"alice"},
  "eventTime":"2024-08-02T08:23:24Z","eventSource":"iam.amazonaws.com","eventName":"CreateUser","awsRegion":"us-east-1",
  "sourceIPAddress":"203.0.113.50","userAgent":"aws-cli/2.17.0 md/Botocore#1.34","errorCode":"AccessDenied",
  "errorMessage":"User is not authorized","requestParameters":{"userName":"backdoor"},"responseElements":null},
 {"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::123456789012:assumed-role/app/i-0abc",
   "accessKeyId":"ASIAEXAMPLETEMP","sessionContext":{"attributes":{"mfaAuthenticated":"false"}}},
  "eventTime":"2024-08-02T08:23:25.123Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1",
  "sourceIPAddress":"AWS Internal","userAgent":"AWS Internal"},
 {"eventVersion":"1.08","userIdentity":{"type":"AWSService","invokedBy":"cloudtrail.amazonaws.com"},
  "eventTime":"2024-08-02T08:23:26Z","eventSource":"kms.amazonaws.com","eventName":"GenerateDataKey",
  "sourceIPAddress":"cloudtrail.amazonaws.com"}
]}"#;

#[test]
fn cloudtrail_envelope_yields_each_record() {
    let out = decode_all(&decoder("cloudtrail"), CLOUDTRAIL.as_bytes()).unwrap();
    assert_eq!(out.len(), 3);
    let first = out[0].as_ref().unwrap();
    assert_eq!(first.key_id, "AKIAIOSFODNN7EXAMPLE");
    assert_eq!(
        first.principal.as_deref(),
        Some("arn:aws:iam::123456789012:user/alice")
    );
    assert_eq!(first.action_display().as_deref(), Some("iam:CreateUser"));
    assert!(first.is_failure());
    let second = out[1].as_ref().unwrap();
    assert_eq!(
        second.source,
        Some(Source::Named(Cow::Borrowed("AWS Internal")))
    );
    assert!(!second.is_failure());
    assert_eq!(out[2], Err(SkipReason::NoKey), "service events have no key");
}

#[test]
fn json_array_of_cloudtrail_records() {
    let records = CLOUDTRAIL
        .trim_start_matches(r#"{"Records":"#)
        .trim_end_matches('}');
    let out = decode_all(&decoder("cloudtrail"), records.as_bytes()).unwrap();
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 2);
}

#[test]
fn vault_counts_responses_only() {
    let d = decoder("vault");
    let request = r#"{"time":"2024-05-01T12:00:00.123456Z","type":"request",
        "auth":{"accessor":"hmac-sha256:abc","display_name":"approle-ci","entity_id":"e-1","policies":["default"]},
        "request":{"id":"r1","operation":"read","path":"secret/data/db","remote_address":"10.1.2.3",
                   "namespace":{"id":"root"},"headers":{"user-agent":["vault-agent/1.15"]}}}"#;
    let response = r#"{"time":"2024-05-01T12:00:00.223456Z","type":"response",
        "auth":{"accessor":"hmac-sha256:abc","display_name":"approle-ci","entity_id":"e-1"},
        "request":{"id":"r1","operation":"read","path":"secret/data/db","remote_address":"10.1.2.3",
                   "headers":{"user-agent":["vault-agent/1.15"]}},
        "response":{"data":{"x":"hmac-sha256:..."}},"error":"1 error occurred: permission denied"}"#;
    assert_eq!(one(&d, request), Err(SkipReason::Filtered));
    let e = one(&d, response).unwrap();
    assert_eq!(e.key_id, "hmac-sha256:abc");
    assert_eq!(e.principal.as_deref(), Some("approle-ci"));
    assert_eq!(e.user_agent.as_deref(), Some("vault-agent/1.15"));
    assert_eq!(e.action_display().as_deref(), Some("read:secret/data/db"));
    assert!(e.is_failure());
}

#[test]
fn kubernetes_audit_event() {
    let d = decoder("kubernetes");
    let ev = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1",
      "stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets","verb":"list",
      "user":{"username":"system:serviceaccount:prod:deployer","uid":"u1","groups":["system:serviceaccounts"],
              "extra":{"authentication.kubernetes.io/credential-id":["JTI=7d3c-11"]}},
      "sourceIPs":["192.0.2.10","10.0.0.1"],"userAgent":"kubectl/v1.29.1 (linux/amd64)",
      "objectRef":{"resource":"secrets","namespace":"prod","apiVersion":"v1"},
      "responseStatus":{"metadata":{},"status":"Failure","code":403},
      "requestReceivedTimestamp":"2024-05-01T12:00:00.000001Z","stageTimestamp":"2024-05-01T12:00:00.010000Z"}"#;
    let e = one(&d, ev).unwrap();
    assert_eq!(e.key_id, "JTI=7d3c-11");
    assert_eq!(
        e.principal.as_deref(),
        Some("system:serviceaccount:prod:deployer")
    );
    assert_eq!(e.source, Some(Source::Ip("192.0.2.10".parse().unwrap())));
    assert_eq!(e.action_display().as_deref(), Some("secrets:list"));
    assert_eq!(
        e.outcome,
        Outcome::Failure {
            code: Some(Cow::Owned("403".into()))
        }
    );
    let started = ev.replace("ResponseComplete", "RequestReceived");
    assert_eq!(one(&d, &started), Err(SkipReason::Filtered));
    // Without a credential id the user name is the key.
    let old = ev.replace(
        r#""extra":{"authentication.kubernetes.io/credential-id":["JTI=7d3c-11"]}"#,
        r#""extra":{}"#,
    );
    let e = one(&d, &old).unwrap();
    assert_eq!(e.key_id, "system:serviceaccount:prod:deployer");
    let ok = ev.replace(r#""code":403"#, r#""code":200"#);
    assert!(!one(&d, &ok).unwrap().is_failure());
}

#[test]
fn github_audit_log() {
    let d = decoder("github");
    let ev = r#"{"@timestamp":1714564800000,"_document_id":"x1","action":"git.clone","actor":"octocat",
       "actor_ip":"198.51.100.23","actor_location":{"country_code":"NL"},"hashed_token":"k7Fv2H0S9b3yV1j6cM5eA8Q=",
       "programmatic_access_type":"Fine-grained personal access token","user_agent":"git/2.43.0","org":"acme","repo":"acme/api"}"#;
    let e = one(&d, ev).unwrap();
    assert_eq!(e.key_id, "k7Fv2H0S9b3yV1j6cM5eA8Q=");
    assert_eq!(e.time_ms, 1_714_564_800_000);
    assert_eq!(e.principal.as_deref(), Some("octocat"));
    assert_eq!(e.region.as_deref(), Some("NL"));
    let web = r#"{"@timestamp":1714564800000,"action":"user.login","actor":"octocat","actor_ip":"198.51.100.23"}"#;
    assert_eq!(one(&d, web), Err(SkipReason::NoKey));
}

#[test]
fn configured_profile_extends_a_builtin() {
    let custom = BTreeMap::from([(
        "myapp".to_owned(),
        ProfileSpec {
            extends: Some("generic".into()),
            key_id: Some(vec!["/credential/id".into()]),
            time: Some(vec!["/ts".into()]),
            ..ProfileSpec::default()
        },
    )]);
    let d = Decoder::for_profile("myapp", &custom).unwrap();
    let e = one(
        &d,
        r#"{"ts":"2026-01-01T00:00:00Z","credential":{"id":"tok-1"},"source":"192.0.2.1"}"#,
    )
    .unwrap();
    assert_eq!(e.key_id, "tok-1");
    assert!(e.source.is_some());
    let err = Decoder::for_profile("nope", &custom)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope") && err.contains("cloudtrail"), "{err}");
    let bad = BTreeMap::from([(
        "bad".to_owned(),
        ProfileSpec {
            key_id: Some(vec!["credential.id".into()]),
            ..ProfileSpec::default()
        },
    )]);
    let err = Decoder::for_profile("bad", &bad).unwrap_err().to_string();
    assert!(
        err.contains("credential.id") && err.contains("key_id"),
        "{err}"
    );
}

#[test]
fn records_skip_individually() {
    let d = decoder("generic");
    let msg = br#"[{"time":"2026-01-01T00:00:00Z","key_id":"ok"},
                   {"time":"2026-01-01T00:00:00Z"},
                   {"time":"not a time","key_id":"k"},
                   {"time":"2026-01-01T00:00:00Z","key_id":{"nested":1}},
                   {"time":"2026-01-01T00:00:00Z","key_id":"k","source":["1.2.3.4"]},
                   {"time":"2026-01-01T00:00:00Z","key_id":"k","count":-4},
                   17]"#;
    let out = decode_all(&d, msg).unwrap();
    let reasons: Vec<_> = out.iter().map(|r| r.as_ref().err().copied()).collect();
    assert_eq!(
        reasons,
        vec![
            None,
            Some(SkipReason::NoKey),
            Some(SkipReason::BadTime),
            Some(SkipReason::WrongType(Field::KeyId)),
            Some(SkipReason::WrongType(Field::Source)),
            Some(SkipReason::BadCount),
            Some(SkipReason::NoKey),
        ]
    );
}

/// Zero is a count (an idle period's usage record); 2^32 and more is refused
/// rather than clamped, so one record cannot become a key's biggest bucket.
#[test]
fn counts_from_zero_to_u32_max() {
    let d = decoder("generic");
    let msg = br#"[{"time":"2026-01-01T00:00:00Z","key_id":"k","count":0},
                   {"time":"2026-01-01T00:00:00Z","key_id":"k","count":"0"},
                   {"time":"2026-01-01T00:00:00Z","key_id":"k","count":4294967295},
                   {"time":"2026-01-01T00:00:00Z","key_id":"k","count":4294967296},
                   {"time":"2026-01-01T00:00:00Z","key_id":"k","count":"99999999999"},
                   {"time":"2026-01-01T00:00:00Z","key_id":"k","count":1.5}]"#;
    let out = decode_all(&d, msg).unwrap();
    let counts: Vec<_> = out
        .iter()
        .map(|r| r.as_ref().map(|e| e.count).map_err(|e| *e))
        .collect();
    assert_eq!(
        counts,
        vec![
            Ok(0),
            Ok(0),
            Ok(u32::MAX),
            Err(SkipReason::BadCount),
            Err(SkipReason::BadCount),
            Err(SkipReason::BadCount),
        ]
    );
}

#[test]
fn hostile_messages_fail_cleanly() {
    let d = decoder("generic");
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (
            br#"{"time":"2026-01-01T00:00:00Z","key_id":"k"#.to_vec(),
            DecodeError::Truncated,
        ),
        (b"{not json}".to_vec(), DecodeError::MalformedJson),
        (
            b"{\"time\":\"2026-01-01T00:00:00Z\",\"key_id\":\"k\xff\xfe\"}".to_vec(),
            DecodeError::InvalidUtf8,
        ),
        (b"{} {}".to_vec(), DecodeError::MalformedJson),
    ];
    for (input, want) in cases {
        assert_eq!(decode_all(&d, &input).unwrap_err(), want);
    }
}

#[test]
fn deep_nesting_neither_overflows_nor_hides_the_event() {
    let d = decoder("generic");
    // Unmapped subtrees are skipped without recursion, so depth costs nothing.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        decode_all(&d, deep.as_bytes()).unwrap(),
        vec![Err(SkipReason::NoKey)]
    );
    let junk = format!(
        r#"{{"key_id":"k","time":"2026-01-01T00:00:00Z","junk":{}}}"#,
        "{\"a\":".repeat(50_000) + "1" + &"}".repeat(50_000)
    );
    assert_eq!(one(&d, &junk).unwrap().key_id, "k");
    // A mapped scalar field holding a deep array is a wrong type, not a crash.
    let mapped = format!(
        r#"{{"key_id":"k","time":"2026-01-01T00:00:00Z","source":{}}}"#,
        "[".repeat(1_000) + &"]".repeat(1_000)
    );
    assert_eq!(
        decode_all(&d, mapped.as_bytes()).unwrap(),
        vec![Err(SkipReason::WrongType(Field::Source))]
    );
}

#[test]
fn huge_values_are_bounded() {
    let d = decoder("generic").with_limits(64 << 20, 512);
    let big_string = format!(
        r#"{{"time":"2026-01-01T00:00:00Z","key_id":"k","user_agent":"{}"}}"#,
        "x".repeat(10 << 20)
    );
    assert!(
        one(&d, &big_string).is_ok(),
        "a 10 MB field decodes under a raised limit"
    );
    let small = decoder("generic");
    assert_eq!(
        decode_all(&small, big_string.as_bytes()).unwrap_err(),
        DecodeError::TooLarge
    );
    let long_key = format!(
        r#"{{"time":"2026-01-01T00:00:00Z","key_id":"{}"}}"#,
        "k".repeat(100 * 1024)
    );
    assert_eq!(one(&small, &long_key), Err(SkipReason::KeyTooLong));
}

/// A sample file of `tests/data/profiles/` (at the workspace root), decoded
/// whole with `profile`.
fn sample(profile: &str, file: &str) -> Vec<Result<OwnedEvent, SkipReason>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/profiles")
        .join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let d = decoder(profile);
    let mut out = Vec::new();
    let mut values = 0;
    d.decode_values(&bytes, &mut values, |r| {
        out.push(r.map(|e| OwnedEvent::from(&e)))
    })
    .unwrap();
    out
}

/// What a user reads off a decoded event: key, principal, source, action,
/// failure code (`None` for a success) and time.
type Seen = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

fn seen(e: &OwnedEvent) -> Seen {
    let ev = e.event();
    (
        ev.key_id.to_string(),
        ev.principal.as_deref().map(str::to_owned),
        ev.source.as_ref().map(ToString::to_string),
        ev.action_display(),
        match &ev.outcome {
            Outcome::Success => None,
            Outcome::Failure { code } => Some(code.as_deref().unwrap_or("").to_owned()),
        },
        time::format_rfc3339(ev.time_ms),
    )
}

fn s(x: &str) -> Option<String> {
    Some(x.to_owned())
}

#[test]
fn gcp_audit_log_entries_of_a_service_account_key() {
    let out = sample("gcp", "gcp.jsonl");
    let key = "//iam.googleapis.com/projects/acme-billing-prod/serviceAccounts/invoice-exporter@acme-billing-prod.iam.gserviceaccount.com/keys/6f1c0b7e93a24d58b1e0c4a7d2f9e8130b5a6c47";
    let sa = s("invoice-exporter@acme-billing-prod.iam.gserviceaccount.com");
    let events: Vec<_> = out
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(seen)
        .collect();
    assert_eq!(
        events,
        vec![
            (
                key.to_owned(),
                sa.clone(),
                s("203.0.113.45"),
                s("storage:storage.objects.get"),
                None,
                "2026-02-09T08:14:03.098Z".to_owned()
            ),
            (
                key.to_owned(),
                sa,
                s("185.220.101.7"),
                s("iam:google.iam.admin.v1.CreateServiceAccountKey"),
                s("7"),
                "2026-02-09T08:21:47.553Z".to_owned()
            ),
        ]
    );
    let first = out[0].as_ref().unwrap().event();
    assert_eq!(first.region.as_deref(), Some("europe-west1"));
    assert!(first
        .user_agent
        .as_deref()
        .unwrap()
        .starts_with("gcloud-python/3.14.1"));
    // A person's call and an attached service account's carry no key.
    let skipped: Vec<_> = out
        .iter()
        .filter_map(|r| r.as_ref().err().copied())
        .collect();
    assert_eq!(skipped, vec![SkipReason::NoKey, SkipReason::NoKey]);
}

#[test]
fn azure_service_principal_sign_ins_and_its_activity_log_calls() {
    let out = sample("azure", "azure.json");
    let principal = s("a41e7b2c-9d03-4f6a-8c51-e2b7d0f93c18");
    let results: Vec<_> = out
        .iter()
        .map(|r| r.as_ref().map(seen).map_err(|e| *e))
        .collect();
    assert_eq!(
        results,
        vec![
            Ok((
                "e8d1c4b2-7a6f-4a39-9e05-3b2c1f7d8a64".to_owned(),
                principal.clone(),
                s("203.0.113.45"),
                s("Azure Key Vault"),
                None,
                "2026-02-09T08:14:03.442Z".to_owned()
            )),
            Ok((
                "e8d1c4b2-7a6f-4a39-9e05-3b2c1f7d8a64".to_owned(),
                principal.clone(),
                s("185.220.101.7"),
                s("Microsoft Graph"),
                s("7000215"),
                "2026-02-09T08:21:47.110Z".to_owned()
            )),
            // An operation's `Start` is skipped: its `Success` counts it once.
            Err(SkipReason::Filtered),
            // Activity Log names no credential: the application is the key,
            // and the principal is the one its sign-ins name.
            Ok((
                "3f9a1c6e-2d4b-4e7a-b815-c06d9e2f4a71".to_owned(),
                principal,
                s("203.0.113.45"),
                s("MICROSOFT.KEYVAULT/VAULTS/WRITE"),
                None,
                "2026-02-09T08:30:14.512Z".to_owned()
            )),
            // A user's call, and a user's sign-in.
            Err(SkipReason::Filtered),
            Err(SkipReason::Filtered),
        ]
    );
}

#[test]
fn azure_falls_back_past_an_empty_credential_and_reads_failures() {
    let d = decoder("azure");
    // A workload-identity-federation sign-in names no key id, `""`, but its
    // federated credential.
    let e = one(
        &d,
        r#"{"time":"2026-02-09T10:00:00Z","category":"ServicePrincipalSignInLogs","resultType":"0",
            "properties":{"servicePrincipalCredentialKeyId":"","federatedCredentialId":"fic-7","servicePrincipalId":"sp-1","ipAddress":"192.0.2.9"}}"#,
    )
    .unwrap();
    assert_eq!(e.key_id, "fic-7");
    assert!(!e.is_failure());
    let failed = one(
        &d,
        r#"{"time":"2026-02-09T10:00:00Z","category":"Administrative","resultType":"Failure",
            "operationName":"MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE","identity":{"claims":{"appid":"app-1"}}}"#,
    )
    .unwrap();
    assert_eq!(
        failed.outcome,
        Outcome::Failure {
            code: Some(Cow::Borrowed("Failure"))
        }
    );
    let none = r#"{"time":"2026-02-09T10:00:00Z","category":"ServicePrincipalSignInLogs","resultType":"0",
                   "properties":{"servicePrincipalCredentialKeyId":"","servicePrincipalId":"sp-1"}}"#;
    assert_eq!(one(&d, none), Err(SkipReason::NoKey));
}

#[test]
fn okta_api_token_use() {
    let out = sample("okta", "okta.json");
    let results: Vec<_> = out
        .iter()
        .map(|r| r.as_ref().map(seen).map_err(|e| *e))
        .collect();
    let admin = s("svc-provisioning@acme.example");
    assert_eq!(
        results,
        vec![
            Ok((
                "00T1b8x9sQe4LkM2d5d7".to_owned(),
                admin.clone(),
                s("203.0.113.45"),
                s("user.lifecycle.create"),
                None,
                "2026-02-09T08:14:03.217Z".to_owned()
            )),
            Ok((
                "00T1b8x9sQe4LkM2d5d7".to_owned(),
                admin,
                s("185.220.101.7"),
                s("group.user_membership.add"),
                s(""),
                "2026-02-09T08:21:47.904Z".to_owned()
            )),
            // A person signing in uses no API token.
            Err(SkipReason::NoKey),
        ]
    );
    let first = out[0].as_ref().unwrap().event();
    assert_eq!(
        first.user_agent.as_deref(),
        Some("okta-sdk-python/2.9.2 python/3.11.6 Linux/6.1.0-18-amd64")
    );
    let d = decoder("okta");
    for (result, failed) in [("DENY", true), ("SUCCESS", false), ("ALLOW", false)] {
        let line = format!(
            r#"{{"published":"2026-02-09T10:00:00Z","transaction":{{"detail":{{"requestApiTokenId":"00T1"}}}},"outcome":{{"result":"{result}"}}}}"#
        );
        assert_eq!(one(&d, &line).unwrap().is_failure(), failed, "{result}");
    }
}

#[test]
fn skip_if_and_lists_in_only_if_are_configurable() {
    let spec: ProfileSpec = toml::from_str(
        r#"
        extends = "generic"
        only_if = { "/kind" = ["use", "call"] }
        skip_if = { "/by" = "robot" }
        success_codes = ["0", "OK"]
        "#,
    )
    .unwrap();
    let custom = BTreeMap::from([("mine".to_owned(), spec)]);
    let d = Decoder::for_profile("mine", &custom).unwrap();
    let rec = |kind: &str, by: &str, code: &str| {
        one(
            &d,
            &format!(
                r#"{{"time":"2026-01-01T00:00:00Z","key_id":"k","kind":"{kind}","by":"{by}","error_code":"{code}"}}"#
            ),
        )
        .map(|e| e.is_failure())
    };
    assert_eq!(rec("use", "me", "0"), Ok(false));
    assert_eq!(rec("call", "me", "OK"), Ok(false));
    assert_eq!(rec("call", "me", "E42"), Ok(true));
    assert_eq!(rec("other", "me", "0"), Err(SkipReason::Filtered));
    assert_eq!(rec("use", "robot", "0"), Err(SkipReason::Filtered));
    let empty: Result<ProfileSpec, _> = toml::from_str(r#"only_if = { "/kind" = [] }"#);
    assert!(empty.is_err());
}
