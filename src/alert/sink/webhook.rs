//! `webhook`: the alert JSON POSTed as is, signed per the Standard Webhooks
//! spec (<https://www.standardwebhooks.com/>): `webhook-id` is the alert id
//! (the same on every retry, so receivers de-duplicate), `webhook-timestamp`
//! the attempt's Unix time, and `webhook-signature` is
//! `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::check::check_url;
use super::{http_client, send, DeliveryError, Sink, SinkSetup};
use crate::alert::format::AlertFormat;
use crate::alert::shape::EncodedAlert;
use crate::secret::Secret;
use keywatch_core::types::{invalid, ConfigError};

/// `type = "webhook"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST (`http://` or `https://`).
    pub url: String,
    /// Signing secret: `whsec_<base64>` (the Standard Webhooks form) or any
    /// string, best given as `env:NAME` or `file:PATH`. None: unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Extra request headers (`Authorization = "env:HOOK_TOKEN"`); values are
    /// secrets, never printed.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
}

/// A webhook secret's signing key: `whsec_<base64>` decoded, as the
/// Standard Webhooks spec says; any other string is used as its bytes.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, base64::DecodeError> {
    match secret.strip_prefix("whsec_") {
        Some(encoded) => BASE64.decode(encoded),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

impl WebhookConfig {
    /// Checks this sink's own keys, under `at` (`alerts.sinks[i]`).
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        check_url(&format!("{at}.url"), &self.url)?;
        if let Some(secret) = &self.secret {
            if let Err(e) = signing_key(secret.expose()) {
                return Err(invalid(
                    &format!("{at}.secret"),
                    secret,
                    format!("the part after `whsec_` must be base64 ({e})"),
                ));
            }
        }
        for (name, value) in &self.headers {
            let key = format!("{at}.headers.{name}");
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(
                    &key,
                    format!("{name:?}"),
                    "not a valid header name",
                ));
            }
            if reqwest::header::HeaderValue::from_str(value.expose()).is_err() {
                return Err(invalid(
                    &key,
                    value,
                    "not a valid header value (control characters or non-ASCII)",
                ));
            }
        }
        Ok(())
    }
}

/// A Standard Webhooks signing key.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// From the configured secret ([`signing_key`]).
    pub fn parse(secret: &str) -> Result<SigningKey, base64::DecodeError> {
        signing_key(secret).map(SigningKey)
    }

    /// The `webhook-signature` value for one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

/// A Standard Webhooks message: `body` as JSON with `webhook-id` `id`, the
/// attempt's `webhook-timestamp`, and `webhook-signature` when keyed. The
/// one shape every signed POST keywatch makes (alerts, reviews, response
/// actions) takes.
pub fn standard_webhook(
    request: reqwest::RequestBuilder,
    id: &str,
    key: Option<&SigningKey>,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let timestamp = chrono::Utc::now().timestamp();
    let mut request = request
        .header(CONTENT_TYPE, "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp);
    if let Some(key) = key {
        request = request.header("webhook-signature", key.sign(id, timestamp, &body));
    }
    request.body(body)
}

/// POSTs alerts to one URL.
pub struct WebhookSink {
    client: reqwest::Client,
    url: reqwest::Url,
    key: Option<SigningKey>,
    headers: HeaderMap,
    format: AlertFormat,
}

impl WebhookSink {
    /// From `type = "webhook"` (validated with the configuration).
    pub fn new(cfg: &WebhookConfig, setup: &SinkSetup<'_>) -> anyhow::Result<WebhookSink> {
        let key = match &cfg.secret {
            Some(secret) => Some(SigningKey::parse(secret.expose()).map_err(|e| {
                anyhow::anyhow!("`secret`: the part after whsec_ is not base64: {e}")
            })?),
            None => None,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let mut value = HeaderValue::from_str(value.expose())?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_bytes(name.as_bytes())?, value);
        }
        Ok(WebhookSink {
            client: http_client(setup.cfg.timeout.0)?,
            url: reqwest::Url::parse(&cfg.url)?,
            key,
            headers,
            format: setup.cfg.format,
        })
    }
}

impl Sink for WebhookSink {
    async fn deliver(&self, alert: &EncodedAlert) -> Result<(), DeliveryError> {
        let body = self.format.render(alert).as_bytes().to_vec();
        let request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone());
        send(standard_webhook(
            request,
            alert.id(),
            self.key.as_ref(),
            body,
        ))
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_spec_example() {
        // The example in the Standard Webhooks specification.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            key.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn plain_secrets_are_their_bytes() {
        let plain = SigningKey::parse("not-base64!").unwrap();
        let same = SigningKey::parse(&format!("whsec_{}", BASE64.encode("not-base64!"))).unwrap();
        assert_eq!(plain.sign("a", 1, b"{}"), same.sign("a", 1, b"{}"));
        assert!(SigningKey::parse("whsec_***").is_err());
    }
}
