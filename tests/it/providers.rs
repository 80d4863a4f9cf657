//! Inventories from the providers' own exports, as a user meets them:
//! `aws iam list-access-keys` with the IAM credential report, `gcloud iam
//! service-accounts keys list --format=json`, GitHub's fine-grained token
//! list, merged with keywatch's own file and an owner mapping.
//!
//! - The sample exports in `tests/data/providers/` (shaped as the providers
//!   document them) give the same review as the hand-written equivalent.
//! - Generated exports of a few hundred keys (an AWS pair for 80 users, a
//!   Google Cloud list of 300 keys in three concatenated arrays) give the
//!   same review as the same keys written by hand.
//! - A malformed export is refused naming the file, the line, the element
//!   and the provider's field; `check-config` validates the exports.

use std::fmt::Write as _;
use std::path::Path;

use crate::helpers::*;

const NOW: &str = "2025-12-01T00:00:00Z";

fn providers_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/providers")
}

/// `keywatch review --format json` in `dir`, with `args`.
fn review_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let o = run(keywatch()
        .current_dir(dir)
        .args(["review", "--format", "json", "--now", NOW])
        .args(args));
    assert!(o.status.success(), "review failed: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

#[test]
fn sample_exports_review_like_the_hand_written_file() {
    let dir = providers_dir();
    let from_exports = review_json(&dir, &["-c", "keywatch.toml"]);
    let by_hand = review_json(&dir, &["-i", "equivalent.toml"]);
    assert_eq!(from_exports, by_hand);

    let key = |id: &str| {
        from_exports["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key_id"] == id)
            .unwrap_or_else(|| panic!("{id} is not in the review"))
            .clone()
    };
    // The credential report's slot 2 of alice is her second key.
    let second = key("AKIAI44QH8DHBEXAMPLE");
    assert_eq!(second["last_used"], "2025-11-30T09:30:00.000Z");
    assert_eq!(second["owner"], "alice@acme.example", "from owners.csv");
    // keywatch's own file wins where it speaks; the export fills the rest.
    let first = key("AKIAIOSFODNN7EXAMPLE");
    assert_eq!(first["team"], "payments");
    assert_eq!(first["last_used"], "2025-06-01T12:00:00.000Z");
    // Inactive at AWS, disabled at Google: neither stale nor overdue.
    for id in [
        "AKIAJ5EXAMPLEDEPLOY1",
        "//iam.googleapis.com/projects/acme-web/serviceAccounts/deployer@acme-web.iam.gserviceaccount.com/keys/0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d",
    ] {
        assert_eq!(key(id)["status"], serde_json::json!(["disabled"]), "{id}");
    }
    // Google's system-managed key is not in the inventory.
    assert_eq!(from_exports["summary"]["listed"], 11);
    // GitHub: the token's highest permission, its expiry, its last use.
    let pat = key("98716");
    assert_eq!(pat["privilege"], "write");
    assert_eq!(pat["expires"], "2026-05-16T15:47:09.000Z");
    assert_eq!(key("98717")["status"], serde_json::json!(["expired"]));
}

#[test]
fn check_config_validates_the_exports() {
    let o =
        run(keywatch()
            .current_dir(providers_dir())
            .args(["check-config", "-c", "keywatch.toml"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("aws-list-access-keys.json") && err.contains(": 11 keys"),
        "{err}"
    );
}

/// Deterministic exports of `users` AWS users (one or two keys each) and
/// `gcp_keys` Google Cloud keys over 30 service accounts, with the same
/// keys written by hand as keywatch CSV.
struct Generated {
    aws_keys: String,
    aws_report: String,
    gcp: String,
    by_hand: String,
}

fn generate(users: usize, gcp_keys: usize) -> Generated {
    let day = 86_400i64;
    // 2025-12-01T00:00:00Z
    let now = 1_764_547_200i64;
    let t = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string()
    };
    let z = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let mut g = Generated {
        aws_keys: String::new(),
        aws_report: "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated\n".to_owned(),
        gcp: String::new(),
        by_hand: "key_id,owner,system,principal,created,last_rotated,last_used,expires,disabled\n"
            .to_owned(),
    };
    for u in 0..users as i64 {
        let user = format!("svc-{u:03}");
        let user_created = now - (400 + u * 7) * day;
        let keys = if u % 3 == 0 { 2 } else { 1 };
        let mut metadata = Vec::new();
        let mut slots = Vec::new();
        for k in 0..keys {
            let id = format!("AKIAGEN{u:05}{k:08}");
            let created = user_created + (k * 200 + u % 11) * day + 3_600 * (u % 24);
            // Every fifth key never used; the others last used 1 to 200 days ago.
            let used = (u % 5 != 0).then(|| now - ((u * 13 + k * 29) % 200 + 1) * day);
            let inactive = u % 17 == 4 && k == 0;
            metadata.push(format!(
                r#"        {{
            "UserName": "{user}",
            "AccessKeyId": "{id}",
            "Status": "{}",
            "CreateDate": "{}"
        }}"#,
                if inactive { "Inactive" } else { "Active" },
                t(created)
            ));
            slots.push(format!(
                "{},{},{},us-east-1,s3",
                !inactive,
                t(created),
                used.map_or("N/A".to_owned(), t)
            ));
            writeln!(
                g.by_hand,
                "{id},{user},aws,{user},{},{},{},,{}",
                z(created),
                z(created),
                used.map(z).unwrap_or_default(),
                inactive
            )
            .unwrap();
        }
        if slots.len() == 1 {
            slots.push("false,N/A,N/A,N/A,N/A".to_owned());
        }
        writeln!(
            g.aws_keys,
            "{{\n    \"AccessKeyMetadata\": [\n{}\n    ]\n}}",
            metadata.join(",\n")
        )
        .unwrap();
        writeln!(
            g.aws_report,
            "{user},arn:aws:iam::123456789012:user/{user},{},false,N/A,N/A,N/A,false,{},{},false,N/A,false,N/A",
            t(user_created),
            slots[0],
            slots[1]
        )
        .unwrap();
    }
    let per_array = gcp_keys.div_ceil(3);
    let mut arrays: Vec<Vec<String>> = vec![Vec::new(); 3];
    for i in 0..gcp_keys as i64 {
        let account = format!("sa-{:02}@proj-{}.iam.gserviceaccount.com", i % 30, i % 3);
        let name = format!(
            "projects/proj-{}/serviceAccounts/{account}/keys/{:040x}",
            i % 3,
            0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1)
        );
        let created = now - (i % 500 + 1) * day;
        let expires = (i % 4 == 0).then(|| created + 365 * day);
        let disabled = i % 23 == 0;
        arrays[i as usize / per_array].push(format!(
            r#"  {{
{}    "keyAlgorithm": "KEY_ALG_RSA_2048",
    "keyOrigin": "GOOGLE_PROVIDED",
    "keyType": "USER_MANAGED",
    "name": "{name}",
    "validAfterTime": "{}",
    "validBeforeTime": "{}"
  }}"#,
            if disabled {
                "    \"disabled\": true,\n"
            } else {
                ""
            },
            z(created),
            expires.map_or("9999-12-31T23:59:59Z".to_owned(), z)
        ));
        writeln!(
            g.by_hand,
            "//iam.googleapis.com/{name},{account},gcp,{account},{},,,{},{disabled}",
            z(created),
            expires.map(z).unwrap_or_default()
        )
        .unwrap();
    }
    for a in arrays {
        writeln!(g.gcp, "[\n{}\n]", a.join(",\n")).unwrap();
    }
    g
}

#[test]
fn hundreds_of_generated_provider_keys_review_like_the_hand_written_file() {
    let g = generate(80, 300);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("keys.json"), &g.aws_keys).unwrap();
    // The report as `aws iam get-credential-report` answers, base64 and all.
    use base64::Engine as _;
    let response = serde_json::json!({
        "Content": base64::engine::general_purpose::STANDARD.encode(&g.aws_report),
        "ReportFormat": "text/csv",
        "GeneratedTime": "2025-12-01T00:00:00+00:00",
    });
    std::fs::write(d.join("report.json"), response.to_string()).unwrap();
    std::fs::write(d.join("gcp.json"), &g.gcp).unwrap();
    std::fs::write(d.join("by-hand.csv"), &g.by_hand).unwrap();
    std::fs::write(
        d.join("keywatch.toml"),
        r#"
[inventory]
path = "keys.json"
format = "aws"
credential_report = "report.json"
[[inventory.sources]]
path = "gcp.json"
format = "gcp"
"#,
    )
    .unwrap();
    let from_exports = review_json(d, &["-c", "keywatch.toml"]);
    let by_hand = review_json(d, &["-i", "by-hand.csv"]);
    let listed = from_exports["summary"]["listed"].as_u64().unwrap();
    assert_eq!(listed, 80 + 27 + 300, "every generated key is listed");
    assert!(
        from_exports["summary"]["stale"].as_u64().unwrap() > 10
            && from_exports["summary"]["rotation_overdue"]
                .as_u64()
                .unwrap()
                > 100,
        "the review has substance: {}",
        from_exports["summary"]
    );
    assert_eq!(from_exports, by_hand);
}

/// `check-config` on a configuration naming `file` as an export of `format`.
fn refused(format: &str, file: &str, text: &str, report: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), text).unwrap();
    let mut cfg = format!("[inventory]\npath = \"{file}\"\nformat = \"{format}\"\n");
    if let Some(r) = report {
        std::fs::write(dir.path().join("report.csv"), r).unwrap();
        cfg.push_str("credential_report = \"report.csv\"\n");
    }
    std::fs::write(dir.path().join("keywatch.toml"), cfg).unwrap();
    let o = run(keywatch()
        .current_dir(dir.path())
        .args(["check-config", "-c", "keywatch.toml"]));
    assert_eq!(o.status.code(), Some(64), "accepted: {}", stderr(&o));
    stderr(&o)
}

#[test]
fn a_malformed_export_is_refused_naming_file_line_element_and_field() {
    let sample =
        std::fs::read_to_string(providers_dir().join("aws-list-access-keys.json")).unwrap();
    let report =
        std::fs::read_to_string(providers_dir().join("aws-credential-report.csv")).unwrap();

    // A status AWS never writes, on the fourth key (its element opens on line 25).
    let err = refused(
        "aws",
        "keys.json",
        &sample.replacen(
            "\"Status\": \"Active\",\n            \"CreateDate\": \"2025-02-03",
            "\"Status\": \"Enabled\",\n            \"CreateDate\": \"2025-02-03",
            1,
        ),
        None,
    );
    assert!(
        err.contains("keys.json: line 25, entry 4 (key_id \"AKIAJ5EXAMPLEDEPLOY2\"): `Status` = \"Enabled\": must be Active or Inactive"),
        "{err}"
    );

    // A key without its id: the element and the field are named.
    let err = refused(
        "aws",
        "keys.json",
        &sample.replacen("\"AccessKeyId\": \"AKIAI44QH8DHBEXAMPLE\",", "", 1),
        None,
    );
    assert!(
        err.contains("keys.json, line 14")
            && err.contains("AccessKeyMetadata element 2")
            && err.contains("`AccessKeyId`"),
        "{err}"
    );

    // A credential report date that is not one: the report's line, row, column.
    let err = refused(
        "aws",
        "keys.json",
        &sample,
        Some(&report.replacen("2025-06-01T12:00:00+00:00", "last tuesday", 1)),
    );
    assert!(
        err.contains("report.csv, line 3: row 2 (user \"alice\"): `access_key_1_last_used_date` = \"last tuesday\""),
        "{err}"
    );

    // Google Cloud: a key name that is no key's, on the second element.
    let gcp = std::fs::read_to_string(providers_dir().join("gcp-keys.json")).unwrap();
    let err = refused(
        "gcp",
        "gcp.json",
        &gcp.replacen(
            "projects/acme-data/serviceAccounts/etl-loader@acme-data.iam.gserviceaccount.com/keys/3f9d",
            "projects/acme-data/keys/3f9d",
            1,
        ),
        None,
    );
    assert!(
        err.contains("gcp.json: line 2, entry 1")
            && err.contains("`name` = \"projects/acme-data/keys/3f9d"),
        "{err}"
    );
    let err = refused(
        "gcp",
        "gcp.json",
        &gcp.replacen("\"2025-10-01T00:00:00Z\"", "\"2025-10-01 sometime\"", 1),
        None,
    );
    assert!(
        err.contains("gcp.json: line 29, entry 4")
            && err.contains("`validAfterTime` = \"2025-10-01 sometime\""),
        "{err}"
    );

    // GitHub: not JSON at all past a point.
    let gh =
        std::fs::read_to_string(providers_dir().join("github-fine-grained-pats.json")).unwrap();
    let err = refused(
        "github",
        "pats.json",
        &gh.replacen("\"token_id\": 98717,", "\"token_id\": 98717", 1),
        None,
    );
    assert!(
        err.contains("pats.json, line 52") && err.contains("expected `,`"),
        "{err}"
    );

    // A provider format where keywatch's own is meant, and the other way.
    let err = refused(
        "gcp",
        "keys.toml",
        "[[keys]]\nkey_id = \"A\"\nowner = \"o\"\n",
        None,
    );
    assert!(
        err.contains("keys.toml") && err.contains("gcp export"),
        "{err}"
    );
}
