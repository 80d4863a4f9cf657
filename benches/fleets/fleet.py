#!/usr/bin/env python3
"""An independent fleet generator for evaluating keywatch (generic profile).

    python3 benches/fleets/fleet.py --seed N --keys 120 --days 50 --out DIR \
        [--kinds k1,k2,...] [--families f1,f2,...|none] [--start 2026-09-15T00:00:00Z]

writes DIR/events.jsonl (sorted by time) and DIR/truth.json. Pure Python 3.11,
standard library only; everything follows from --seed.

It shares no code or parameters with keywatch's own generator (src/gen), which
keywatch was tuned on. Each key is one of 16 benign *kinds* whose parameters
(rates, hours, time zones, pool sizes) are drawn at random per key; 1-3 role
keys (hourly STS sessions) come on top. Eleven attack families are then
planted, each on a key of its own with at least 21 days of history. One of
them, stolen_key_blending_in, is the careful thief: only the network is new
(the key's own calls, its own client), so it measures what a new network
alone is worth on each kind of key.

The default start (2026-09-15) puts four DST transitions inside a 50-day span
(Pacific/Auckland 27 Sep, Australia/Sydney 4 Oct, Europe 25 Oct, North America
1 Nov), two month ends (30 Sep, 31 Oct) and two month starts (1 Oct, 1 Nov).

Address space: benign traffic and attackers use disjoint first octets, so an
attacker network is never a /16 any benign key used.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time as _time
import zlib
from bisect import bisect_left
from collections import Counter
from datetime import date as Date
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from operator import itemgetter
from zoneinfo import ZoneInfo

GENERATOR_VERSION = 1
DEFAULT_START = "2026-09-15T00:00:00Z"
SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR

KINDS = [
    "office_person", "mobile_person", "vpn_person", "serverless", "nat_workload",
    "ci_runner", "nightly_job", "weekly_job", "monthly_job", "growth", "month_end",
    "deploy_key", "ipv6_privacy", "traveller", "sparse", "rotation",
]
EXTRA_KINDS = ["role_session"]  # 1-3 per fleet, on top of --keys

FAMILIES = {
    "stolen_key_new_network": "new_source",
    "burst": "rate_spike",
    "dormant_revival": "dormant_revival",
    "error_storm": "error_spike",
    "fanout": "source_fanout",
    "scope_creep": "new_action",
    "ramp": "rate_spike",
    "stolen_sessions": "new_source",
    "new_identity": "new_identity_sensitive_action",
    "broad_key_sensitive": "new_action",
    "stolen_key_blending_in": "new_source",
}
_GENERAL = [k for k in KINDS if k not in ("monthly_job", "sparse")]
# Which kinds each family may be planted on (monthly/sparse never: the signal
# is undefined there). scope_creep needs a small stable action set, ramp a
# steady hourly rate, broad_key_sensitive 40+ actions (infra-as-code).
ELIGIBLE = {
    "stolen_key_new_network": _GENERAL,
    "burst": _GENERAL,
    "dormant_revival": [k for k in _GENERAL if k != "rotation"],
    "error_storm": _GENERAL,
    "fanout": _GENERAL,
    "scope_creep": ["serverless", "nat_workload", "ci_runner", "nightly_job", "weekly_job",
                    "growth", "month_end", "ipv6_privacy", "rotation"],
    "ramp": ["nat_workload", "growth", "month_end", "ipv6_privacy", "rotation", "serverless"],
    "stolen_sessions": ["role_session"],
    "new_identity": [],
    "broad_key_sensitive": ["deploy_key"],
    "stolen_key_blending_in": _GENERAL,
}

# ---------------------------------------------------------------- address space

ATTACKER_OCTETS = [5, 23, 31, 37, 45, 62, 92, 94, 141, 176, 178, 185, 188, 193, 194, 195,
                   212, 213, 217]
COUNTRIES = {
    "US": (["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"],
           [24, 67, 68, 71, 73, 75, 76, 96, 98, 99, 108, 174]),
    "CA": (["America/Toronto", "America/Vancouver"], [70, 142, 173, 184]),
    "GB": (["Europe/London"], [81, 82, 86, 90, 109]),
    "DE": (["Europe/Berlin"], [77, 79, 84, 87, 91, 93]),
    "FR": (["Europe/Paris"], [78, 80, 83, 88]),
    "NL": (["Europe/Amsterdam"], [77, 80, 83, 84, 86]),
    "JP": (["Asia/Tokyo"], [60, 106, 114, 118, 126, 133, 153]),
    "IN": (["Asia/Kolkata"], [49, 103, 106, 117, 122]),
    "AU": (["Australia/Sydney", "Australia/Melbourne"], [1, 58, 101, 110, 120, 121]),
    "NZ": (["Pacific/Auckland"], [115, 121, 122, 125]),
    "BR": (["America/Sao_Paulo"], [177, 179, 186, 187, 189, 191, 201]),
    "CL": (["America/Santiago"], [152, 181, 190, 200]),
    "SG": (["Asia/Singapore"], [116, 118, 175]),
}
# Countries people live in (weights); the rest are travel destinations too.
HOME_COUNTRIES = ["US", "US", "US", "CA", "GB", "DE", "DE", "FR", "NL", "JP", "IN", "AU",
                  "NZ", "BR", "CL"]
BUSINESS_OCTETS = [12, 38, 63, 64, 65, 66, 199, 204, 205, 206, 207, 208, 216]
VPN_OCTETS = [89, 138, 143, 149, 154, 156, 169, 198, 209]
CLOUD_OCTETS = {
    "aws": [3, 13, 15, 18, 34, 35, 44, 50, 52, 54],
    "gcp": [34, 35, 104, 130, 136, 146],
    "azure": [4, 20, 40, 51, 52, 137, 168],
}
_benign = set(BUSINESS_OCTETS) | set(VPN_OCTETS)
for _c in COUNTRIES.values():
    _benign |= set(_c[1])
for _c in CLOUD_OCTETS.values():
    _benign |= set(_c)
assert not (_benign & set(ATTACKER_OCTETS)), _benign & set(ATTACKER_OCTETS)

AWS_REGIONS = ["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1",
               "ap-northeast-1", "ap-southeast-2", "ap-south-1", "sa-east-1"]
GLOBAL_SERVICES = {"iam", "route53", "cloudfront", "organizations", "ce"}


class Nets:
    """Allocates /16s once per purpose (so unrelated groups never share one)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used16: set[tuple[int, int]] = set()
        self.isp: dict[str, list] = {}
        self.carriers: dict[str, list] = {}
        self.cloud: dict[tuple[str, str], list] = {}
        self.runner16: dict[str, list] = {}
        self.vpn_providers: list[list[str]] = []
        self.biz16: list = []

    def alloc16(self, octets) -> tuple[int, int]:
        while True:
            a = self.rng.choice(octets)
            b = self.rng.randint(0, 255)
            if a in (10, 127) or (a, b) in self.used16:
                continue
            self.used16.add((a, b))
            return (a, b)

    def p24(self, b16, rng) -> str:
        return f"{b16[0]}.{b16[1]}.{rng.randint(0, 255)}"

    @staticmethod
    def host(p24: str, rng) -> str:
        return f"{p24}.{rng.randint(2, 254)}"

    def isp16s(self, country):
        if country not in self.isp:
            self.isp[country] = [self.alloc16(COUNTRIES[country][1]) for _ in range(5)]
        return self.isp[country]

    def residential(self, country, rng) -> str:
        return self.p24(rng.choice(self.isp16s(country)), rng)

    def carrier(self, country, rng) -> list:
        if country not in self.carriers:
            self.carriers[country] = [
                [self.alloc16(COUNTRIES[country][1]) for _ in range(self.rng.randint(2, 4))]
                for _ in range(2)]
        return rng.choice(self.carriers[country])

    def cloud16s(self, provider, region):
        key = (provider, region)
        if key not in self.cloud:
            octs = self.rng.sample(CLOUD_OCTETS[provider], self.rng.randint(2, 4))
            self.cloud[key] = [self.alloc16(octs) for _ in range(self.rng.randint(6, 14))]
        return self.cloud[key]

    def cloud24(self, provider, region, rng) -> str:
        return self.p24(rng.choice(self.cloud16s(provider, region)), rng)

    def runner24s(self, provider, rng, n) -> list[str]:
        if provider not in self.runner16:
            self.runner16[provider] = [self.alloc16(CLOUD_OCTETS[provider]) for _ in range(3)]
        return [self.p24(rng.choice(self.runner16[provider]), rng) for _ in range(n)]

    def vpn_provider(self, rng) -> list[str]:
        if not self.vpn_providers:
            for _ in range(self.rng.randint(2, 3)):
                b16s = [self.alloc16(VPN_OCTETS) for _ in range(self.rng.randint(2, 3))]
                self.vpn_providers.append(
                    [self.p24(self.rng.choice(b16s), self.rng) for _ in range(self.rng.randint(8, 20))])
        return rng.choice(self.vpn_providers)

    def business24(self, rng) -> str:
        if len(self.biz16) < 6 or rng.random() < 0.3:
            self.biz16.append(self.alloc16(BUSINESS_OCTETS))
        return self.p24(rng.choice(self.biz16), rng)

    def attacker24(self, rng) -> str:
        # Attacker space is never allocated to benign groups (disjoint octets).
        return f"{rng.choice(ATTACKER_OCTETS)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}"


# ---------------------------------------------------------------- actions

PERSON_ACTIONS = [
    "s3:ListBuckets", "s3:GetBucketLocation", "s3:ListObjects", "s3:GetObject", "s3:PutObject",
    "s3:GetBucketPolicy", "ec2:DescribeInstances", "ec2:DescribeSecurityGroups",
    "ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeImages", "ec2:DescribeVolumes",
    "ec2:DescribeInstanceStatus", "cloudwatch:GetMetricData", "cloudwatch:DescribeAlarms",
    "cloudwatch:ListMetrics", "logs:DescribeLogGroups", "logs:DescribeLogStreams",
    "logs:FilterLogEvents", "logs:GetLogEvents", "logs:StartQuery", "logs:GetQueryResults",
    "iam:GetUser", "iam:ListRoles", "iam:GetRole", "iam:ListAttachedRolePolicies",
    "lambda:ListFunctions", "lambda:GetFunction", "lambda:Invoke", "rds:DescribeDBInstances",
    "rds:DescribeDBClusters", "dynamodb:ListTables", "dynamodb:DescribeTable", "dynamodb:Query",
    "dynamodb:Scan", "sts:GetCallerIdentity", "ecs:ListClusters", "ecs:DescribeServices",
    "ecs:ListTasks", "ecs:DescribeTasks", "cloudformation:DescribeStacks",
    "cloudformation:ListStacks", "ssm:GetParameter", "ssm:DescribeParameters",
    "kms:ListAliases", "sns:ListTopics", "sqs:ListQueues", "sqs:GetQueueAttributes",
    "elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTargetHealth",
    "route53:ListHostedZones", "route53:ListResourceRecordSets", "cloudtrail:LookupEvents",
    "ce:GetCostAndUsage", "ecr:DescribeRepositories", "ecr:DescribeImages",
    "athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults",
    "glue:GetTables", "glue:GetDatabases", "eks:ListClusters", "eks:DescribeCluster",
]
SERVICE_THEMES = {
    "objects": ["s3:GetObject", "s3:PutObject", "s3:HeadObject", "s3:ListObjects",
                "s3:DeleteObject", "s3:CopyObject"],
    "table": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem",
              "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem"],
    "queue": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage",
              "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"],
    "stream": ["kinesis:PutRecords", "kinesis:GetRecords", "kinesis:GetShardIterator",
               "kinesis:DescribeStream"],
    "notify": ["sns:Publish", "ses:SendEmail", "ses:SendRawEmail"],
    "crypto": ["kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt"],
    "config": ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"],
    "metrics": ["cloudwatch:PutMetricData", "logs:PutLogEvents", "logs:CreateLogStream"],
    "identity": ["sts:GetCallerIdentity"],
    "warehouse": ["athena:StartQueryExecution", "athena:GetQueryExecution",
                  "athena:GetQueryResults", "glue:GetTable", "glue:GetPartitions",
                  "glue:BatchCreatePartition"],
    "compute": ["ec2:DescribeInstances", "ec2:DescribeTags", "autoscaling:DescribeAutoScalingGroups",
                "ec2:CreateSnapshot", "ec2:DescribeSnapshots", "ec2:DeleteSnapshot"],
}
CI_ACTIONS = [
    "ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer", "s3:PutObject", "s3:GetObject", "s3:ListObjects",
    "sts:GetCallerIdentity", "codeartifact:GetAuthorizationToken",
    "codeartifact:GetRepositoryEndpoint", "ssm:GetParameter", "cloudfront:CreateInvalidation",
]
IAC_ACTIONS = [
    "iam:PassRole", "iam:GetRole", "iam:ListAttachedRolePolicies", "iam:GetRolePolicy",
    "iam:ListRolePolicies", "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListInstanceProfilesForRole",
    "ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition", "ecs:UpdateService",
    "ecs:DescribeServices", "ecs:DescribeTaskDefinition", "ecs:DescribeClusters", "ecs:ListTasks",
    "ecs:DescribeTasks", "ecs:TagResource", "cloudformation:CreateChangeSet",
    "cloudformation:DescribeChangeSet", "cloudformation:ExecuteChangeSet",
    "cloudformation:DescribeStacks", "cloudformation:DescribeStackEvents",
    "cloudformation:GetTemplate", "cloudformation:ListStackResources",
    "cloudformation:DeleteChangeSet", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets",
    "ec2:DescribeVpcs", "ec2:DescribeSecurityGroupRules", "ec2:AuthorizeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupIngress", "ec2:CreateTags", "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeLaunchTemplates", "ec2:DescribeLaunchTemplateVersions",
    "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeRules", "elasticloadbalancing:DescribeTargetGroupAttributes",
    "elasticloadbalancing:DescribeTags", "route53:ListResourceRecordSets",
    "route53:ChangeResourceRecordSets", "route53:GetChange", "route53:GetHostedZone",
    "lambda:UpdateFunctionCode", "lambda:GetFunction", "lambda:PublishVersion",
    "lambda:UpdateAlias", "lambda:GetFunctionConfiguration", "lambda:ListVersionsByFunction",
    "lambda:GetPolicy", "s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:GetBucketPolicy",
    "s3:GetBucketVersioning", "s3:GetEncryptionConfiguration", "logs:DescribeLogGroups",
    "logs:ListTagsLogGroup", "logs:PutRetentionPolicy", "ssm:GetParameter", "ssm:PutParameter",
    "ssm:GetParameters", "kms:DescribeKey", "kms:GetKeyPolicy", "kms:ListResourceTags",
    "acm:DescribeCertificate", "acm:ListTagsForCertificate", "cloudwatch:PutMetricAlarm",
    "cloudwatch:DescribeAlarms", "application-autoscaling:RegisterScalableTarget",
    "application-autoscaling:DescribeScalableTargets", "application-autoscaling:PutScalingPolicy",
    "ecr:DescribeImages", "ecr:DescribeRepositories", "ecr:GetLifecyclePolicy",
    "dynamodb:DescribeTable", "dynamodb:DescribeContinuousBackups", "dynamodb:DescribeTimeToLive",
    "sqs:GetQueueAttributes", "sqs:SetQueueAttributes", "sns:GetTopicAttributes",
    "sns:ListTagsForResource", "events:DescribeRule", "events:ListTargetsByRule",
    "events:PutTargets", "sts:GetCallerIdentity",
]
BATCH_ACTIONS = SERVICE_THEMES["objects"] + SERVICE_THEMES["warehouse"] + [
    "glue:StartJobRun", "glue:GetJobRun", "rds:CreateDBSnapshot", "rds:DescribeDBSnapshots",
    "rds:DeleteDBSnapshot", "dynamodb:CreateBackup", "dynamodb:ListBackups",
    "dynamodb:DeleteBackup", "ec2:CreateSnapshot", "ec2:DescribeSnapshots", "ec2:DeleteSnapshot",
    "sns:Publish", "sts:GetCallerIdentity"]
MONTHLY_ACTIONS = ["ce:GetCostAndUsage", "ce:GetCostForecast", "ce:GetDimensionValues",
                   "s3:PutObject", "s3:ListObjects", "ses:SendEmail", "sns:Publish",
                   "organizations:ListAccounts", "budgets:DescribeBudgets",
                   "athena:StartQueryExecution", "athena:GetQueryResults",
                   "cur:DescribeReportDefinitions"]
RECON_ACTIONS = ["sts:GetCallerIdentity", "iam:ListUsers", "iam:ListRoles", "iam:ListPolicies",
                 "iam:GetAccountAuthorizationDetails", "iam:ListAccessKeys",
                 "iam:ListAttachedUserPolicies", "s3:ListBuckets", "ec2:DescribeInstances",
                 "ec2:DescribeRegions", "secretsmanager:ListSecrets", "lambda:ListFunctions",
                 "rds:DescribeDBInstances", "organizations:DescribeOrganization",
                 "ssm:DescribeParameters", "dynamodb:ListTables", "iam:GetUser"]
PROBE_ACTIONS = RECON_ACTIONS + ["iam:CreateUser", "iam:CreateAccessKey",
                                 "secretsmanager:GetSecretValue", "kms:ListKeys",
                                 "ec2:DescribeSnapshots", "s3:GetBucketAcl", "iam:ListGroups",
                                 "ecr:DescribeRepositories", "eks:ListClusters",
                                 "cloudtrail:DescribeTrails", "guardduty:ListDetectors"]
BROAD_SENSITIVE = ["cloudtrail:StopLogging", "cloudtrail:DeleteTrail",
                   "secretsmanager:GetSecretValue"]
ATTACKER_UAS = [
    "python-requests/2.31.0",
    "Boto3/1.28.57 md/Botocore#1.31.57 ua/2.0 os/linux#6.5.0-kali3-amd64 md/arch#x86_64 "
    "lang/python#3.11.6 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.31.57",
    "aws-cli/1.29.62 Python/3.11.4 Linux/6.5.0-kali2-amd64 botocore/1.31.62",
    "aws-sdk-go/1.44.327 (go1.20.7; linux; amd64)",
    "curl/8.4.0",
]
FAIL_PERSON = ["AccessDenied", "AccessDenied", "AccessDenied", "ValidationException",
               "ResourceNotFoundException", "ThrottlingException", "NoSuchKey"]
FAIL_SERVICE = ["ThrottlingException", "ThrottlingException", "ProvisionedThroughputExceededException",
                "ServiceUnavailable", "RequestTimeout", "AccessDenied", "NoSuchKey",
                "ConditionalCheckFailedException"]

FIRST = ["alice", "bob", "carla", "deepak", "elena", "farid", "grace", "hiro", "ines", "jonas",
         "kemal", "lena", "mateo", "nadia", "oskar", "priya", "quentin", "rosa", "sven", "tomoko",
         "uma", "victor", "wen", "ximena", "yusuf", "zoe", "arjun", "beatriz", "chen", "dmitri"]
LAST = ["martin", "nguyen", "schmidt", "tanaka", "garcia", "okafor", "kowalski", "rossi", "silva",
        "patel", "dubois", "jensen", "kim", "novak", "haddad", "larsen", "moreau", "sato", "weber",
        "costa", "ivanova", "brown", "fischer", "yamamoto", "lopez"]
WORDS = ["billing", "ledger", "search", "ingest", "etl", "reports", "media", "auth", "payments",
         "catalog", "inventory", "notify", "analytics", "warehouse", "backup", "exporter",
         "crawler", "thumbs", "orders", "pricing", "geo", "feeds", "audit", "sync", "mailer",
         "invoices", "recs", "fraud", "metrics", "archive", "images", "tiles", "quotes", "kyc"]


@lru_cache(maxsize=None)
def kebab(action: str) -> str:
    svc, op = action.split(":", 1)
    return f"{svc}.{re.sub(r'(?<!^)(?=[A-Z])', '-', op).lower()}"


@lru_cache(maxsize=None)
def api_token(action: str) -> str:
    svc = action.split(":", 1)[0]
    h = zlib.crc32(svc.encode())
    return f" api/{svc}#1.{20 + h % 30}.{h % 9}"


@lru_cache(maxsize=None)
def region_of(action: str, region: str) -> str:
    return "us-east-1" if action.split(":", 1)[0] in GLOBAL_SERVICES else region


# ---------------------------------------------------------------- helpers

def poisson(rng, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam < 30:
        limit = math.exp(-lam)
        k, p = 0, rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))


def loguniform(rng, lo, hi):
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def zipf_cw(n, a):
    cw, s = [], 0.0
    for r in range(1, n + 1):
        s += 1.0 / r ** a
        cw.append(s)
    return cw


def parse_time(s: str) -> int:
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def fmt_time(ms: int) -> str:
    d = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# ---------------------------------------------------------------- user agents

class UA:
    """One client family of one key: a prefix per day (versions drift) and an
    optional per-action suffix (aws-cli's command/, the Go SDK's api/)."""

    def __init__(self, fam: str, rng, ndays: int):
        self.fam = fam
        self.suffix = None
        r = rng.randint
        gaps = (10, 45)
        if fam == "cli":
            minor, patch, py = r(13, 15), r(0, 30), r(4, 8)
            osv = rng.choice([f"Linux/5.15.0-{r(80, 105)}-generic exe/x86_64.ubuntu.22",
                              f"Darwin/23.{r(1, 4)}.0 exe/x86_64", "Windows/10 exe/AMD64",
                              f"Linux/6.2.0-{r(20, 39)}-generic exe/x86_64.ubuntu.22"])
            make = lambda v: f"aws-cli/2.{minor}.{patch + v} Python/3.11.{py} {osv} prompt/off"
            self.suffix = lambda a: " command/" + kebab(a)
        elif fam == "boto3":
            p, py, kern = r(0, 40), r(4, 8), rng.choice(
                ["5.15.0-1051-aws", "5.10.201-191.748.amzn2.x86_64", "6.1.61-85.141.amzn2023.x86_64",
                 "5.15.0-91-generic"])
            make = lambda v: (f"Boto3/1.34.{p + v} md/Botocore#1.34.{p + v} ua/2.0 os/linux#{kern} "
                              f"md/arch#x86_64 lang/python#3.11.{py} md/pyimpl#CPython "
                              f"cfg/retry-mode#legacy Botocore/1.34.{p + v}")
        elif fam == "go":
            p, g = r(0, 20), r(1, 9)
            make = lambda v: (f"aws-sdk-go-v2/1.24.{p + v} os/linux lang/go#1.21.{g} "
                              f"md/GOOS#linux md/GOARCH#amd64")
            self.suffix = api_token
        elif fam == "terraform":
            p, m, q, g = r(0, 6), r(25, 33), r(0, 20), r(1, 9)
            make = lambda v: (f"APN/1.0 HashiCorp/1.0 Terraform/1.6.{p + v // 2} "
                              f"(+https://www.terraform.io) terraform-provider-aws/5.{m + v}.0 "
                              f"(+https://registry.terraform.io/providers/hashicorp/aws) "
                              f"aws-sdk-go-v2/1.24.{q + v} os/linux lang/go#1.21.{g} "
                              f"md/GOOS#linux md/GOARCH#amd64")
            self.suffix = api_token
        elif fam == "console":
            chrome = r(127, 129)
            plat = rng.choice(["Macintosh; Intel Mac OS X 10_15_7", "Windows NT 10.0; Win64; x64",
                               "X11; Linux x86_64"])
            make = lambda v: (f"Mozilla/5.0 ({plat}) AppleWebKit/537.36 (KHTML, like Gecko) "
                              f"Chrome/{chrome + v}.0.0.0 Safari/537.36")
            gaps = (20, 35)
        elif fam == "node":
            m, k, n = r(450, 480), r(190, 210), r(16, 19)
            make = lambda v: (f"aws-sdk-js/3.{m + 3 * v}.0 ua/2.0 os/linux#5.10.{k}-{k + 20}"
                              f".748.amzn2.x86_64 lang/js md/nodejs#18.{n}.0 "
                              f"exec-env/AWS_Lambda_nodejs18.x")
        elif fam == "java":
            p, k = r(0, 40), r(190, 210)
            make = lambda v: (f"aws-sdk-java/2.21.{p + v} Linux/5.10.{k}-{k + 20}.748.amzn2.x86_64 "
                              f"OpenJDK_64-Bit_Server_VM/17.0.9+8-LTS Java/17.0.9 "
                              f"vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/legacy")
        else:
            raise ValueError(fam)
        self.prefix = []
        v, nxt = 0, rng.randint(0, gaps[1])
        for d in range(ndays + 60):
            if d >= nxt:
                v += rng.choice([1, 1, 1, 2, 3]) if d else 0
                nxt = d + rng.randint(*gaps)
            self.prefix.append(make(v))


# ---------------------------------------------------------------- keys

class Key:
    def __init__(self, F: "Fleet", kind: str, idx: int):
        self.F = F
        self.kind = kind
        self.idx = idx
        self.rng = random.Random(f"{F.seed}:{kind}:{idx}")
        self.account = self.rng.choice(F.accounts)
        self.events: list = []
        self.key_ids: list[str] = []
        self.params: dict = {}
        self.uas: dict[str, UA] = {}
        self._uac: dict = {}
        self.region = self.rng.choice(AWS_REGIONS[:6])
        self.key_id = ""
        self.principal = ""
        self.unit = ""

    # identity
    def user(self, name):
        self.principal = f"arn:aws:iam::{self.account}:user/{name}"
        self.key_id = self.F.new_key_id(self.rng, "AKIA")
        self.key_ids.append(self.key_id)
        self.unit = self.principal

    def ua(self, fam) -> UA:
        if fam not in self.uas:
            self.uas[fam] = UA(fam, self.rng, self.F.days)
        return self.uas[fam]

    def emit(self, t, src, fam, action, err=None, region=None, key_id=None, principal=None):
        F = self.F
        d = (t - F.start_ms) // DAY
        u = self.uas[fam]
        prefix = u.prefix[min(max(d, 0), len(u.prefix) - 1)]
        ck = (prefix, action)
        s = self._uac.get(ck)
        if s is None:
            s = prefix + u.suffix(action) if u.suffix else prefix
            self._uac[ck] = s
        self.events.append((t, key_id or self.key_id, principal or self.principal, src, s,
                            action, err, region_of(action, region or self.region)))

    def actions(self, pool, n, a=(0.6, 1.3)):
        n = min(n, len(pool))
        acts = self.rng.sample(pool, n)
        return acts, zipf_cw(n, self.rng.uniform(*a))

    def session(self, t0, n, dur, src, fam, acts, cw, p_fail, fails):
        """A burst of n calls over dur ms: a few 'themes' (pages, commands) repeated."""
        rng = self.rng
        theme = rng.choices(acts, cum_weights=cw, k=rng.randint(2, 6))
        for _ in range(n):
            a = rng.choice(theme) if rng.random() < 0.85 else rng.choices(acts, cum_weights=cw)[0]
            err = rng.choice(fails) if rng.random() < p_fail else None
            self.emit(t0 + int(rng.random() * dur), src, fam, a, err)

    def steady(self, rate_fn, src_fn, fam_fn, acts, cw, p_fail, fails, noise=30.0,
               t_from=None, t_to=None):
        """Hourly Poisson counts with gamma noise: rate_fn(hour_start_ms) calls/hour."""
        F, rng = self.F, self.rng
        t_from = F.start_ms if t_from is None else t_from
        t_to = F.end_ms if t_to is None else t_to
        for h0 in range(t_from, t_to, HOUR):
            lam = rate_fn(h0)
            if lam <= 0:
                continue
            if noise:
                lam *= rng.gammavariate(noise, 1.0 / noise)
            n = poisson(rng, lam)
            if not n:
                continue
            for a in rng.choices(acts, cum_weights=cw, k=n):
                t = h0 + int(rng.random() * HOUR)
                err = rng.choice(fails) if rng.random() < p_fail else None
                self.emit(t, src_fn(t), fam_fn(t), a, err)

    def finish(self):
        self.events.sort(key=itemgetter(0))
        self.times = [e[0] for e in self.events]

    def window(self, t0, t1):
        i, j = bisect_left(self.times, t0), bisect_left(self.times, t1)
        return self.events[i:j]


class Fleet:
    def __init__(self, seed: int, days: int, start: str):
        self.seed = seed
        self.days = days
        self.start_ms = parse_time(start)
        self.start_dt = datetime.fromtimestamp(self.start_ms / 1000, tz=timezone.utc)
        self.end_ms = self.start_ms + days * DAY
        self.rng = random.Random(f"fleet:{seed}")
        self.accounts = [str(self.rng.randint(10 ** 11, 10 ** 12 - 1))
                         for _ in range(self.rng.randint(1, 3))]
        self.nets = Nets(self.rng)
        self.used_ids: set[str] = set()
        self.used_names: set[str] = set()
        self.offices: list[dict] = []
        self.datacentres: list[list[str]] = []

    def new_key_id(self, rng, prefix):
        while True:
            k = prefix + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
            if k not in self.used_ids:
                self.used_ids.add(k)
                return k

    def name(self, rng, person: bool, prefix="svc") -> str:
        for i in range(1000):
            if person:
                n = f"{rng.choice(FIRST)}.{rng.choice(LAST)}"
            else:
                n = f"{prefix}-{rng.choice(WORDS)}" + (f"-{rng.choice(WORDS)}" if i > 5 else "")
            if i > 50:
                n += f"{rng.randint(2, 99)}"
            if n not in self.used_names:
                self.used_names.add(n)
                return n
        raise RuntimeError("names")

    def office(self, rng) -> dict:
        """Offices are shared by colleagues: a site's NAT addresses in a business /24."""
        if len(self.offices) < 4 and (not self.offices or rng.random() < 0.4):
            country = self.rng.choice(HOME_COUNTRIES)
            tz = self.rng.choice(COUNTRIES[country][0])
            p = self.nets.business24(self.rng)
            nat = [f"{p}.{self.rng.randint(2, 254)}" for _ in range(self.rng.randint(1, 3))]
            self.offices.append({"country": country, "tz": tz, "nat": nat})
        return rng.choice(self.offices)

    def datacentre(self, rng) -> list[str]:
        if len(self.datacentres) < 3 and (not self.datacentres or rng.random() < 0.3):
            p = self.nets.business24(self.rng)
            self.datacentres.append([f"{p}.{self.rng.randint(2, 254)}" for _ in range(3)])
        return rng.choice(self.datacentres)

    def local_dates(self, tz):
        z = ZoneInfo(tz)
        d0 = self.start_dt.astimezone(z).date() - timedelta(days=1)
        return [d0 + timedelta(days=i) for i in range(self.days + 2)]

    @staticmethod
    def local_ms(tz, day: Date, hours: float) -> int:
        z = ZoneInfo(tz)
        return int((datetime(day.year, day.month, day.day, tzinfo=z)
                    + timedelta(seconds=hours * 3600)).timestamp() * 1000)

    def stable_source(self, rng) -> tuple[str, str]:
        """A service's egress: a cloud NAT address or an on-prem address."""
        if rng.random() < 0.7:
            prov = rng.choice(["aws", "aws", "aws", "gcp", "azure"])
            p = self.nets.cloud24(prov, rng.choice(AWS_REGIONS[:6]), rng)
            return Nets.host(p, rng), "cloud"
        return rng.choice(self.datacentre(rng)), "onprem"


def diurnal(rng, tz=None):
    """A day shape in UTC hours: trough..1, peaking at a local afternoon hour."""
    trough = rng.uniform(0.15, 0.7)
    peak_local = rng.uniform(10, 16)
    off = 0.0
    if tz:
        off = ZoneInfo(tz).utcoffset(datetime(2026, 10, 1)).total_seconds() / 3600
    peak = (peak_local - off) % 24
    sharp = rng.uniform(1.0, 3.0)
    shape = []
    for h in range(24):
        c = 0.5 + 0.5 * math.cos(2 * math.pi * (h + 0.5 - peak) / 24)
        shape.append(trough + (1 - trough) * c ** sharp)
    return shape, {"trough": round(trough, 2), "peak_utc_hour": round(peak, 1)}


# ---------------------------------------------------------------- person kinds

def person_common(k: Key, country=None, tz=None):
    rng, F = k.rng, k.F
    if country is None:
        country = rng.choice(HOME_COUNTRIES)
    if tz is None:
        tz = rng.choice(COUNTRIES[country][0])
    k.user(F.name(rng, True))
    p = k.params
    p.update(country=country, tz=tz, start_hour=round(rng.uniform(7, 10), 2),
             length=round(rng.uniform(7.5, 10), 2), sessions_mean=round(rng.uniform(1.5, 5), 2),
             p_console=round(rng.uniform(0.1, 0.8), 2), p_fail=round(rng.uniform(0.003, 0.03), 3),
             p_weekend=round(rng.uniform(0, 0.1), 3), p_evening=round(rng.uniform(0, 0.15), 3))
    k.acts, k.cw = k.actions(PERSON_ACTIONS, rng.randint(12, 35))
    k.ua("console")
    k.ua("cli")
    k.fams = ["console", "cli"]
    if rng.random() < 0.3:
        k.ua("boto3")
        k.fams.append("boto3")
    # vacation
    k.vacation = set()
    if rng.random() < 0.4:
        v0 = rng.randint(0, F.days)
        k.vacation = set(range(v0, v0 + rng.randint(3, 9)))
        p["vacation_days"] = [v0, v0 + len(k.vacation)]


def person_days(k: Key, weekend_ok=False):
    """Yields (local_date, day_index, [session utc ms...], is_evening flags)."""
    rng, F, p = k.rng, k.F, k.params
    for i, day in enumerate(F.local_dates(p["tz"])):
        if i in k.vacation or rng.random() < 0.03:
            continue
        weekend = day.weekday() >= 5
        if weekend and not weekend_ok:
            n = poisson(rng, 1.2) if rng.random() < p["p_weekend"] else 0
        else:
            n = poisson(rng, p["sessions_mean"] * (0.5 if weekend else 1.0))
        s0 = p["start_hour"] + rng.uniform(-0.6, 0.6)
        starts = [(F.local_ms(p["tz"], day, s0 + rng.uniform(0, p["length"])), False)
                  for _ in range(n)]
        if rng.random() < p["p_evening"]:
            starts.append((F.local_ms(p["tz"], day, rng.uniform(19.5, 23.5)), True))
        if starts:
            yield day, i, sorted(starts)


def person_session(k: Key, t0, src):
    rng, p = k.rng, k.params
    r = rng.random()
    fam = "console" if r < p["p_console"] else ("boto3" if "boto3" in k.fams and r > 0.93 else "cli")
    n = rng.randint(15, 80)
    k.session(t0, n, int(rng.uniform(2, 10) * MIN), src, fam, k.acts, k.cw, p["p_fail"], FAIL_PERSON)


class Home:
    """A home line: DHCP gives a new address every few weeks (sometimes a new /24)."""

    def __init__(self, k: Key, country):
        self.k, self.country = k, country
        self.p24 = k.F.nets.residential(country, k.rng)
        self.addr = Nets.host(self.p24, k.rng)
        self.changes = 0
        self.next_change = k.F.start_ms + int(k.rng.uniform(10, 60) * DAY)

    def at(self, t):
        rng = self.k.rng
        while t >= self.next_change:
            if rng.random() < 0.5:
                b = self.p24.rsplit(".", 1)[0].split(".")
                self.p24 = f"{b[0]}.{b[1]}.{rng.randint(0, 255)}"
            self.addr = Nets.host(self.p24, rng)
            self.changes += 1
            self.next_change += int(rng.uniform(10, 60) * DAY)
        return self.addr


def gen_office_person(k: Key):
    rng, F = k.rng, k.F
    site = F.office(rng)
    person_common(k, site["country"], site["tz"])
    p = k.params
    p["p_office"] = round(rng.uniform(0.4, 0.9), 2)
    # "occasionally a cafe": on 2-8% of working days, one or two sessions from a
    # cafe's network (a new one most times, a favourite one sometimes)
    p["p_cafe_day"] = round(rng.uniform(0.02, 0.08), 3)
    home = Home(k, site["country"])
    office_addr = rng.choice(site["nat"])
    cafes = []
    for day, i, starts in person_days(k):
        at_office = rng.random() < p["p_office"]
        cafe_at = set()
        if starts and rng.random() < p["p_cafe_day"]:
            cafe_at = set(rng.sample(range(len(starts)), min(len(starts), rng.randint(1, 2))))
            if not cafes or rng.random() < 0.7:
                cafes.append(Nets.host(F.nets.residential(site["country"], rng), rng))
            cafe = rng.choice(cafes)
        for j, (t0, evening) in enumerate(starts):
            if j in cafe_at:
                src = cafe
            elif evening or not at_office:
                src = home.at(t0)
            else:
                src = office_addr if rng.random() < 0.8 else rng.choice(site["nat"])
            person_session(k, t0, src)
    p["cafes"] = len(cafes)
    p["home_changes"] = home.changes


def gen_mobile_person(k: Key):
    rng, F = k.rng, k.F
    person_common(k)
    p = k.params
    carrier = F.nets.carrier(p["country"], rng)
    p["carrier_16s"] = [f"{a}.{b}.0.0/16" for a, b in carrier]
    p["p_change_daily"] = round(rng.uniform(0.7, 0.95), 2)
    addr = Nets.host(F.nets.p24(rng.choice(carrier), rng), rng)
    for day, i, starts in person_days(k, weekend_ok=rng.random() < 0.5):
        if rng.random() < p["p_change_daily"]:
            addr = Nets.host(F.nets.p24(rng.choice(carrier), rng), rng)
        for t0, _ in starts:
            if rng.random() < 0.15:
                addr = Nets.host(F.nets.p24(rng.choice(carrier), rng), rng)
            person_session(k, t0, addr)


def gen_vpn_person(k: Key):
    rng, F = k.rng, k.F
    person_common(k)
    prov = F.nets.vpn_provider(rng)
    nets = rng.sample(prov, min(len(prov), rng.randint(3, 8)))
    pool = sorted({Nets.host(rng.choice(nets), rng) for _ in range(rng.randint(10, 40))})
    k.params.update(vpn_pool=len(pool), vpn_24s=len({a.rsplit(".", 1)[0] for a in pool}))
    for day, i, starts in person_days(k):
        addr = rng.choice(pool)
        for t0, _ in starts:
            if rng.random() < 0.5:
                addr = rng.choice(pool)
            person_session(k, t0, addr)


def gen_traveller(k: Key):
    rng, F = k.rng, k.F
    site = F.office(rng)
    person_common(k, site["country"], site["tz"])
    p = k.params
    home = Home(k, site["country"])
    office_addr = rng.choice(site["nat"])
    p_office = rng.uniform(0.4, 0.9)
    # trips
    trips = []
    d = rng.uniform(3, 30)
    while d < F.days:
        length = rng.randint(2, 6)
        dest = rng.choice([c for c in COUNTRIES if c != site["country"]])
        nets = [F.nets.residential(dest, rng), F.nets.business24(rng)]
        if rng.random() < 0.5:
            nets.append(F.nets.residential(dest, rng))
        trips.append((int(d), int(d) + length, dest, rng.choice(COUNTRIES[dest][0]),
                      [Nets.host(n, rng) for n in nets]))
        d += length + rng.uniform(14, 42)
    p["trips"] = [[a, b, c] for a, b, c, _, _ in trips]
    home_tz = p["tz"]
    on_trip = {}
    for tr in trips:
        for dd in range(tr[0], tr[1]):
            on_trip[dd] = tr
    for day, i, starts in person_days(k, weekend_ok=False):
        tr = on_trip.get(i)
        if tr:
            # on a trip: work in the destination's hours from its networks
            for t0, _ in starts:
                shift = int((ZoneInfo(tr[3]).utcoffset(datetime(2026, 10, 1))
                             - ZoneInfo(home_tz).utcoffset(datetime(2026, 10, 1))).total_seconds() * 1000)
                person_session(k, t0 - shift, rng.choice(tr[4]))
            continue
        at_office = rng.random() < p_office
        for t0, evening in starts:
            src = home.at(t0) if (evening or not at_office) else office_addr
            person_session(k, t0, src)


def gen_sparse(k: Key):
    rng, F = k.rng, k.F
    k.user(F.name(rng, rng.random() < 0.5, prefix=rng.choice(["svc", "tool", "admin"])))
    p = k.params
    p["days_per_week"] = rng.randint(1, 4)
    srcs = [F.stable_source(rng)[0] for _ in range(rng.randint(1, 2))]
    k.acts, k.cw = k.actions(PERSON_ACTIONS + SERVICE_THEMES["objects"], rng.randint(2, 8))
    fam = rng.choice(["cli", "boto3"])
    k.ua(fam)
    for w in range(0, F.days, 7):
        for d in rng.sample(range(7), p["days_per_week"]):
            day = w + d
            if day >= F.days:
                continue
            for _ in range(rng.randint(0, 5)):
                t = F.start_ms + day * DAY + int(rng.random() * DAY)
                a = rng.choices(k.acts, cum_weights=k.cw)[0]
                k.emit(t, rng.choice(srcs), fam, a, "AccessDenied" if rng.random() < 0.02 else None)


# ---------------------------------------------------------------- service kinds

def service_actions(k: Key, themes=(2, 3), n=(3, 10)):
    rng = k.rng
    pool = []
    for th in rng.sample(sorted(SERVICE_THEMES), rng.randint(*themes)):
        pool += SERVICE_THEMES[th]
    pool = sorted(set(pool))
    return k.actions(pool, rng.randint(*n), a=(0.5, 1.2))


def gen_serverless(k: Key):
    rng, F = k.rng, k.F
    k.user(F.name(rng, False, prefix=rng.choice(["svc", "lambda", "fn"])))
    regions = rng.sample(AWS_REGIONS, rng.randint(2, 4))
    w = [rng.uniform(0.3, 1.0) for _ in regions]
    rate = rng.uniform(4, 16)
    amp = rng.uniform(0, 0.35)
    p_new = rng.uniform(0.7, 0.95)
    k.params.update(regions=regions, rate=round(rate, 1), p_new=round(p_new, 2))
    k.acts, k.cw = service_actions(k, themes=(1, 3), n=(2, 6))
    fam = rng.choice(["node", "boto3", "java", "go"])
    k.ua(fam)
    cur = {r: Nets.host(F.nets.cloud24("aws", r, rng), rng) for r in regions}
    for h0 in range(F.start_ms, F.end_ms, HOUR):
        hod = (h0 // HOUR) % 24
        n = poisson(rng, rate * (1 + amp * math.sin(2 * math.pi * hod / 24)))
        for a in rng.choices(k.acts, cum_weights=k.cw, k=n):
            t = h0 + int(rng.random() * HOUR)
            r = rng.choices(regions, weights=w)[0]
            if rng.random() < p_new:
                cur[r] = Nets.host(F.nets.cloud24("aws", r, rng), rng)
            err = rng.choice(FAIL_SERVICE) if rng.random() < 0.003 else None
            k.emit(t, cur[r], fam, a, err, region=r)


def nat_sources(k: Key, n_lo=1, n_hi=3):
    rng, F = k.rng, k.F
    prov = rng.choice(["aws", "aws", "gcp", "azure"])
    p24 = F.nets.cloud24(prov, k.region, rng)
    nats = sorted({Nets.host(p24, rng) for _ in range(rng.randint(n_lo, n_hi))})
    return nats


def throttle_bursts(k: Key, src_fn, fam, p_day):
    rng, F = k.rng, k.F
    for d in range(F.days):
        if rng.random() < p_day:
            t0 = F.start_ms + d * DAY + int(rng.random() * DAY)
            n = rng.randint(15, 60)
            a = rng.choices(k.acts, cum_weights=k.cw)[0]
            for _ in range(n):
                t = t0 + int(rng.random() * 8 * MIN)
                k.emit(t, src_fn(t), fam, a, "ThrottlingException")
            k.params.setdefault("throttle_bursts", []).append([d, n])


def gen_nat_workload(k: Key):
    rng, F = k.rng, k.F
    k.user(F.name(rng, False))
    nats = nat_sources(k)
    peak = loguniform(rng, 20, 200)
    shape, sp = diurnal(rng, rng.choice(["America/New_York", "Europe/Berlin", "Asia/Tokyo", None]))
    weekend = rng.uniform(0.4, 1.0)
    k.params.update(nats=nats, peak_per_hour=round(peak, 1), weekend=round(weekend, 2), **sp)
    k.acts, k.cw = service_actions(k)
    fam = rng.choice(["java", "go", "boto3", "node"])
    k.ua(fam)
    start_wd = F.start_dt.weekday()

    def rate(h0):
        h = (h0 - F.start_ms) // HOUR
        wd = (start_wd + h // 24) % 7
        return peak * shape[h % 24] * (weekend if wd >= 5 else 1.0)
    src = lambda t: nats[int(t // 7919) % len(nats)]
    k.steady(rate, src, lambda t: fam, k.acts, k.cw, rng.uniform(0.0005, 0.004), FAIL_SERVICE,
             noise=rng.uniform(10, 60))
    throttle_bursts(k, src, fam, 0.01)


def gen_growth(k: Key):
    rng, F = k.rng, k.F
    k.user(F.name(rng, False))
    nats = nat_sources(k, 1, 2)
    base = loguniform(rng, 5, 40)
    g = rng.uniform(0.01, 0.03)
    shape, sp = diurnal(rng, rng.choice(["America/New_York", "Europe/London", None]))
    extra_at = F.start_ms + int(rng.uniform(10, 40) * DAY) if rng.random() < 0.3 else None
    extra = Nets.host(nats[0].rsplit(".", 1)[0], rng)
    k.params.update(base_per_hour=round(base, 1), growth_per_day=round(g, 4), nats=nats,
                    scale_out_day=None if extra_at is None else (extra_at - F.start_ms) // DAY, **sp)
    k.acts, k.cw = service_actions(k)
    fam = rng.choice(["java", "go", "boto3", "node"])
    k.ua(fam)

    def rate(h0):
        h = (h0 - F.start_ms) // HOUR
        return base * shape[h % 24] * (1 + g) ** (h / 24)

    def src(t):
        if extra_at and t >= extra_at and t % 3 == 0:
            return extra
        return nats[int(t // 7919) % len(nats)]
    k.steady(rate, src, lambda t: fam, k.acts, k.cw, 0.001, FAIL_SERVICE, noise=rng.uniform(15, 60))
    throttle_bursts(k, src, fam, 0.005)


def gen_month_end(k: Key):
    rng, F = k.rng, k.F
    k.user(F.name(rng, False, prefix=rng.choice(["svc", "billing"])))
    nats = nat_sources(k, 1, 2)
    base = loguniform(rng, 2, 20)
    factor = rng.uniform(5, 20)
    shape, sp = diurnal(rng, rng.choice(["America/New_York", "Europe/Berlin", None]))
    k.params.update(base_per_hour=round(base, 1), month_end_factor=round(factor, 1), nats=nats, **sp)
    k.acts, k.cw = service_actions(k)
    fam = rng.choice(["java", "boto3", "go"])
    k.ua(fam)
    ramp2 = rng.uniform(0.3, 0.7)

    def rate(h0):
        h = (h0 - F.start_ms) // HOUR
        d = datetime.fromtimestamp(h0 / 1000, tz=timezone.utc).date()
        last = ((d.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)).day
        f = factor if d.day == last else (factor * ramp2 if d.day == last - 1 else 1.0)
        return base * shape[h % 24] * f
    src = lambda t: nats[int(t // 7919) % len(nats)]
    k.steady(rate, src, lambda t: fam, k.acts, k.cw, 0.001, FAIL_SERVICE, noise=rng.uniform(15, 60))


def gen_rotation(k: Key):
    rng, F = k.rng, k.F
    k.user(F.name(rng, False))
    nats = nat_sources(k, 1, 2)
    base = loguniform(rng, 5, 50)
    shape, sp = diurnal(rng, None)
    k.acts, k.cw = service_actions(k)
    fam = rng.choice(["java", "go", "boto3"])
    k.ua(fam)
    # rotation schedule: (time, new key); an overlap of 0-3 h uses both
    rot = []
    t = F.start_ms + int(rng.uniform(10, 30) * DAY)
    while t < F.end_ms:
        rot.append((t, F.new_key_id(rng, "AKIA"), int(rng.uniform(0, 3) * HOUR)))
        t += int(rng.uniform(10, 30) * DAY)
    k.key_ids += [r[1] for r in rot]
    k.params.update(base_per_hour=round(base, 1), nats=nats,
                    rotations=[(r[0] - F.start_ms) // DAY for r in rot], **sp)
    src = lambda t: nats[int(t // 7919) % len(nats)]
    k.steady(lambda h0: base * shape[((h0 - F.start_ms) // HOUR) % 24], src, lambda t: fam,
             k.acts, k.cw, 0.001, FAIL_SERVICE, noise=rng.uniform(15, 60))
    # assign key ids by time
    times = [r[0] for r in rot]
    ids = [k.key_ids[0]] + [r[1] for r in rot]
    out = []
    for e in k.events:
        i = bisect_left(times, e[0] + 1)  # number of rotations at or before t
        kid = ids[i]
        if i > 0 and e[0] - times[i - 1] < rot[i - 1][2] and rng.random() < 0.5:
            kid = ids[i - 1]  # old key still in use during the overlap
        out.append((e[0], kid) + e[2:])
    k.events = out


def gen_ipv6_privacy(k: Key):
    rng, F = k.rng, k.F
    k.user(F.name(rng, False, prefix=rng.choice(["svc", "host", "lab"])))
    site = f"{rng.choice(['2a02', '2a01', '2600', '2601', '2001', '240d'])}:{rng.randint(0x100, 0x3fff):x}:{rng.randint(0x1, 0xffff):x}"
    subnets = [rng.randint(0, 0xff) for _ in range(1)]
    rate = loguniform(rng, 2, 30)
    shape, sp = diurnal(rng, rng.choice(["Europe/Berlin", "America/Chicago", "Asia/Tokyo"]))
    p_new64 = rng.uniform(0.01, 0.05)
    k.params.update(site48=site + "::/48", rate_per_hour=round(rate, 1), p_new64=round(p_new64, 3), **sp)
    k.acts, k.cw = service_actions(k)
    fam = rng.choice(["boto3", "cli", "go"])
    k.ua(fam)
    state = {"sub": subnets[0], "iid": None, "next": F.start_ms}

    def iid():
        return ":".join(f"{rng.randint(1, 0xffff):x}" for _ in range(4))

    def src(t):
        while t >= state["next"]:
            if rng.random() < p_new64:
                state["sub"] = rng.randint(0, 0xff) if rng.random() < 0.7 else subnets[0]
            state["iid"] = iid()
            state["next"] += int(rng.uniform(12, 26) * HOUR)
        return f"{site}:{state['sub']:x}:{state['iid']}"
    # events must be produced in time order for src(): steady() walks hours in order,
    # times within an hour are random, so the address is per hour-ish (fine: temp
    # addresses outlive an hour).
    k.steady(lambda h0: rate * shape[((h0 - F.start_ms) // HOUR) % 24], src, lambda t: fam,
             k.acts, k.cw, 0.002, FAIL_SERVICE, noise=rng.uniform(10, 40))


def gen_ci_runner(k: Key):
    rng, F = k.rng, k.F
    k.user(F.name(rng, False, prefix="ci"))
    prov = rng.choice(["azure", "azure", "aws", "gcp"])
    nets = F.nets.runner24s(prov, rng, rng.randint(2, 5))
    runs_mean = rng.uniform(5, 20)
    tz = rng.choice(["America/New_York", "Europe/Berlin", "Europe/London", "Asia/Kolkata",
                     "America/Los_Angeles"])
    k.params.update(runs_per_weekday=round(runs_mean, 1), runner_24s=nets, tz=tz)
    k.acts, k.cw = k.actions(CI_ACTIONS, rng.randint(5, 12), a=(0.3, 0.8))
    fams = rng.sample(["cli", "boto3"], rng.randint(1, 2))
    for f in fams:
        k.ua(f)
    for day in F.local_dates(tz):
        weekend = day.weekday() >= 5
        n = poisson(rng, rng.uniform(0, 2) if weekend else runs_mean)
        for _ in range(n):
            if rng.random() < 0.75:
                t0 = F.local_ms(tz, day, rng.uniform(8, 19))
            else:
                t0 = F.local_ms(tz, day, rng.uniform(0, 24))
            src = Nets.host(rng.choice(nets), rng)
            fam = rng.choice(fams)
            calls = rng.randint(10, 60)
            dur = int(rng.uniform(2, 8) * MIN)
            acts = k.acts
            ts = sorted(t0 + int(rng.random() * dur) for _ in range(calls))
            for j, t in enumerate(ts):
                a = acts[0] if j == 0 else rng.choices(acts, cum_weights=k.cw)[0]
                k.emit(t, src, fam, a, "AccessDenied" if rng.random() < 0.002 else None)


def job_time(k: Key):
    """A job's start: UTC or a local wall-clock time (then it moves with DST)."""
    rng = k.rng
    local = rng.random() < 0.4
    tz = rng.choice(["America/New_York", "Europe/Berlin", "Europe/London", "Australia/Sydney"]) if local else "UTC"
    hour = rng.choice([0, 1, 2, 2, 3, 3, 4, 5, 6, 22, 23]) + rng.choice([0, 0, 0.25, 0.5])
    return tz, hour


def gen_nightly_job(k: Key):
    rng, F = k.rng, k.F
    k.user(F.name(rng, False, prefix=rng.choice(["svc", "batch", "cron"])))
    src, where = F.stable_source(rng)
    tz, hour = job_time(k)
    dur = rng.uniform(10, 30)
    per5 = rng.uniform(5, 20)
    bg = rng.uniform(0.5, 2)
    big_wd = rng.randint(0, 6) if rng.random() < 0.3 else None
    big = rng.uniform(1.5, 2.5)
    k.params.update(tz=tz, hour=hour, minutes=round(dur, 1), per_5min=round(per5, 1),
                    background_per_hour=round(bg, 2), big_weekday=big_wd, source=src)
    k.acts, k.cw = k.actions(BATCH_ACTIONS, rng.randint(3, 8))
    fam = rng.choice(["boto3", "cli", "go", "java"])
    k.ua(fam)
    for day in F.local_dates(tz):
        t0 = F.local_ms(tz, day, hour + rng.uniform(0, 2) / 60)
        d = dur * rng.uniform(0.8, 1.25)
        n = poisson(rng, per5 * d / 5 * (big if day.weekday() == big_wd else 1))
        for a in rng.choices(k.acts, cum_weights=k.cw, k=n):
            k.emit(t0 + int(rng.random() * d * MIN), src, fam, a,
                   rng.choice(FAIL_SERVICE) if rng.random() < 0.002 else None)
    k.steady(lambda h0: bg, lambda t: src, lambda t: fam, k.acts[:2], zipf_cw(min(2, len(k.acts)), 1),
             0.0, FAIL_SERVICE, noise=0)


def gen_weekly_job(k: Key):
    rng, F = k.rng, k.F
    k.user(F.name(rng, False, prefix=rng.choice(["svc", "batch", "report"])))
    src, _ = F.stable_source(rng)
    tz, hour = job_time(k)
    wd = rng.randint(0, 6)
    calls = rng.randint(100, 500)
    dur = rng.uniform(10, 45)
    heartbeat = rng.randint(0, 3) if rng.random() < 0.5 else 0
    k.params.update(tz=tz, weekday=wd, hour=hour, calls=calls, minutes=round(dur, 1),
                    heartbeat_per_day=heartbeat, source=src)
    k.acts, k.cw = k.actions(BATCH_ACTIONS, rng.randint(3, 8))
    fam = rng.choice(["boto3", "cli", "go", "java"])
    k.ua(fam)
    for day in F.local_dates(tz):
        if day.weekday() == wd:
            t0 = F.local_ms(tz, day, hour)
            n = int(calls * rng.uniform(0.85, 1.15))
            for a in rng.choices(k.acts, cum_weights=k.cw, k=n):
                k.emit(t0 + int(rng.random() * dur * MIN), src, fam, a)
        for _ in range(heartbeat):
            k.emit(F.local_ms(tz, day, rng.uniform(0, 24)), src, fam, k.acts[0])


def gen_monthly_job(k: Key):
    rng, F = k.rng, k.F
    k.user(F.name(rng, False, prefix=rng.choice(["cost", "report", "finance"])))
    src, _ = F.stable_source(rng)
    last = rng.random() < 0.4
    hour = rng.uniform(1, 9)
    calls = rng.randint(50, 300)
    dur = rng.uniform(10, 40)
    k.params.update(on="last_day" if last else "first_day", hour=round(hour, 2), calls=calls, source=src)
    k.acts, k.cw = k.actions(MONTHLY_ACTIONS, rng.randint(3, 7))
    fam = rng.choice(["boto3", "cli"])
    k.ua(fam)
    for i in range(F.days + 1):
        d = (F.start_dt + timedelta(days=i)).date()
        nd = d + timedelta(days=1)
        if (last and nd.day == 1) or (not last and d.day == 1):
            t0 = F.start_ms + i * DAY + int(hour * HOUR)
            for a in rng.choices(k.acts, cum_weights=k.cw, k=int(calls * rng.uniform(0.9, 1.1))):
                k.emit(t0 + int(rng.random() * dur * MIN), src, fam, a)


def gen_deploy_key(k: Key, broad=False):
    rng, F = k.rng, k.F
    k.user(F.name(rng, False, prefix=rng.choice(["deploy", "terraform", "cd"])))
    if rng.random() < 0.7:
        nets = F.nets.runner24s(rng.choice(["azure", "aws"]), rng, rng.randint(1, 3))
    else:
        nets = [F.office(rng)["nat"][0].rsplit(".", 1)[0]]
    pool = [a for a in IAC_ACTIONS]
    size = rng.randint(50, 65) if broad else rng.randint(20, 60)
    k.acts = rng.sample(pool, size)
    k.cw = zipf_cw(size, rng.uniform(0.2, 0.7))
    per_day = rng.uniform(0.5, 2.5)
    work = rng.random() < 0.5
    k.params.update(action_pool=size, deploys_per_day=round(per_day, 2), work_hours_only=work,
                    nets=nets)
    fams = ["terraform"] if rng.random() < 0.6 else rng.sample(["cli", "boto3", "terraform"], 2)
    for f in fams:
        k.ua(f)
    for d in range(F.days):
        n = min(4, poisson(rng, per_day))
        for _ in range(n):
            hr = rng.uniform(13, 23) if work else rng.uniform(0, 24)
            t0 = F.start_ms + d * DAY + int(hr * HOUR)
            src = Nets.host(rng.choice(nets), rng)
            fam = rng.choice(fams)
            deploy_burst(k, t0, src, fam, broad)


def deploy_burst(k: Key, t0, src, fam, broad=False):
    rng = k.rng
    calls = rng.randint(20, 150)
    dur = int(rng.uniform(3, 15) * MIN)
    # the stack this deploy touches: a slice of the key's actions
    m = max(5, int(len(k.acts) * rng.uniform(0.5, 0.95 if broad else 0.8)))
    sub_idx = sorted(rng.sample(range(len(k.acts)), m))
    sub = [k.acts[i] for i in sub_idx]
    cw = zipf_cw(len(sub), 0.3)
    for j in range(calls):
        a = sub[j] if j < len(sub) else rng.choices(sub, cum_weights=cw)[0]
        k.emit(t0 + int(j * dur / calls) + rng.randint(0, 999), src, fam, a,
               "ThrottlingException" if rng.random() < 0.01 else None)


def gen_role_session(k: Key):
    rng, F = k.rng, k.F
    k.role = F.name(rng, False, prefix=rng.choice(["app", "worker", "ec2"])) + "-role"
    k.role_arn = f"arn:aws:iam::{k.account}:role/{k.role}"
    k.unit = k.role_arn
    k.principal = f"arn:aws:sts::{k.account}:assumed-role/{k.role}/i-0"
    prov_p24 = F.nets.cloud24("aws", k.region, rng)
    k.acts, k.cw = service_actions(k, themes=(1, 2), n=(2, 6))
    fam = rng.choice(["boto3", "go", "java"])
    k.ua(fam)
    n_inst = rng.randint(1, 3)
    k.params.update(role=k.role, instances=n_inst, net24=prov_p24)
    for _ in range(n_inst):
        inst = "i-0" + "".join(rng.choice("0123456789abcdef") for _ in range(16))
        addr = Nets.host(prov_p24, rng)
        rate = rng.uniform(3, 30)
        off = int(rng.random() * HOUR)
        t = F.start_ms - off
        while t < F.end_ms:
            if rng.random() < 0.02 / 24:  # instance replaced
                inst = "i-0" + "".join(rng.choice("0123456789abcdef") for _ in range(16))
                addr = Nets.host(prov_p24, rng)
            kid = F.new_key_id(rng, "ASIA")
            k.key_ids.append(kid)
            principal = f"arn:aws:sts::{k.account}:assumed-role/{k.role}/{inst}"
            for a in rng.choices(k.acts, cum_weights=k.cw, k=poisson(rng, rate)):
                k.emit(t + int(rng.random() * HOUR), addr, fam, a,
                       "ThrottlingException" if rng.random() < 0.002 else None,
                       key_id=kid, principal=principal)
            t += HOUR


GENERATORS = {
    "office_person": gen_office_person, "mobile_person": gen_mobile_person,
    "vpn_person": gen_vpn_person, "serverless": gen_serverless, "nat_workload": gen_nat_workload,
    "ci_runner": gen_ci_runner, "nightly_job": gen_nightly_job, "weekly_job": gen_weekly_job,
    "monthly_job": gen_monthly_job, "growth": gen_growth, "month_end": gen_month_end,
    "deploy_key": gen_deploy_key, "ipv6_privacy": gen_ipv6_privacy, "traveller": gen_traveller,
    "sparse": gen_sparse, "rotation": gen_rotation, "role_session": gen_role_session,
}


# ---------------------------------------------------------------- attacks

class Planter:
    def __init__(self, F: Fleet, keys: list[Key]):
        self.F = F
        self.keys = keys
        self.rng = random.Random(f"attacks:{F.seed}")
        self.used: set[int] = set()
        self.attacks: list[dict] = []
        self.skipped: list[dict] = []
        self.extra_keys: list[dict] = []

    def start_time(self, lo_day=21, hi_day=None, tail=2 * HOUR):
        F, rng = self.F, self.rng
        hi_day = F.days - 2 if hi_day is None else hi_day
        d = rng.randint(lo_day, hi_day)
        t = F.start_ms + d * DAY + int(rng.random() * DAY)
        return min(t, F.end_ms - tail - HOUR)

    def candidates(self, family, pred=None):
        out = [k for k in self.keys if k.kind in ELIGIBLE[family] and id(k) not in self.used]
        if pred:
            out = [k for k in out if pred(k)]
        # spread over kinds: pick a kind first, then a key
        return out

    def pick(self, family, pred=None) -> Key | None:
        cands = self.candidates(family, pred)
        if not cands:
            return None
        kinds = sorted({k.kind for k in cands})
        taken = Counter(a.get("kind") for a in self.attacks)
        fresh = [x for x in kinds if not taken[x]] or kinds
        kind = self.rng.choice(fresh)
        k = self.rng.choice([c for c in cands if c.kind == kind])
        self.used.add(id(k))
        return k

    def usual(self, k: Key, t):
        """The key's usual source, client and key id just before t."""
        recent = k.window(t - 14 * DAY, t) or k.window(k.F.start_ms, t)
        c = Counter(e[3] for e in recent[-5000:])
        src, n = c.most_common(1)[0]
        if n <= 2:
            src = recent[-1][3]
        return src, recent

    def record(self, family, k: Key | None, key_id, principal, start, end, deadline=None, **extra):
        a = {"family": family, "detector": FAMILIES[family], "key_id": key_id,
             "principal": principal, "kind": k.kind if k else None,
             "start": fmt_time(start), "end": fmt_time(end),
             "deadline": fmt_time(deadline if deadline is not None else end + HOUR)}
        a.update(extra)
        self.attacks.append(a)

    def clone(self, k: Key, e, t, src=None, action=None, err=None, key_id=None):
        self_ev = (t, key_id or e[1], e[2], src or e[3], e[4], action or e[5], err, e[7])
        k.events.append(self_ev)
        return self_ev

    # ------------------------------------------------------------ families

    def stolen_key_new_network(self, k: Key):
        rng = self.rng
        start = self.start_time()
        _, recent = self.usual(k, start)
        last = recent[-1]
        p24 = self.F.nets.attacker24(rng)
        hosts = [Nets.host(p24, rng) for _ in range(rng.randint(1, 2))]
        ua = last[4] if rng.random() < 0.5 else rng.choice(ATTACKER_UAS)
        n = rng.randint(20, 60)
        ts = sorted([start] + [start + int(rng.random() * HOUR) for _ in range(n - 1)])
        for i, t in enumerate(ts):
            a = "sts:GetCallerIdentity" if i == 0 else rng.choice(RECON_ACTIONS)
            k.events.append((t, last[1], last[2], rng.choice(hosts), ua, a, None,
                             region_of(a, last[7])))
        self.record("stolen_key_new_network", k, last[1], last[2], ts[0], ts[-1],
                    network=p24 + ".0/24", calls=n, user_agent="usual" if ua == last[4] else ua)

    def stolen_key_blending_in(self, k: Key):
        """A careful thief: from a network of his own, the key's own calls
        with its own client (replayed from its last two weeks), at a
        random time. Only the network is new."""
        rng = self.rng
        start = self.start_time()
        _, recent = self.usual(k, start)
        sample = recent[-2000:]
        p24 = self.F.nets.attacker24(rng)
        host = Nets.host(p24, rng)
        n = rng.randint(10, 40)
        ts = sorted([start] + [start + int(rng.random() * HOUR) for _ in range(n - 1)])
        for t in ts:
            self.clone(k, rng.choice(sample), t, src=host, key_id=sample[-1][1])
        self.record("stolen_key_blending_in", k, sample[-1][1], sample[-1][2], ts[0], ts[-1],
                    network=p24 + ".0/24", calls=n)

    def burst(self, k: Key):
        rng = self.rng
        start = self.start_time()
        src, recent = self.usual(k, start)
        hist = k.window(self.F.start_ms + DAY, start)
        peak = max(Counter(e[0] // (5 * MIN) for e in hist).values())
        per5 = 20 * peak
        n = 3 * per5
        sample = recent[-2000:]
        for _ in range(n):
            e = rng.choice(sample)
            self.clone(k, e, start + int(rng.random() * 15 * MIN), src=src)
        self.record("burst", k, sample[-1][1], sample[-1][2], start, start + 15 * MIN,
                    peak_5min=peak, per_5min=per5, calls=n)

    def dormant_revival(self, k: Key, used_days: int):
        rng, F = self.rng, self.F
        lo = used_days + 35
        if lo > F.days - 2:
            return False
        start = F.start_ms + rng.randint(lo, F.days - 2) * DAY + int(rng.random() * DAY)
        start = min(start, F.end_ms - 3 * HOUR)
        src, recent = self.usual(k, start)
        n = rng.randint(3, 15)
        ts = sorted([start] + [start + int(rng.random() * 30 * MIN) for _ in range(n - 1)])
        for t in ts:
            self.clone(k, rng.choice(recent[-500:]), t, src=src)
        last_use = recent[-1][0]
        self.record("dormant_revival", k, recent[-1][1], recent[-1][2], ts[0], ts[-1],
                    used_days=used_days, silent_days=round((ts[0] - last_use) / DAY, 1), calls=n)
        return True

    def error_storm(self, k: Key):
        rng = self.rng
        start = self.start_time()
        src, recent = self.usual(k, start)
        last = recent[-1]
        n = rng.randint(200, 500)
        ts = sorted([start] + [start + int(rng.random() * 10 * MIN) for _ in range(n - 1)])
        for t in ts:
            a = rng.choice(PROBE_ACTIONS)
            k.events.append((t, last[1], last[2], src, last[4], a, "AccessDenied", region_of(a, last[7])))
        self.record("error_storm", k, last[1], last[2], ts[0], ts[-1], calls=n)

    def fanout(self, k: Key):
        rng = self.rng
        start = self.start_time()
        _, recent = self.usual(k, start)
        last = recent[-1]
        ua = last[4] if rng.random() < 0.5 else rng.choice(ATTACKER_UAS)
        nets: list[str] = []
        while len(nets) < 50:
            p24 = self.F.nets.attacker24(rng)
            if p24 not in nets:
                nets.append(p24)
        t_first = None
        t_last = start
        for i, p24 in enumerate(nets):
            host = Nets.host(p24, rng)
            t = start + (0 if i == 0 else int(rng.random() * 10 * MIN))
            for j in range(rng.randint(1, 4)):
                a = "sts:GetCallerIdentity" if j == 0 else rng.choice(RECON_ACTIONS)
                tt = t + j * rng.randint(200, 5000)
                k.events.append((tt, last[1], last[2], host, ua, a, None, region_of(a, last[7])))
                t_first = tt if t_first is None else min(t_first, tt)
                t_last = max(t_last, tt)
        self.record("fanout", k, last[1], last[2], t_first, t_last, networks=50)

    def scope_creep(self, k: Key):
        rng = self.rng
        start = self.start_time()
        src, recent = self.usual(k, start)
        last = recent[-1]
        t = start
        seq = ["iam:CreateUser", "iam:AttachUserPolicy", "iam:CreateAccessKey"]
        if rng.random() < 0.5:
            seq = ["iam:ListUsers"] + seq
        for a in seq:
            k.events.append((t, last[1], last[2], src, last[4], a, None, region_of(a, last[7])))
            t += rng.randint(2, 90) * SEC
        acts = len({e[5] for e in k.window(self.F.start_ms, start)})
        self.record("scope_creep", k, last[1], last[2], start, t, prior_actions=acts, calls=seq)

    def ramp(self, k: Key, start, base):
        rng = self.rng
        src, recent = self.usual(k, start)
        sample = recent[-2000:]
        n_total = 0
        for m in range(6 * 60):
            lam = base / 60 * (2 ** ((m + 0.5) / 60) - 1)
            for _ in range(poisson(rng, lam)):
                self.clone(k, rng.choice(sample), start + m * MIN + int(rng.random() * MIN), src=src)
                n_total += 1
        self.record("ramp", k, sample[-1][1], sample[-1][2], start, start + 6 * HOUR,
                    deadline=start + 3 * HOUR, base_per_hour=round(base, 1), calls=n_total)

    def stolen_sessions(self, k: Key):
        rng, F = self.rng, self.F
        start = self.start_time()
        _, recent = self.usual(k, start)
        p24 = F.nets.attacker24(rng)
        hosts = [Nets.host(p24, rng) for _ in range(rng.randint(1, 2))]
        ua = rng.choice(ATTACKER_UAS + [recent[-1][4]])
        n_sess = rng.randint(5, 15)
        sess_name = rng.choice(["botocore-session-%d" % (start // 1000), "exfil", "aws-go-sdk-%d" % (start // 1000)])
        t = start
        first_key = None
        end = start
        kids = []
        for s in range(n_sess):
            kid = F.new_key_id(rng, "ASIA")
            kids.append(kid)
            first_key = first_key or kid
            principal = f"arn:aws:sts::{k.account}:assumed-role/{k.role}/{sess_name}"
            tt = t
            for j in range(rng.randint(3, 10)):
                a = "sts:GetCallerIdentity" if j == 0 else rng.choice(RECON_ACTIONS)
                k.events.append((tt, kid, principal, rng.choice(hosts), ua, a, None, region_of(a, k.region)))
                end = max(end, tt)
                tt += rng.randint(2, 120) * SEC
            t += rng.randint(3, 20) * MIN
        for kid in kids:
            self.extra_keys.append({"key_id": kid, "principal": k.role_arn, "kind": "attack:stolen_sessions",
                                    "unit": "attack:" + k.role_arn})
        self.record("stolen_sessions", k, first_key, k.role_arn, start, end, sessions=n_sess,
                    session_key_ids=kids, network=p24 + ".0/24")

    def new_identity(self):
        rng, F = self.rng, self.F
        start = self.start_time()
        acct = rng.choice(F.accounts)
        name = F.name(rng, False, prefix=rng.choice(["backup", "support", "svc", "admin"]))
        principal = f"arn:aws:iam::{acct}:user/{name}"
        kid = F.new_key_id(rng, "AKIA")
        p24 = F.nets.attacker24(rng)
        host = Nets.host(p24, rng)
        ua = rng.choice(ATTACKER_UAS)
        seq = ["sts:GetCallerIdentity", "iam:ListUsers", "iam:CreateUser", "iam:AttachUserPolicy",
               "iam:CreateAccessKey"]
        if rng.random() < 0.5:
            seq = seq[:2] + ["iam:ListAttachedUserPolicies", "s3:ListBuckets"] + seq[2:]
        t = start
        evs = []
        for a in seq:
            evs.append((t, kid, principal, host, ua, a, None, "us-east-1"))
            t += rng.randint(3, 120) * SEC
        self.extra_events = evs
        self.extra_keys.append({"key_id": kid, "principal": principal, "kind": "attack:new_identity",
                                "unit": "attack:" + principal})
        self.record("new_identity", None, kid, principal, start, evs[-1][0], network=p24 + ".0/24")

    def broad_key_sensitive(self, k: Key):
        rng, F = self.rng, self.F
        for _ in range(50):
            start = self.start_time()
            n_act = len({e[5] for e in k.window(F.start_ms, start)})
            if n_act >= 40:
                break
        else:
            return False
        src, recent = self.usual(k, start)
        last = recent[-1]
        fam = next(iter(k.uas))
        # a normal-looking deploy with the sensitive call(s) inside it
        deploy_burst(k, start - int(rng.uniform(1, 4) * MIN), src, fam, broad=True)
        calls = rng.sample(BROAD_SENSITIVE, rng.randint(1, 2))
        t = start
        for a in calls:
            k.events.append((t, last[1], last[2], src, last[4], a, None, region_of(a, last[7])))
            t += rng.randint(5, 60) * SEC
        self.record("broad_key_sensitive", k, last[1], last[2], start, t, prior_actions=n_act, calls=calls)
        return True


def rate_at(k: Key, start):
    """Mean calls in the hour before `start`'s hour-of-day over the previous 7 days."""
    c = 0
    for d in range(1, 8):
        c += len(k.window(start - d * DAY, start - d * DAY + HOUR))
    return c / 7


# ---------------------------------------------------------------- main

def build(seed, n_keys, days, kinds, families, start):
    F = Fleet(seed, days, start)
    rng = random.Random(f"plan:{seed}")
    kinds = list(kinds)
    assign = [kinds[i % len(kinds)] for i in range(n_keys)]
    rng.shuffle(assign)
    keys = [Key(F, kind, i) for i, kind in enumerate(assign)]
    n_roles = rng.randint(1, 3)
    keys += [Key(F, "role_session", 1000 + i) for i in range(n_roles)]

    P = Planter(F, keys)
    families = list(families)
    # pre-designated victims whose traffic depends on it
    broad_victim = None
    if "broad_key_sensitive" in families:
        c = [k for k in keys if k.kind == "deploy_key"]
        if c:
            broad_victim = P.rng.choice(c)
            P.used.add(id(broad_victim))
    dormant_victim, dormant_days = None, None
    if "dormant_revival" in families and days >= 40:
        dormant_victim = P.pick("dormant_revival")
        dormant_days = P.rng.randint(3, min(7, days - 37))

    for k in keys:
        if k is broad_victim:
            gen_deploy_key(k, broad=True)
        else:
            GENERATORS[k.kind](k)
        k.finish()
    if dormant_victim is not None:
        cut = F.start_ms + dormant_days * DAY
        dormant_victim.events = [e for e in dormant_victim.events if e[0] < cut]
        dormant_victim.finish()
        dormant_victim.params["dormant_after_day"] = dormant_days

    extra_events = []
    for fam in families:
        ok = True
        if fam == "new_identity":
            P.new_identity()
            extra_events = P.extra_events
            continue
        if fam == "dormant_revival":
            if dormant_victim is None or not dormant_victim.events:
                ok = False
            else:
                ok = P.dormant_revival(dormant_victim, dormant_days)
        elif fam == "broad_key_sensitive":
            ok = broad_victim is not None and P.broad_key_sensitive(broad_victim)
        elif fam == "ramp":
            ok = False
            cands = P.candidates("ramp")
            P.rng.shuffle(cands)
            best = None
            for k in cands:
                for _ in range(6):
                    st = P.start_time(tail=7 * HOUR)
                    b = rate_at(k, st)
                    if best is None or b > best[2]:
                        best = (k, st, b)
                    if b >= 24:
                        break
                if best and best[2] >= 24:
                    break
            if best and best[2] > 0:
                P.used.add(id(best[0]))
                P.ramp(best[0], best[1], best[2])
                ok = True
        elif fam == "scope_creep":
            k = P.pick(fam, pred=lambda k: 0 < len({e[5] for e in k.events}) <= 12)
            ok = k is not None
            if ok:
                P.scope_creep(k)
        else:
            k = P.pick(fam, pred=lambda k: len(k.events) > 0)
            ok = k is not None
            if ok:
                getattr(P, fam)(k)
        if not ok:
            P.skipped.append({"family": fam, "reason": "no eligible key in this fleet"})
    return F, keys, P, extra_events


def write(out, F, keys, P, extra_events, args, kinds, families):
    os.makedirs(out, exist_ok=True)
    allev = []
    for k in keys:
        allev.extend(k.events)
    allev.extend(extra_events)
    allev = [e for e in allev if F.start_ms <= e[0] < F.end_ms]
    allev.sort(key=itemgetter(0))
    # date prefixes per day
    prefix = {}
    tmp = os.path.join(out, "events.jsonl.tmp")
    n = 0
    with open(tmp, "w", buffering=1 << 22) as f:
        w = f.write
        buf = []
        for t, kid, pr, src, ua, act, err, reg in allev:
            d = t // DAY
            p = prefix.get(d)
            if p is None:
                p = prefix[d] = datetime.fromtimestamp(d * 86400, tz=timezone.utc).strftime("%Y-%m-%dT")
            r = t - d * DAY
            ts = f"{p}{r // HOUR:02d}:{r // MIN % 60:02d}:{r // SEC % 60:02d}.{r % SEC:03d}Z"
            if err is None:
                buf.append(f'{{"time":"{ts}","key_id":"{kid}","principal":"{pr}","source":"{src}",'
                           f'"user_agent":"{ua}","action":"{act}","outcome":"success","region":"{reg}"}}\n')
            else:
                buf.append(f'{{"time":"{ts}","key_id":"{kid}","principal":"{pr}","source":"{src}",'
                           f'"user_agent":"{ua}","action":"{act}","outcome":"failure",'
                           f'"error_code":"{err}","region":"{reg}"}}\n')
            if len(buf) >= 20000:
                w("".join(buf))
                n += len(buf)
                buf = []
        w("".join(buf))
        n += len(buf)
    os.replace(tmp, os.path.join(out, "events.jsonl"))

    truth_keys, units = [], []
    per_key_events = Counter(e[1] for e in allev)
    for k in keys:
        for kid in k.key_ids:
            truth_keys.append({"key_id": kid, "principal": k.principal if k.kind != "role_session" else k.role_arn,
                               "kind": k.kind, "unit": k.unit})
        units.append({"unit": k.unit, "kind": k.kind, "principal": k.principal if k.kind != "role_session" else k.role_arn,
                      "key_ids": len(k.key_ids), "first_key_id": k.key_ids[0],
                      "events": sum(per_key_events[x] for x in k.key_ids), "params": k.params})
    truth_keys += P.extra_keys
    truth = {
        "generator": "benches/fleets/fleet.py", "version": GENERATOR_VERSION,
        "seed": F.seed, "start": fmt_time(F.start_ms), "days": F.days,
        "keys_requested": args.keys, "kinds": kinds, "families": families,
        "events": n, "keys": truth_keys, "attacks": P.attacks, "skipped_attacks": P.skipped,
        "units": units,
    }
    with open(os.path.join(out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1, default=str)
    return n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--keys", type=int, default=120)
    ap.add_argument("--days", type=int, default=50)
    ap.add_argument("--out", required=True)
    ap.add_argument("--kinds", default="", help="comma-separated subset of: " + ",".join(KINDS))
    ap.add_argument("--families", default="", help="comma-separated attack families, or 'none' "
                    "(default all: " + ",".join(FAMILIES) + ")")
    ap.add_argument("--start", default=DEFAULT_START)
    args = ap.parse_args(argv)
    kinds = [x for x in args.kinds.split(",") if x] or KINDS
    bad = [x for x in kinds if x not in KINDS]
    if bad:
        ap.error(f"unknown kinds {bad}; known: {KINDS}")
    if args.families == "none":
        families = []
    else:
        families = [x for x in args.families.split(",") if x] or list(FAMILIES)
    bad = [x for x in families if x not in FAMILIES]
    if bad:
        ap.error(f"unknown families {bad}")
    if args.days < 25 and families:
        ap.error("attacks need at least 25 days (21 of history)")
    t0 = _time.time()
    F, keys, P, extra = build(args.seed, args.keys, args.days, kinds, families, args.start)
    t1 = _time.time()
    n = write(args.out, F, keys, P, extra, args, kinds, families)
    t2 = _time.time()
    print(f"fleet seed {args.seed}: {args.keys} keys (+{sum(k.kind == 'role_session' for k in keys)} roles), "
          f"{args.days} days, {n} events, {len(P.attacks)} attacks"
          f"{' (skipped: ' + ','.join(s['family'] for s in P.skipped) + ')' if P.skipped else ''}; "
          f"generated in {t1 - t0:.1f}s, written in {t2 - t1:.1f}s -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
