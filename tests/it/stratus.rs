//! Real CloudTrail records of attack techniques (`../shared/data/cloudtrail-stratus`).

use std::io::Write;

use crate::helpers::*;

#[test]
fn every_real_record_decodes() {
    let Some(dir) = shared_data("cloudtrail-stratus") else {
        return;
    };
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert!(files.len() >= 30);
    let o = run(keywatch()
        .args(["replay", "--profile", "cloudtrail"])
        .args(&files));
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    // 310 records; one is an AWS service event without a credential.
    assert!(err.contains("replayed 309 events"), "{err}");
    assert!(err.contains("no_key 1"), "{err}");
    assert!(err.contains("undecodable messages: none"), "{err}");
}

/// Instance credentials stolen and used from outside the instance: the
/// instance role's temporary keys rotate, so only the principal has a
/// history. A month of normal use from the instance, then the real records.
#[test]
fn stolen_instance_credentials_are_found_by_principal() {
    let Some(dir) = shared_data("cloudtrail-stratus") else {
        return;
    };
    let attack = dir.join("aws.credential-access.ec2-steal-instance-credentials.json");
    let role = "arn:aws:sts::017622104382:assumed-role/stratus-red-team-ec2-steal-credentials-role/i-786a3A8B5C0d92eF4";
    let tmp = tempfile::tempdir().unwrap();
    let baseline = tmp.path().join("baseline.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&baseline).unwrap());
    // 2024-07-01 .. 2024-08-01: a new temporary key every 6 hours, used from
    // the instance's own address.
    let start = 1_719_792_000i64;
    for h in 0..(31 * 24) {
        let key = format!("ASIAINSTANCE{:08}", h / 6);
        for m in [5, 25, 45] {
            let t = chrono::DateTime::from_timestamp(start + h * 3600 + m * 60, 0).unwrap();
            let rec = serde_json::json!({
                "eventTime": t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "awsRegion": "us-west-2",
                "sourceIPAddress": "54.190.12.33", "userAgent": "Boto3/1.34.0 md/Botocore#1.34.0",
                "userIdentity": {"type": "AssumedRole", "accessKeyId": key, "arn": role},
            });
            writeln!(f, "{rec}").unwrap();
        }
    }
    drop(f);
    let cfg = tmp.path().join("kw.toml");
    std::fs::write(
        &cfg,
        "[decode]\nprofile = \"cloudtrail\"\n[engine]\nentities = [\"key_id\", \"principal\"]\n",
    )
    .unwrap();
    let incidents = tmp.path().join("incidents.jsonl");
    let o = run(keywatch()
        .arg("replay")
        .arg("-c")
        .arg(&cfg)
        .arg("--incidents")
        .arg(&incidents)
        .arg(&baseline)
        .arg(&attack));
    assert!(o.status.success(), "{}", stderr(&o));
    let findings = json_lines(&stdout(&o));
    let new_source: Vec<_> = findings
        .iter()
        .filter(|f| f["detector"] == "new_source")
        .collect();
    assert_eq!(new_source.len(), 1, "{findings:#?}");
    let f = new_source[0];
    assert_eq!(f["entity"], "principal");
    assert_eq!(f["key_id"], "ASIAP5CT9NN8EYVU1FXV");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["evidence"]["observed"]["source"], "18.236.253.47");
    assert!(
        findings
            .iter()
            .all(|f| f["observed_at"].as_str().unwrap() >= "2024-08-02"),
        "nothing in the baseline month alerts: {findings:#?}"
    );
    // Every finding of the theft is one incident on the role, which the
    // technique's calls map to the tactic Stratus files it under.
    let incidents = json_lines(&std::fs::read_to_string(&incidents).unwrap());
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let i = &incidents[0];
    assert_eq!(i["entity"], "principal");
    assert_eq!(i["identity"], role);
    assert_eq!(i["findings"].as_u64().unwrap() as usize, findings.len());
    assert_eq!(i["status"], "resolved");
    assert_eq!(i["tactics"][0], "initial_access", "{i:#}");
    assert!(stderr(&o).contains("incidents: 1 ("), "{}", stderr(&o));
}
