//! Fetching a package from an npm registry: its abbreviated metadata for
//! the latest version's tarball and integrity, the tarball checked against
//! that SHA-512 before anything in it is read, and the files in it.

use std::io::Read;

use anyhow::{bail, Context};
use base64::Engine as _;
use sha2::{Digest, Sha512};

/// The files of one version of a package.
pub struct Package {
    /// Its version.
    pub version: String,
    /// Its files under `package/`, by name (top level only).
    pub files: Vec<(String, Vec<u8>)>,
    /// The `license` its package.json declares.
    pub licence: Option<String>,
    /// Its licence and attribution files, concatenated.
    pub licence_text: String,
}

/// GETs `url`, refusing a body larger than `max` bytes.
pub async fn get(client: &reqwest::Client, url: &str, max: u64) -> anyhow::Result<Vec<u8>> {
    get_with(client, url, max, None).await
}

async fn get_with(
    client: &reqwest::Client,
    url: &str,
    max: u64,
    accept: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    let mut req = client.get(url);
    if let Some(a) = accept {
        req = req.header(reqwest::header::ACCEPT, a);
    }
    let mut resp = req.send().await.with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        bail!("GET {url}: {}", resp.status());
    }
    if resp.content_length().is_some_and(|n| n > max) {
        bail!("GET {url}: larger than {max} bytes");
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.with_context(|| format!("GET {url}"))? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > max {
            bail!("GET {url}: larger than {max} bytes");
        }
    }
    Ok(body)
}

/// The latest version of `package` from the registry at `registry`.
pub async fn fetch(
    client: &reqwest::Client,
    registry: &str,
    package: &str,
    max: u64,
) -> anyhow::Result<Package> {
    let url = format!(
        "{}/{}",
        registry.trim_end_matches('/'),
        package.replace('/', "%2f")
    );
    let meta = get_with(
        client,
        &url,
        64 << 20,
        Some("application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8"),
    )
    .await?;
    let meta: serde_json::Value =
        serde_json::from_slice(&meta).with_context(|| format!("{url}: not JSON"))?;
    let version = meta["dist-tags"]["latest"]
        .as_str()
        .with_context(|| format!("{url}: no dist-tags.latest"))?
        .to_owned();
    let dist = &meta["versions"][&version]["dist"];
    let tarball = dist["tarball"]
        .as_str()
        .with_context(|| format!("{url}: no tarball for {version}"))?;
    let integrity = dist["integrity"].as_str().with_context(|| {
        format!("{url}: no integrity for {package}@{version}; an unverified download is refused")
    })?;
    let body = get(client, tarball, max).await?;
    verify(integrity, &body).with_context(|| format!("{package}@{version} from {tarball}"))?;
    let mut pkg =
        unpack(&body).with_context(|| format!("{package}@{version}: reading the tarball"))?;
    pkg.version = version;
    Ok(pkg)
}

/// Checks `body` against a Subresource Integrity string's SHA-512.
fn verify(integrity: &str, body: &[u8]) -> anyhow::Result<()> {
    let expected = integrity
        .split_whitespace()
        .find_map(|h| h.strip_prefix("sha512-"))
        .context(
            "the registry's integrity has no sha512 hash; an unverified download is refused",
        )?;
    let actual = base64::engine::general_purpose::STANDARD.encode(Sha512::digest(body));
    if actual != expected {
        bail!("integrity check failed: the tarball's SHA-512 is not the registry's");
    }
    Ok(())
}

/// The top-level files of a package tarball (`package/NAME`).
fn unpack(tgz: &[u8]) -> anyhow::Result<Package> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let mut files = Vec::new();
    let mut licence = None;
    let mut licence_text = String::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.into_owned();
        let mut parts = path.components();
        let (Some(_top), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let name = name.as_os_str().to_string_lossy().into_owned();
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes)?;
        if name == "package.json" {
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            licence = json["license"].as_str().map(str::to_owned);
        } else if name.contains("LICENSE") || name == "MODIFICATIONS" {
            licence_text.push_str(&format!(
                "== {name}\n{}\n\n",
                String::from_utf8_lossy(&bytes).trim_end()
            ));
        }
        files.push((name, bytes));
    }
    Ok(Package {
        version: String::new(),
        files,
        licence,
        licence_text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tarball_that_is_not_the_registrys_is_refused() {
        let body = b"the tarball";
        let good = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(Sha512::digest(body))
        );
        assert!(verify(&good, body).is_ok());
        let err = verify(&good, b"another tarball").unwrap_err().to_string();
        assert!(err.contains("integrity"), "{err}");
        let err = verify("sha1-abc", body).unwrap_err().to_string();
        assert!(err.contains("unverified"), "{err}");
    }
}
