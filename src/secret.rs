//! Secrets in configuration: a literal, `env:NAME` or `file:PATH`. The value
//! is resolved once at load time and never printed: `Debug` and `Serialize`
//! show only where it came from.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A resolved secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    origin: Origin,
}

#[derive(Clone, PartialEq, Eq)]
enum Origin {
    Literal,
    Env(String),
    File(String),
}

/// A secret reference that could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `env:NAME` with `NAME` unset.
    #[error("environment variable `{0}` is not set")]
    EnvMissing(String),
    /// `file:PATH` unreadable.
    #[error("cannot read secret file `{path}`: {reason}")]
    File {
        /// The file named.
        path: String,
        /// Why it could not be read.
        reason: String,
    },
}

impl Secret {
    /// Resolves `env:NAME`, `file:PATH` or a literal.
    pub fn resolve(spec: &str) -> Result<Secret, SecretError> {
        if let Some(name) = spec.strip_prefix("env:") {
            let value =
                std::env::var(name).map_err(|_| SecretError::EnvMissing(name.to_owned()))?;
            return Ok(Secret {
                value,
                origin: Origin::Env(name.to_owned()),
            });
        }
        if let Some(path) = spec.strip_prefix("file:") {
            let value = read_bounded(path).map_err(|reason| SecretError::File {
                path: path.to_owned(),
                reason,
            })?;
            return Ok(Secret {
                value: value.trim_end_matches(['\r', '\n']).to_owned(),
                origin: Origin::File(path.to_owned()),
            });
        }
        Ok(Secret {
            value: spec.to_owned(),
            origin: Origin::Literal,
        })
    }

    /// The secret itself. Call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

/// Largest secret file read: tokens, passwords and keys are far smaller; a
/// path naming a device (`/dev/zero`) or a large file by mistake must fail,
/// not read until memory runs out.
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

fn read_bounded(path: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!(
            "larger than {MAX_SECRET_FILE_BYTES} bytes; a secret file holds only the secret"
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Literal => f.write_str("********"),
            Origin::Env(name) => write!(f, "env:{name} (********)"),
            Origin::File(path) => write!(f, "file:{path} (********)"),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({self})")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = String::deserialize(d)?;
        Secret::resolve(&spec).map_err(serde::de::Error::custom)
    }
}

/// `url` with what may be a credential written into it masked: the
/// password of `user:password@`, and every query value (`?token=...`).
/// Anything that is not a URL with such parts comes back unchanged.
pub fn mask_url(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return url.to_owned();
    };
    if !u.has_host() {
        return url.to_owned();
    }
    let mut changed = false;
    if u.password().is_some() {
        changed |= u.set_password(Some("********")).is_ok();
    }
    if u.query().is_some() {
        let masked: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, _)| (k.into_owned(), "********".to_owned()))
            .collect();
        u.query_pairs_mut().clear().extend_pairs(masked);
        changed = true;
    }
    if changed {
        u.to_string()
    } else {
        url.to_owned()
    }
}

/// Whether a client property (`kafka.properties`) holds a credential by its
/// name: `sasl.password`, `ssl.key.password`, `sasl.jaas.config`,
/// `sasl.oauthbearer.client.secret`, `ssl.key.pem`, ...
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "jaas", ".pem", "token", "credential"]
        .iter()
        .any(|w| name.contains(w))
        || name.ends_with(".key")
}

/// Masks, in a rendered configuration, what a user may have written inline
/// although it is a credential: URLs' passwords and query values anywhere,
/// and `kafka.properties` whose name says they are secret.
pub fn mask_rendered(value: &mut toml::Value) {
    fn walk(v: &mut toml::Value, in_properties: bool) {
        match v {
            toml::Value::String(s) => *s = mask_url(s),
            toml::Value::Array(items) => items.iter_mut().for_each(|i| walk(i, false)),
            toml::Value::Table(t) => {
                for (k, item) in t.iter_mut() {
                    if in_properties && is_secret_property(k) {
                        *item = toml::Value::String("********".to_owned());
                    } else {
                        walk(item, k == "properties");
                    }
                }
            }
            _ => {}
        }
    }
    walk(value, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_credentials_in_urls_and_properties_are_masked() {
        assert_eq!(
            mask_url("https://kw:hunter2@hooks.example.com/x?token=abc&b=1"),
            "https://kw:********@hooks.example.com/x?token=********&b=********"
        );
        assert_eq!(
            mask_url("https://hooks.example.com/x"),
            "https://hooks.example.com/x"
        );
        assert_eq!(mask_url("not a url"), "not a url");
        assert_eq!(mask_url("b1:9093,b2:9093"), "b1:9093,b2:9093");
        for p in [
            "sasl.password",
            "ssl.key.password",
            "sasl.jaas.config",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
        ] {
            assert!(is_secret_property(p), "{p}");
        }
        for p in ["fetch.wait.max.ms", "client.id", "ssl.ca.location"] {
            assert!(!is_secret_property(p), "{p}");
        }
    }

    #[test]
    fn never_shows_the_value() {
        std::env::set_var("KEYWATCH_TEST_SECRET_A", "hunter2");
        let s = Secret::resolve("env:KEYWATCH_TEST_SECRET_A").unwrap();
        assert_eq!(s.expose(), "hunter2");
        for shown in [
            format!("{s}"),
            format!("{s:?}"),
            serde_json::to_string(&s).unwrap(),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("KEYWATCH_TEST_SECRET_A"), "{shown}");
        }
        let lit = Secret::resolve("s3cr3t").unwrap();
        assert!(!format!("{lit:?}").contains("s3cr3t"));
    }

    #[test]
    fn file_and_missing_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc123\n").unwrap();
        let s = Secret::resolve(&format!("file:{}", path.display())).unwrap();
        assert_eq!(s.expose(), "abc123");
        let err = Secret::resolve("env:KEYWATCH_SURELY_UNSET_VAR").unwrap_err();
        assert!(err.to_string().contains("KEYWATCH_SURELY_UNSET_VAR"));
        let err = Secret::resolve("file:/nonexistent/x").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x"));
    }

    #[test]
    fn a_secret_file_is_read_only_up_to_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 1 << 20]).unwrap();
        let err = Secret::resolve(&format!("file:{}", big.display())).unwrap_err();
        assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");
        // A device that never ends fails the same way instead of filling memory.
        let err = Secret::resolve("file:/dev/zero").unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
        let fits = dir.path().join("fits");
        std::fs::write(&fits, vec![b'a'; MAX_SECRET_FILE_BYTES as usize]).unwrap();
        let s = Secret::resolve(&format!("file:{}", fits.display())).unwrap();
        assert_eq!(s.expose().len(), MAX_SECRET_FILE_BYTES as usize);
    }
}
