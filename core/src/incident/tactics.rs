//! The one table from what a finding shows to the MITRE ATT&CK tactic it
//! is a step of. Rows are tried in order and the first match wins, so the
//! specific rows (a `Get…` that reads a secret) come before the wide ones
//! (`Get*` as reconnaissance). A finding's tactic is its detector's when
//! the detector has one (a new network is initial access, whatever call it
//! made: the call is incidental, often the key's usual work) and otherwise
//! its action's (a first `iam:CreateAccessKey` is persistence).
//!
//! Actions are written as the built-in profiles give them: `service:Name`
//! (`iam:CreateAccessKey`), the service being the event source's short name.
//! A `*` in a pattern matches any run of characters; names match
//! without regard to case.

use serde::{Deserialize, Serialize};

use crate::engine::Detector;

/// An ATT&CK enterprise tactic, in the order a cloud intrusion usually runs
/// (GuardDuty's attack sequences read the same way): in with a stolen key,
/// look around, act, stay, get more rights, take secrets, hide, then take
/// or break things. Incidents list their tactics in the order they were
/// first seen; this order only sorts and names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tactic {
    /// TA0001: getting in, here with valid stolen credentials (T1078).
    InitialAccess,
    /// TA0007: finding out who the key is and what it reaches.
    Discovery,
    /// TA0002: running code on what the key reaches.
    Execution,
    /// TA0003: keeping access: new keys, users, login profiles, trust.
    Persistence,
    /// TA0004: more rights: policies attached, roles passed.
    PrivilegeEscalation,
    /// TA0006: reading secrets and passwords.
    CredentialAccess,
    /// TA0005: blinding the logging and detection that would show it.
    DefenseEvasion,
    /// TA0008: reaching other machines.
    LateralMovement,
    /// TA0010: data or copies of it shared out of the account.
    Exfiltration,
    /// TA0040: destroying, encrypting or hijacking resources.
    Impact,
}

impl Tactic {
    /// Name in incidents and alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Tactic::InitialAccess => "initial_access",
            Tactic::Execution => "execution",
            Tactic::Persistence => "persistence",
            Tactic::PrivilegeEscalation => "privilege_escalation",
            Tactic::DefenseEvasion => "defense_evasion",
            Tactic::CredentialAccess => "credential_access",
            Tactic::Discovery => "discovery",
            Tactic::LateralMovement => "lateral_movement",
            Tactic::Exfiltration => "exfiltration",
            Tactic::Impact => "impact",
        }
    }

    /// ATT&CK's id for it.
    pub fn attack_id(self) -> &'static str {
        match self {
            Tactic::InitialAccess => "TA0001",
            Tactic::Execution => "TA0002",
            Tactic::Persistence => "TA0003",
            Tactic::PrivilegeEscalation => "TA0004",
            Tactic::DefenseEvasion => "TA0005",
            Tactic::CredentialAccess => "TA0006",
            Tactic::Discovery => "TA0007",
            Tactic::LateralMovement => "TA0008",
            Tactic::Exfiltration => "TA0010",
            Tactic::Impact => "TA0040",
        }
    }

    /// In a sentence: "privilege escalation".
    pub fn text(self) -> &'static str {
        match self {
            Tactic::InitialAccess => "initial access",
            Tactic::Execution => "execution",
            Tactic::Persistence => "persistence",
            Tactic::PrivilegeEscalation => "privilege escalation",
            Tactic::DefenseEvasion => "defense evasion",
            Tactic::CredentialAccess => "credential access",
            Tactic::Discovery => "discovery",
            Tactic::LateralMovement => "lateral movement",
            Tactic::Exfiltration => "exfiltration",
            Tactic::Impact => "impact",
        }
    }
}

/// What a row matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A finding of this detector, whatever its action.
    Detector(Detector),
    /// An action: `service:Name`, `service:Prefix*`, or `*:Prefix*`.
    Action(&'static str),
}

use Signal::{Action, Detector as D};
use Tactic::*;

/// Signal → tactic, first match wins. The AWS names are CloudTrail's
/// eventName; the calls the Stratus Red Team techniques make are all here.
pub const TACTICS: [(Signal, Tactic); 78] = [
    // Findings that mean "someone else holds the key": initial access with
    // valid credentials (T1078).
    (D(Detector::NewSource), InitialAccess),
    (D(Detector::ListedSource), InitialAccess),
    (D(Detector::ImpossibleTravel), InitialAccess),
    (D(Detector::CloudCredentialOutsideCloud), InitialAccess),
    (D(Detector::SourceFanout), InitialAccess),
    (D(Detector::DormantRevival), InitialAccess),
    (D(Detector::OutsideAllowlist), InitialAccess),
    (D(Detector::UnknownKey), InitialAccess),
    (D(Detector::ExpiredKey), InitialAccess),
    (D(Detector::OneTimeReuse), InitialAccess),
    // Failing permission checks by the hundred: probing what the key may do
    // (T1069, permission groups discovery).
    (D(Detector::ErrorSpike), Discovery),
    (Action("signin:ConsoleLogin"), InitialAccess),
    // Credential access (TA0006): secrets, passwords, decrypted parameters.
    (Action("secretsmanager:GetSecretValue"), CredentialAccess),
    (
        Action("secretsmanager:BatchGetSecretValue"),
        CredentialAccess,
    ),
    (Action("ec2:GetPasswordData"), CredentialAccess),
    (Action("ssm:GetParameter*"), CredentialAccess),
    // Reading a command's output from an instance: how instance credentials
    // are taken (Stratus `ec2-steal-instance-credentials`).
    (Action("ssm:GetCommandInvocation"), CredentialAccess),
    (
        Action("secretmanager:*AccessSecretVersion"),
        CredentialAccess,
    ),
    // Persistence (TA0003): new ways in that outlive the stolen key.
    (Action("iam:CreateAccessKey"), Persistence),
    (Action("iam:CreateUser"), Persistence),
    (Action("iam:CreateLoginProfile"), Persistence),
    (Action("iam:CreateRole"), Persistence),
    (Action("iam:UpdateAssumeRolePolicy"), Persistence),
    (Action("iam:UploadSSHPublicKey"), Persistence),
    (Action("iam:CreateServiceSpecificCredential"), Persistence),
    (Action("iam:CreateSAMLProvider"), Persistence),
    (Action("iam:CreateOpenIDConnectProvider"), Persistence),
    (Action("sts:GetFederationToken"), Persistence),
    (Action("rolesanywhere:Create*"), Persistence),
    (Action("lambda:AddPermission*"), Persistence),
    (Action("lambda:UpdateFunctionCode*"), Persistence),
    (Action("lambda:UpdateFunctionConfiguration*"), Persistence),
    (Action("lambda:PublishLayerVersion*"), Persistence),
    (Action("iam:*CreateServiceAccountKey"), Persistence),
    (Action("iam:*UploadServiceAccountKey"), Persistence),
    // Privilege escalation (TA0004): more rights for what the intruder holds.
    (Action("iam:UpdateLoginProfile"), PrivilegeEscalation),
    (Action("iam:Attach*Policy"), PrivilegeEscalation),
    (Action("iam:Put*Policy"), PrivilegeEscalation),
    (Action("iam:CreatePolicyVersion"), PrivilegeEscalation),
    (Action("iam:SetDefaultPolicyVersion"), PrivilegeEscalation),
    (Action("iam:AddUserToGroup"), PrivilegeEscalation),
    (Action("iam:PassRole"), PrivilegeEscalation),
    (
        Action("cloudresourcemanager:SetIamPolicy"),
        PrivilegeEscalation,
    ),
    (Action("iam:*SetIAMPolicy"), PrivilegeEscalation),
    (
        Action("iamcredentials:GenerateAccessToken"),
        PrivilegeEscalation,
    ),
    // Defense evasion (TA0005): logging and detection blinded.
    (Action("cloudtrail:StopLogging"), DefenseEvasion),
    (Action("cloudtrail:DeleteTrail"), DefenseEvasion),
    (Action("cloudtrail:UpdateTrail"), DefenseEvasion),
    (Action("cloudtrail:PutEventSelectors"), DefenseEvasion),
    (Action("guardduty:Delete*"), DefenseEvasion),
    (Action("guardduty:UpdateDetector"), DefenseEvasion),
    (Action("guardduty:Disassociate*"), DefenseEvasion),
    (Action("config:Stop*"), DefenseEvasion),
    (Action("config:Delete*"), DefenseEvasion),
    (Action("ec2:DeleteFlowLogs"), DefenseEvasion),
    (Action("logs:Delete*"), DefenseEvasion),
    (
        Action("route53resolver:DeleteResolverQueryLog*"),
        DefenseEvasion,
    ),
    (Action("organizations:LeaveOrganization"), DefenseEvasion),
    (Action("securityhub:Disable*"), DefenseEvasion),
    (Action("logging:*DeleteSink"), DefenseEvasion),
    // Exfiltration (TA0010): copies shared out, doors opened.
    (Action("ec2:ModifySnapshotAttribute"), Exfiltration),
    (Action("ec2:ModifyImageAttribute"), Exfiltration),
    (Action("rds:ModifyDBSnapshotAttribute"), Exfiltration),
    (Action("rds:ModifyDBClusterSnapshotAttribute"), Exfiltration),
    (Action("ec2:AuthorizeSecurityGroupIngress"), Exfiltration),
    (Action("s3:PutBucketPolicy"), Exfiltration),
    (Action("s3:PutBucketAcl"), Exfiltration),
    (Action("s3:GetObject"), Exfiltration),
    // Impact (TA0040): deletion, and compute or models run on the victim's bill.
    (Action("s3:DeleteObject*"), Impact),
    (Action("s3:DeleteBucket"), Impact),
    (Action("bedrock:InvokeModel*"), Impact),
    // Execution (TA0002) and lateral movement (TA0008).
    (Action("ssm:SendCommand"), Execution),
    (Action("ssm:StartSession"), Execution),
    (Action("ec2:RunInstances"), Execution),
    (Action("ec2:ModifyInstanceAttribute"), Execution),
    (Action("ec2-instance-connect:Send*"), LateralMovement),
    // Discovery (TA0007): who am I, what is there. Last: the wide patterns.
    (Action("sts:GetCallerIdentity"), Discovery),
    (Action("*:List*"), Discovery),
];

/// The wide reconnaissance prefixes (`Describe*`, `Get*`, `List*`, ...),
/// tried after the table: any service's read of its inventory.
const RECON_PREFIXES: [&str; 4] = ["List", "Describe", "Get", "Search"];

/// The tactic of a detector, whatever its action.
pub fn of_detector(detector: Detector) -> Option<Tactic> {
    TACTICS.iter().find_map(|(signal, tactic)| match signal {
        D(d) if *d == detector => Some(*tactic),
        _ => None,
    })
}

/// The tactic of an action (`service:Name`, or a name alone).
pub fn of_action(action: &str) -> Option<Tactic> {
    let (service, name) = action.split_once(':').unwrap_or(("", action));
    TACTICS
        .iter()
        .find_map(|(signal, tactic)| match signal {
            Action(pattern) if matches(pattern, service, name) => Some(*tactic),
            _ => None,
        })
        .or_else(|| {
            RECON_PREFIXES
                .iter()
                .any(|p| starts_with_ignore_case(name, p))
                .then_some(Discovery)
        })
}

/// The tactics a finding is a step of: its detector's, else its action's.
pub fn of_finding(detector: Detector, action: Option<&str>) -> Vec<Tactic> {
    of_detector(detector)
        .or_else(|| action.and_then(of_action))
        .into_iter()
        .collect()
}

fn matches(pattern: &str, service: &str, name: &str) -> bool {
    let (p_service, p_name) = pattern.split_once(':').expect("patterns are service:name");
    (service.is_empty() || glob(p_service.as_bytes(), service.as_bytes()))
        && glob(p_name.as_bytes(), name.as_bytes())
}

/// `*` matches any run of characters; letters match without regard to case.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((c, rest)) => text
            .split_first()
            .is_some_and(|(t, tail)| t.eq_ignore_ascii_case(c) && glob(rest, tail)),
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}
