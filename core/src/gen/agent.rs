//! User agents: the SDK and CLI strings keys send, with the minor version
//! upgrades real fleets go through, and attacker tooling.

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// How an SDK's version moves when it is upgraded.
#[derive(Debug, Clone, Copy)]
enum Bump {
    Patch,
    Minor,
}

/// A user-agent family: a template with `{v}` for the version (`{p}` for
/// its patch number alone).
struct AgentFamily {
    template: &'static str,
    version: (u32, u32, u32),
    bump: Bump,
}

const fn family(template: &'static str, version: (u32, u32, u32), bump: Bump) -> AgentFamily {
    AgentFamily {
        template,
        version,
        bump,
    }
}

static SERVER_AGENTS: [AgentFamily; 6] = [
    family(
        "aws-cli/{v} Python/3.11.6 Linux/5.10.205-195.807.amzn2.x86_64 exe/x86_64.amzn.2 prompt/off command/s3.cp",
        (2, 15, 0),
        Bump::Patch,
    ),
    family(
        "Boto3/{v} Python/3.11.6 Linux/5.10.205-195.807.amzn2.x86_64 Botocore/1.31.{p}",
        (1, 28, 57),
        Bump::Patch,
    ),
    family(
        "aws-sdk-go-v2/{v} os/linux lang/go#1.21.5 md/GOOS#linux md/GOARCH#amd64",
        (1, 24, 0),
        Bump::Patch,
    ),
    family(
        "aws-sdk-java/{v} Linux/5.10.205-195.807.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.9+8-LTS Java/17.0.9 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/legacy",
        (2, 21, 40),
        Bump::Patch,
    ),
    family(
        "aws-sdk-js/{v} ua/2.0 os/linux#5.10.205-195.807.amzn2.x86_64 lang/js md/nodejs#20.10.0",
        (3, 485, 0),
        Bump::Minor,
    ),
    family(
        "aws-sdk-dotnet-coreclr/{v} aws-sdk-dotnet-core/3.7.300.29 .NET_Core/8.0.0 OS/Linux_5.10.205-195.807.amzn2.x86_64",
        (3, 7, 300),
        Bump::Patch,
    ),
];

static CI_AGENTS: [AgentFamily; 2] = [
    family(
        "APN/1.0 HashiCorp/1.0 Terraform/1.6.6 (+https://www.terraform.io) terraform-provider-aws/{v} (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go/1.49.4 (go1.21.5; linux; amd64)",
        (5, 31, 0),
        Bump::Minor,
    ),
    family(
        "aws-cli/{v} Python/3.11.6 Linux/6.2.0-1018-azure exe/x86_64.ubuntu.22 prompt/off command/deploy",
        (2, 15, 4),
        Bump::Patch,
    ),
];

static LAPTOP_AGENTS: [AgentFamily; 1] = [family(
    "aws-cli/{v} Python/3.11.6 Darwin/23.2.0 exe/x86_64 prompt/off command/s3.ls",
    (2, 15, 1),
    Bump::Patch,
)];

/// Where a key's client software comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AgentKind {
    /// SDKs and the CLI on servers.
    Server,
    /// Infrastructure tooling in a pipeline.
    Pipeline,
    /// The CLI on a laptop.
    Laptop,
}

/// The user-agent strings one key sends over the scenario: `bumps + 1`
/// versions of one family, each a minor upgrade of the one before.
pub(crate) fn agent_versions(kind: AgentKind, bumps: usize, rng: &mut SmallRng) -> Vec<String> {
    let families: &[AgentFamily] = match kind {
        AgentKind::Server => &SERVER_AGENTS,
        AgentKind::Pipeline => &CI_AGENTS,
        AgentKind::Laptop => &LAPTOP_AGENTS,
    };
    let fam = families.choose(rng).expect("every agent kind has families");
    let (major, mut minor, mut patch) = fam.version;
    match fam.bump {
        Bump::Patch => patch += rng.gen_range(0..4),
        Bump::Minor => minor += rng.gen_range(0..4),
    }
    let mut out = Vec::with_capacity(bumps + 1);
    for _ in 0..=bumps {
        out.push(
            fam.template
                .replace("{v}", &format!("{major}.{minor}.{patch}"))
                .replace("{p}", &patch.to_string()),
        );
        match fam.bump {
            Bump::Patch => patch += 1,
            Bump::Minor => minor += 1,
        }
    }
    out
}

/// What attackers' tooling sends.
pub(crate) static ATTACKER_AGENTS: [&str; 4] = [
    "python-requests/2.31.0",
    "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.5.0-kali3-amd64 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.0",
    "aws-cli/2.13.25 Python/3.11.5 Linux/6.5.0-kali3-amd64 exe/x86_64.kali.2023 prompt/off command/sts.get-caller-identity",
    "curl/7.88.1",
];
