//! Hostile input, the short run of the fuzzers in `fuzz/`: every seed of
//! each target's corpus (`fuzz/seeds/`) and a few thousand mutations of
//! them go through the same entry points (`fuzz/entries.rs`), which must
//! return without a panic. The long, coverage-guided run is `fuzz/run.sh`.

use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use keywatch::config::Config;
#[path = "../../fuzz/entries.rs"]
mod fuzz;

/// Mutated inputs per target: the five together stay within seconds in debug
/// (a configuration costs ~5 ms there: the TOML layer and the redaction
/// patterns, so it gets fewer).
const MUTATIONS: usize = 3000;
const CONFIG_MUTATIONS: usize = 500;

fn seed_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(seed_dir(target))
        .unwrap_or_else(|e| panic!("fuzz/seeds/{target}: {e}"))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(seeds.len() >= 3, "fuzz/seeds/{target} has too few seeds");
    seeds
}

/// Byte strings that tend to reach edges: JSON tokens, numbers past every
/// width, TOML and CSV syntax, postcard varints at their limits.
const TOKENS: &[&[u8]] = &[
    b"\"count\":4294967296",
    b"\"count\":-1",
    b"1e999",
    b"-0",
    b"18446744073709551616",
    b"9223372036854775807",
    b"\"\\ud800\"",
    b"[[[[[[[[[[[[[[[[",
    b"{\"Records\":[",
    b"null",
    b"\"2026-01-01T00:00:00Z\"",
    b"\"99999-12-31T23:59:59Z\"",
    b"\"::ffff:10.0.0.1\"",
    b"\"fe80::1%eth0\"",
    b"\"0.0.0.0/0\"",
    b"= \"9999999999999d\"",
    b"= -1",
    b"[[keys]]\n",
    b"\n[engine]\n",
    b",,,,;;;;",
    b"\"\"\"",
    b"\xff\xff\xff\xff\x0f",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
    b"\x80\x80\x80\x80\x80",
    b"\x00\x00\x00\x00",
];

/// One mutation of `seed` (another seed may be spliced in).
fn mutate(rng: &mut SmallRng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let at = rng.gen_range(0..=out.len());
        match rng.gen_range(0..8) {
            0 if at < out.len() => out[at] ^= 1 << rng.gen_range(0..8),
            1 if at < out.len() => out[at] = rng.gen(),
            2 => {
                let end = rng.gen_range(at..=out.len().min(at + 16));
                out.drain(at..end);
            }
            3 => {
                let token = TOKENS[rng.gen_range(0..TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            4 => out.truncate(at.max(1)),
            5 if !other.is_empty() => {
                let from = rng.gen_range(0..other.len());
                let to = rng.gen_range(from..=other.len());
                out.splice(at..at, other[from..to].iter().copied());
            }
            6 if at < out.len() => {
                let end = rng.gen_range(at..=out.len().min(at + 64));
                let copy = out[at..end].to_vec();
                out.splice(end..end, copy);
            }
            _ if at + 1 < out.len() => {
                // An integer of any width here: lengths, counts, times.
                let v: u64 =
                    [0, 1, 0x7f, 0x80, 0xff, u32::MAX as u64, u64::MAX][rng.gen_range(0..7)];
                let end = (at + 8).min(out.len());
                let width = end - at;
                out[at..end].copy_from_slice(&v.to_le_bytes()[..width]);
            }
            _ => {}
        }
    }
    out
}

fn run(target: &str, mutations: usize, entry: fn(&[u8])) {
    let seeds = seeds(target);
    for (i, seed) in seeds.iter().enumerate() {
        let res = std::panic::catch_unwind(|| entry(seed));
        assert!(res.is_ok(), "{target}: seed {i} panics");
    }
    let mut rng = SmallRng::seed_from_u64(0x6b77_6675_7a7a);
    for n in 0..mutations {
        let seed = &seeds[rng.gen_range(0..seeds.len())];
        let other = &seeds[rng.gen_range(0..seeds.len())];
        let input = mutate(&mut rng, seed, other);
        if std::panic::catch_unwind(|| entry(&input)).is_err() {
            panic!(
                "{target}: mutation {n} panics on {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

#[test]
fn hostile_messages_never_panic_the_decoder() {
    run("decode", MUTATIONS, fuzz::decode);
}

#[test]
fn hostile_checkpoints_never_panic_the_reader() {
    run("checkpoint", MUTATIONS, fuzz::checkpoint);
}

#[test]
fn hostile_changelog_chunks_never_panic_the_reader() {
    run("changelog", MUTATIONS, fuzz::changelog_chunk);
}

#[test]
fn hostile_inventories_never_panic_the_loaders() {
    run("inventory", MUTATIONS, fuzz::inventory);
}

#[test]
fn hostile_configurations_never_panic_the_loader() {
    run("config", CONFIG_MUTATIONS, fuzz::config);
}

/// The seeds of the binary formats are made by today's writers; rerun when
/// a format changes: `cargo test --test it write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds/; run by hand when a format or an example changes"]
fn write_fuzz_seeds() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = seed_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    for (i, (profile, text)) in MESSAGES.iter().enumerate() {
        let pick = fuzz::PROFILES.iter().position(|p| p == profile).unwrap() as u8;
        let mut bytes = vec![pick];
        bytes.extend_from_slice(text.as_bytes());
        write("decode", &format!("{i:02}-{profile}.json"), &bytes);
    }

    let cp = state::checkpoint();
    let file = keywatch::checkpoint::format::encode(&cp).unwrap();
    let v1 = std::fs::read(root.join("tests/data/checkpoint-v1.kwc")).unwrap();
    write("checkpoint", "whole-v2", &[[0].as_slice(), &file].concat());
    write(
        "checkpoint",
        "body-v2",
        &[[3].as_slice(), &file[24..]].concat(),
    );
    write("checkpoint", "whole-v1", &[[0].as_slice(), &v1].concat());
    write(
        "checkpoint",
        "body-v1",
        &[[1].as_slice(), &v1[24..]].concat(),
    );

    let chunk = state::chunk(&cp);
    write("changelog", "whole-v3", &[[0].as_slice(), &chunk].concat());
    write(
        "changelog",
        "body-v3",
        &[[5].as_slice(), &chunk[16..]].concat(),
    );
    write("changelog", "not-a-chunk", b"\x00{\"not\":\"a chunk\"}");

    let toml = std::fs::read(root.join("config/inventory.example.toml")).unwrap();
    let csv = std::fs::read(root.join("config/inventory.example.csv")).unwrap();
    write(
        "inventory",
        "example.toml",
        &[[0].as_slice(), &toml].concat(),
    );
    write("inventory", "example.csv", &[[2].as_slice(), &csv].concat());
    write(
        "inventory",
        "keys.json",
        &[[1].as_slice(), INVENTORY_JSON.as_bytes()].concat(),
    );

    write(
        "config",
        "keywatch.toml",
        &std::fs::read(root.join("config/keywatch.toml")).unwrap(),
    );
    write("config", "small.toml", CONFIG_SMALL.as_bytes());
    write("config", "profile.toml", CONFIG_PROFILE.as_bytes());
    for name in ["small.toml", "profile.toml"] {
        let text = std::fs::read_to_string(seed_dir("config").join(name)).unwrap();
        Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A checkpoint and a changelog chunk of a little real state.
mod state {
    use keywatch::changelog::format::{encode_chunk, ChunkHeader, Entry};
    use keywatch::checkpoint::{Checkpoint, Origins};
    use keywatch::config::Config;
    use keywatch::decode::Decoder;
    use keywatch::engine::Engine;
    use std::collections::{BTreeMap, HashMap};

    pub fn checkpoint() -> Checkpoint {
        let engine = Engine::new(&Config::default());
        let decoder = Decoder::for_profile("generic", &BTreeMap::new()).unwrap();
        let mut findings = Vec::new();
        for day in 0..3 {
            for (key, source) in [("AKIAONE", "198.51.100.7"), ("AKIATWO", "2001:db8::9")] {
                let msg = format!(
                    r#"{{"time":{},"key_id":"{key}","principal":"arn:aws:iam::1:user/{key}","source":"{source}","user_agent":"aws-cli/2.15.0","action":"s3:GetObject","region":"eu-west-1","count":2}}"#,
                    1_767_225_600 + day * 86_400
                );
                decoder
                    .decode(msg.as_bytes(), |r| {
                        engine.process(&r.unwrap(), &mut findings)
                    })
                    .unwrap();
            }
        }
        let origins = Origins::default();
        origins.index("audit", 0);
        Checkpoint::capture(&engine, &origins, &HashMap::from([(1, 42)]))
    }

    pub fn chunk(cp: &Checkpoint) -> Vec<u8> {
        let mut entries = Vec::new();
        let mut n = 0;
        for (k, s) in cp.sections.iter().flat_map(|s| &s.keys) {
            entries.extend(postcard::to_stdvec(&Entry::Key(k.clone(), s.clone())).unwrap());
            n += 1;
        }
        for (k, s) in &cp.principals {
            entries.extend(postcard::to_stdvec(&Entry::Principal(k.clone(), s.clone())).unwrap());
            n += 1;
        }
        entries.extend(postcard::to_stdvec(&Entry::Delivered("webhook".into(), 7)).unwrap());
        n += 1;
        let header = ChunkHeader {
            topic: "audit".into(),
            partition: 0,
            snapshot: 1,
            index: 0,
            count: 1,
            resume: 42,
            written_at_ms: 1_767_484_800_000,
            entries: n,
            group: "keywatch".into(),
        };
        encode_chunk(&header, &entries).unwrap()
    }
}

const MESSAGES: &[(&str, &str)] = &[
    (
        "generic",
        r#"{"time":"2026-03-01T10:00:00.5Z","key_id":"AKIAEXAMPLE1","principal":"svc-billing","source":"198.51.100.7","user_agent":"aws-cli/2.15.0 Python/3.11","action":"s3:GetObject","outcome":"failure","error_code":"AccessDenied","region":"eu-west-1","count":3,"extra":{"x":[1,2]}}"#,
    ),
    (
        "generic",
        r#"[{"time":1772359200,"key_id":"k","source":"AWS Internal"},{"time":1772359200123,"key_id":"a\"b\u00e9","outcome":"success","count":"7"},{"time":"2026-01-01T00:00:00Z","key_id":"k","count":0,"source":"2001:db8::1"}]"#,
    ),
    (
        "cloudtrail",
        r#"{"Records":[{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::123456789012:user/alice","accountId":"123456789012","accessKeyId":"AKIAIOSFODNN7EXAMPLE","userName":"alice"},"eventTime":"2024-08-02T08:23:24Z","eventSource":"iam.amazonaws.com","eventName":"CreateUser","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.50","userAgent":"aws-cli/2.17.0 md/Botocore#1.34","errorCode":"AccessDenied","requestParameters":{"userName":"backdoor"},"responseElements":null},{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::123456789012:assumed-role/app/i-0abc","accessKeyId":"ASIAEXAMPLE"},"eventTime":"2024-08-02T08:24:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"eu-west-1","sourceIPAddress":"s3.amazonaws.com","userAgent":"[aws-sdk-go/1.44]"},{"eventVersion":"1.08","userIdentity":{"type":"AWSService","invokedBy":"ec2.amazonaws.com"},"eventTime":"2024-08-02T08:25:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","sourceIPAddress":"ec2.amazonaws.com"}]}"#,
    ),
    (
        "vault",
        r#"{"time":"2024-05-01T12:00:00.223456Z","type":"response","auth":{"accessor":"hmac-sha256:abc","display_name":"approle-ci","entity_id":"e-1"},"request":{"id":"r1","operation":"read","path":"secret/data/db","remote_address":"10.1.2.3","namespace":{"path":"team-a/"},"headers":{"user-agent":["vault-agent/1.15"]}},"response":{"data":{"x":"hmac-sha256:..."}},"error":"1 error occurred: permission denied"}"#,
    ),
    (
        "vault",
        r#"{"time":"2024-05-01T12:00:00.123456Z","type":"request","auth":{"accessor":"hmac-sha256:abc","display_name":"approle-ci","policies":["default"]},"request":{"id":"r1","operation":"read","path":"secret/data/db","remote_address":"10.1.2.3"}}"#,
    ),
    (
        "kubernetes",
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets","verb":"list","user":{"username":"system:serviceaccount:prod:deployer","uid":"u1","groups":["system:serviceaccounts"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=7d3c-11"]}},"sourceIPs":["192.0.2.10","10.0.0.1"],"userAgent":"kubectl/v1.29.1 (linux/amd64)","objectRef":{"resource":"secrets","namespace":"prod","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Failure","code":403},"requestReceivedTimestamp":"2024-05-01T12:00:00.000001Z","stageTimestamp":"2024-05-01T12:00:00.010000Z"}"#,
    ),
    (
        "github",
        r#"{"@timestamp":1714564800000,"_document_id":"x1","action":"git.clone","actor":"octocat","actor_ip":"198.51.100.23","actor_location":{"country_code":"NL"},"hashed_token":"k7Fv2H0S9b3yV1j6cM5eA8Q=","programmatic_access_type":"Fine-grained personal access token","user_agent":"git/2.43.0","org":"acme","repo":"acme/api"}"#,
    ),
    (
        "github",
        r#"[{"created_at":1714564800000,"action":"user.login","actor":"octocat","actor_ip":"198.51.100.23"},{"created_at":"2024-05-01T12:00:00Z","token_id":123,"action":"repo.download_zip","actor":"bot"}]"#,
    ),
];

const INVENTORY_JSON: &str = r#"{"keys":[{"key_id":"AKIAONE","owner":"alice","team":"payments","system":"billing","privilege":"admin","created":"2025-01-01","expires":"2027-01-01T00:00:00Z","last_rotated":1735689600,"last_used":"N/A","allowed_cidrs":["198.51.100.0/24","2001:db8::/32"],"allowed_actions":["s3:Get*","iam:*"],"usage_cap":"100/1h","one_time":false},{"key_id":"vault-provision","owner":"ops","one_time":true}]}"#;

const CONFIG_SMALL: &str = r#"[engine]
max_keys = 1000
learning_period = "1d"
forget_after = "30d"
allowlist_networks = ["10.0.0.0/8"]

[detectors.rate_spike]
bucket = "5m"

[http]
listen = "127.0.0.1:0"
"#;

const CONFIG_PROFILE: &str = r#"[decode]
profile = "myapp"
max_message_bytes = 65536

[decode.profiles.myapp]
extends = "generic"
key_id = ["/credential/id", "/key"]
time = ["/ts"]
only_if = { "/kind" = "use" }
"#;
