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

#[cfg(test)]
mod tests {
    use super::*;

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
