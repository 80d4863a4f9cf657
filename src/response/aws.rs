//! `aws_deactivate_key`: IAM `UpdateAccessKey` with `Status=Inactive`, a
//! Query API POST signed with SigV4 (the `aws-sigv4` crate) and sent with
//! reqwest. Deactivating is idempotent: a retry, or the same key again,
//! leaves it `Inactive`.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;

use super::config::AwsConfig;
use super::ActionError;

/// IAM's Query API version.
const IAM_VERSION: &str = "2010-05-08";

/// The form body of `UpdateAccessKey` (`user`: the key's IAM user; without
/// it IAM acts on the caller's own keys).
pub fn update_access_key_body(key_id: &str, user: Option<&str>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "UpdateAccessKey")
        .append_pair("Version", IAM_VERSION)
        .append_pair("AccessKeyId", key_id)
        .append_pair("Status", "Inactive");
    if let Some(user) = user {
        form.append_pair("UserName", user);
    }
    form.finish()
}

/// Sends one signed `UpdateAccessKey`.
pub async fn deactivate(
    client: &reqwest::Client,
    cfg: &AwsConfig,
    key_id: &str,
    user: Option<&str>,
) -> Result<(), ActionError> {
    let body = update_access_key_body(key_id, user);
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let identity = Credentials::new(
        cfg.access_key_id.expose(),
        cfg.secret_access_key.expose(),
        cfg.session_token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "keywatch-config",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&cfg.region)
        .name("iam")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| ActionError::Fatal(format!("signing parameters: {e}")))?
        .into();
    let headers = [("content-type", content_type)];
    let signable = SignableRequest::new(
        "POST",
        cfg.endpoint.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| ActionError::Fatal(format!("signing: {e}")))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| ActionError::Fatal(format!("signing: {e}")))?
        .into_parts();
    let mut request = client
        .post(&cfg.endpoint)
        .header(reqwest::header::CONTENT_TYPE, content_type);
    for (name, value) in instructions.headers() {
        request = request.header(name, value);
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| ActionError::Retryable(format!("IAM unreachable: {e}")))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let code = error_code(&text).unwrap_or("no error code");
    let message = format!("IAM answered {status}: {code}");
    // Throttling and IAM's own failures may pass; anything else (no such
    // key, access denied) will not, however often it is asked.
    if status.is_server_error() || status.as_u16() == 429 || code == "Throttling" {
        Err(ActionError::Retryable(message))
    } else {
        Err(ActionError::Fatal(message))
    }
}

/// The `<Code>` of an IAM error response.
fn error_code(xml: &str) -> Option<&str> {
    let start = xml.find("<Code>")? + "<Code>".len();
    let end = xml[start..].find("</Code>")? + start;
    Some(xml[start..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_key_status_and_user() {
        assert_eq!(
            update_access_key_body("AKIAEXAMPLE", Some("alice+ci")),
            "Action=UpdateAccessKey&Version=2010-05-08&AccessKeyId=AKIAEXAMPLE&Status=Inactive&UserName=alice%2Bci"
        );
        assert!(!update_access_key_body("AKIAEXAMPLE", None).contains("UserName"));
    }

    #[test]
    fn error_codes_are_read_from_the_xml() {
        let xml = "<ErrorResponse><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>x</Message></Error></ErrorResponse>";
        assert_eq!(error_code(xml), Some("NoSuchEntity"));
        assert_eq!(error_code("<html>"), None);
    }
}
