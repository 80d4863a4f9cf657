//! The one table of sensitive actions: calls that mint credentials, change
//! who may do what, blind the logging and monitoring that would show an
//! intruder, or read secrets. `new_action` judges a first such call on every
//! key, however broad its repertoire; `new_identity_sensitive_action` judges
//! them on identities with no history.
//!
//! Each row names the service (the event source's short name: `iam` for
//! `iam.amazonaws.com` or `iam.googleapis.com`) and the action, as the
//! built-in profiles map them: CloudTrail's eventName, Google Cloud's
//! methodName, Azure's Activity Log operation, Okta's eventType. An action
//! given without a service (a flat `action` field with no `service:`
//! prefix, as Azure's and Okta's are) matches on its name alone. Names
//! match without regard to case (Azure writes its operations in capitals
//! in diagnostic exports, in mixed case in the Activity Log API).

use serde::Serialize;

/// Why an action is sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Mints or exposes credentials (access keys, passwords, tokens).
    Credentials,
    /// Changes who may do what: users, policies, trust.
    Permissions,
    /// Stops, deletes or narrows audit logging and threat detection.
    Logging,
    /// Reads stored secrets.
    Secrets,
}

impl Category {
    /// In a sentence: "it mints credentials".
    pub fn text(self) -> &'static str {
        match self {
            Category::Credentials => "it mints or exposes credentials",
            Category::Permissions => "it changes permissions",
            Category::Logging => "it disables or narrows logging or monitoring",
            Category::Secrets => "it reads secrets",
        }
    }
}

use Category::{Credentials, Logging, Permissions, Secrets};

/// Service, action, category.
pub const SENSITIVE: [(&str, &str, Category); 65] = [
    ("iam", "CreateAccessKey", Credentials),
    ("iam", "CreateLoginProfile", Credentials),
    ("iam", "UpdateLoginProfile", Credentials),
    ("iam", "CreateServiceSpecificCredential", Credentials),
    ("iam", "UploadSSHPublicKey", Credentials),
    ("sts", "GetFederationToken", Credentials),
    ("ec2", "GetPasswordData", Credentials),
    ("iam", "CreateUser", Permissions),
    ("iam", "AttachUserPolicy", Permissions),
    ("iam", "AttachRolePolicy", Permissions),
    ("iam", "AttachGroupPolicy", Permissions),
    ("iam", "PutUserPolicy", Permissions),
    ("iam", "PutRolePolicy", Permissions),
    ("iam", "PutGroupPolicy", Permissions),
    ("iam", "UpdateAssumeRolePolicy", Permissions),
    ("iam", "CreatePolicyVersion", Permissions),
    ("iam", "SetDefaultPolicyVersion", Permissions),
    ("iam", "AddUserToGroup", Permissions),
    ("kms", "PutKeyPolicy", Permissions),
    ("s3", "PutBucketPolicy", Permissions),
    ("cloudtrail", "StopLogging", Logging),
    ("cloudtrail", "DeleteTrail", Logging),
    ("cloudtrail", "UpdateTrail", Logging),
    ("cloudtrail", "PutEventSelectors", Logging),
    ("guardduty", "DeleteDetector", Logging),
    ("guardduty", "UpdateDetector", Logging),
    ("guardduty", "DisassociateFromMasterAccount", Logging),
    ("guardduty", "CreateIPSet", Logging),
    ("config", "StopConfigurationRecorder", Logging),
    ("config", "DeleteConfigurationRecorder", Logging),
    ("config", "DeleteDeliveryChannel", Logging),
    ("ec2", "DeleteFlowLogs", Logging),
    ("logs", "DeleteLogGroup", Logging),
    ("logs", "DeleteLogStream", Logging),
    ("securityhub", "DisableSecurityHub", Logging),
    ("access-analyzer", "DeleteAnalyzer", Logging),
    ("secretsmanager", "GetSecretValue", Secrets),
    ("secretsmanager", "BatchGetSecretValue", Secrets),
    ("ssm", "GetParametersByPath", Secrets),
    ("iam", "CreateSAMLProvider", Permissions),
    // Google Cloud (the `gcp` profile: the service's short name, the
    // audit log's methodName).
    (
        "iam",
        "google.iam.admin.v1.CreateServiceAccountKey",
        Credentials,
    ),
    (
        "iam",
        "google.iam.admin.v1.UploadServiceAccountKey",
        Credentials,
    ),
    ("iamcredentials", "GenerateAccessToken", Credentials),
    ("iamcredentials", "SignJwt", Credentials),
    ("cloudresourcemanager", "SetIamPolicy", Permissions),
    ("iam", "google.iam.admin.v1.SetIAMPolicy", Permissions),
    ("iam", "google.iam.admin.v1.CreateRole", Permissions),
    ("iam", "google.iam.admin.v1.UpdateRole", Permissions),
    (
        "logging",
        "google.logging.v2.ConfigServiceV2.DeleteSink",
        Logging,
    ),
    (
        "logging",
        "google.logging.v2.ConfigServiceV2.UpdateSink",
        Logging,
    ),
    (
        "logging",
        "google.logging.v2.ConfigServiceV2.DeleteBucket",
        Logging,
    ),
    (
        "secretmanager",
        "google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion",
        Secrets,
    ),
    // Azure Activity Log operations (the `azure` profile: a flat action,
    // matched by name without regard to case).
    (
        "azure",
        "Microsoft.Authorization/roleAssignments/write",
        Permissions,
    ),
    (
        "azure",
        "Microsoft.Authorization/roleDefinitions/write",
        Permissions,
    ),
    (
        "azure",
        "Microsoft.KeyVault/vaults/accessPolicies/write",
        Permissions,
    ),
    (
        "azure",
        "Microsoft.Insights/diagnosticSettings/delete",
        Logging,
    ),
    (
        "azure",
        "Microsoft.Insights/diagnosticSettings/write",
        Logging,
    ),
    ("azure", "Microsoft.Web/sites/config/list/action", Secrets),
    (
        "azure",
        "Microsoft.Storage/storageAccounts/listKeys/action",
        Credentials,
    ),
    // Okta System Log event types (the `okta` profile).
    ("okta", "system.api_token.create", Credentials),
    ("okta", "user.account.reset_password", Credentials),
    ("okta", "user.account.privilege.grant", Permissions),
    ("okta", "group.privilege.grant", Permissions),
    ("okta", "system.log_stream.lifecycle.deactivate", Logging),
    ("okta", "system.log_stream.lifecycle.delete", Logging),
];

/// Why `action` of `service` is sensitive, if it is.
pub fn category(service: Option<&str>, action: &str) -> Option<Category> {
    SENSITIVE
        .iter()
        .find(|(s, a, _)| a.eq_ignore_ascii_case(action) && service.is_none_or(|svc| svc == *s))
        .map(|r| r.2)
}

/// The table's actions as `service:Action`, for evidence.
pub fn names() -> Vec<String> {
    SENSITIVE
        .iter()
        .map(|(s, a, _)| format!("{s}:{a}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_match_by_service_and_name() {
        assert_eq!(
            category(Some("cloudtrail"), "StopLogging"),
            Some(Category::Logging)
        );
        assert_eq!(category(Some("iam"), "CreateAccessKey"), Some(Credentials));
        assert_eq!(category(None, "GetSecretValue"), Some(Secrets));
        // Same name, other service: not the sensitive call.
        assert_eq!(category(Some("s3"), "CreateUser"), None);
        assert_eq!(category(Some("s3"), "GetObject"), None);
    }

    #[test]
    fn other_providers_sensitive_calls_are_in_the_table() {
        assert_eq!(
            category(Some("iam"), "google.iam.admin.v1.CreateServiceAccountKey"),
            Some(Credentials)
        );
        assert_eq!(
            category(Some("cloudresourcemanager"), "SetIamPolicy"),
            Some(Permissions)
        );
        assert_eq!(
            category(None, "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE"),
            Some(Permissions)
        );
        assert_eq!(category(None, "system.api_token.create"), Some(Credentials));
        // Reading an object is not a secret's read, on any provider.
        assert_eq!(category(Some("storage"), "storage.objects.get"), None);
    }

    #[test]
    fn every_row_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for (s, a, _) in SENSITIVE {
            assert!(seen.insert((s, a)), "{s}:{a} twice");
        }
    }
}
