//! What generated keys call and who they are: AWS actions grouped into the
//! themes of typical workloads, regions, and names. Fixed tables; what a key
//! takes from them is drawn from that key's own random stream.

use rand::rngs::SmallRng;
use rand::Rng;

/// One API call kind, as IAM names it and as CloudTrail logs it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ActionDef {
    /// `service:Event`, e.g. `s3:GetObject`.
    pub name: &'static str,
    /// CloudTrail `eventSource`, e.g. `s3.amazonaws.com`.
    pub event_source: &'static str,
    /// CloudTrail logs it as a data event rather than a management event.
    pub data_event: bool,
}

impl ActionDef {
    /// The IAM service prefix (`s3`).
    pub fn service(&self) -> &'static str {
        self.name.split_once(':').map_or(self.name, |(s, _)| s)
    }

    /// The CloudTrail `eventName` (`GetObject`).
    pub fn event_name(&self) -> &'static str {
        self.name.split_once(':').map_or(self.name, |(_, e)| e)
    }

    /// Whether CloudTrail marks the call `readOnly`.
    pub fn read_only(&self) -> bool {
        const READ: [&str; 8] = [
            "Get", "List", "Describe", "Head", "BatchGet", "Query", "Scan", "Filter",
        ];
        let event = self.event_name();
        READ.iter().any(|p| event.starts_with(p)) || event == "BatchCheckLayerAvailability"
    }

    /// Global services log every call in `us-east-1`.
    pub fn global(&self) -> bool {
        matches!(self.service(), "iam" | "ce" | "organizations")
    }
}

macro_rules! actions {
    ($($id:ident = $svc:literal, $host:literal, $event:literal, $data:literal;)*) => {
        $(
            pub(crate) static $id: ActionDef = ActionDef {
                name: concat!($svc, ":", $event),
                event_source: concat!($host, ".amazonaws.com"),
                data_event: $data,
            };
        )*
    };
}

actions! {
    S3_GET_OBJECT = "s3", "s3", "GetObject", true;
    S3_PUT_OBJECT = "s3", "s3", "PutObject", true;
    S3_HEAD_OBJECT = "s3", "s3", "HeadObject", true;
    S3_DELETE_OBJECT = "s3", "s3", "DeleteObject", true;
    S3_LIST_OBJECTS = "s3", "s3", "ListObjects", true;
    S3_LIST_BUCKETS = "s3", "s3", "ListBuckets", false;
    S3_GET_BUCKET_LOCATION = "s3", "s3", "GetBucketLocation", false;
    DDB_GET_ITEM = "dynamodb", "dynamodb", "GetItem", true;
    DDB_PUT_ITEM = "dynamodb", "dynamodb", "PutItem", true;
    DDB_QUERY = "dynamodb", "dynamodb", "Query", true;
    DDB_UPDATE_ITEM = "dynamodb", "dynamodb", "UpdateItem", true;
    DDB_BATCH_WRITE = "dynamodb", "dynamodb", "BatchWriteItem", true;
    DDB_SCAN = "dynamodb", "dynamodb", "Scan", true;
    DDB_DESCRIBE_TABLE = "dynamodb", "dynamodb", "DescribeTable", false;
    SQS_SEND = "sqs", "sqs", "SendMessage", true;
    SQS_RECEIVE = "sqs", "sqs", "ReceiveMessage", true;
    SQS_DELETE = "sqs", "sqs", "DeleteMessage", true;
    SQS_ATTRIBUTES = "sqs", "sqs", "GetQueueAttributes", false;
    SNS_PUBLISH = "sns", "sns", "Publish", false;
    KINESIS_PUT_RECORDS = "kinesis", "kinesis", "PutRecords", true;
    KMS_DECRYPT = "kms", "kms", "Decrypt", false;
    KMS_GENERATE_DATA_KEY = "kms", "kms", "GenerateDataKey", false;
    KMS_LIST_KEYS = "kms", "kms", "ListKeys", false;
    SSM_GET_PARAMETER = "ssm", "ssm", "GetParameter", false;
    SSM_GET_PARAMETERS = "ssm", "ssm", "GetParameters", false;
    SSM_DESCRIBE_PARAMETERS = "ssm", "ssm", "DescribeParameters", false;
    SECRETS_GET_VALUE = "secretsmanager", "secretsmanager", "GetSecretValue", false;
    SECRETS_LIST = "secretsmanager", "secretsmanager", "ListSecrets", false;
    LAMBDA_INVOKE = "lambda", "lambda", "Invoke", true;
    LAMBDA_GET_FUNCTION = "lambda", "lambda", "GetFunction", false;
    LAMBDA_LIST_FUNCTIONS = "lambda", "lambda", "ListFunctions", false;
    LAMBDA_UPDATE_CODE = "lambda", "lambda", "UpdateFunctionCode", false;
    ECR_AUTH_TOKEN = "ecr", "ecr", "GetAuthorizationToken", false;
    ECR_CHECK_LAYER = "ecr", "ecr", "BatchCheckLayerAvailability", false;
    ECR_INITIATE_UPLOAD = "ecr", "ecr", "InitiateLayerUpload", false;
    ECR_UPLOAD_PART = "ecr", "ecr", "UploadLayerPart", false;
    ECR_COMPLETE_UPLOAD = "ecr", "ecr", "CompleteLayerUpload", false;
    ECR_PUT_IMAGE = "ecr", "ecr", "PutImage", false;
    CFN_DESCRIBE_STACKS = "cloudformation", "cloudformation", "DescribeStacks", false;
    CFN_CREATE_CHANGE_SET = "cloudformation", "cloudformation", "CreateChangeSet", false;
    CFN_EXECUTE_CHANGE_SET = "cloudformation", "cloudformation", "ExecuteChangeSet", false;
    CFN_DESCRIBE_EVENTS = "cloudformation", "cloudformation", "DescribeStackEvents", false;
    STS_CALLER_IDENTITY = "sts", "sts", "GetCallerIdentity", false;
    EC2_DESCRIBE_INSTANCES = "ec2", "ec2", "DescribeInstances", false;
    EC2_DESCRIBE_SECURITY_GROUPS = "ec2", "ec2", "DescribeSecurityGroups", false;
    EC2_DESCRIBE_VPCS = "ec2", "ec2", "DescribeVpcs", false;
    CW_PUT_METRIC_DATA = "cloudwatch", "monitoring", "PutMetricData", false;
    LOGS_PUT_EVENTS = "logs", "logs", "PutLogEvents", false;
    LOGS_CREATE_STREAM = "logs", "logs", "CreateLogStream", false;
    LOGS_FILTER_EVENTS = "logs", "logs", "FilterLogEvents", false;
    LOGS_DESCRIBE_GROUPS = "logs", "logs", "DescribeLogGroups", false;
    ATHENA_START_QUERY = "athena", "athena", "StartQueryExecution", false;
    ATHENA_GET_QUERY = "athena", "athena", "GetQueryExecution", false;
    ATHENA_GET_RESULTS = "athena", "athena", "GetQueryResults", false;
    GLUE_GET_TABLE = "glue", "glue", "GetTable", false;
    GLUE_GET_PARTITIONS = "glue", "glue", "GetPartitions", false;
    CE_GET_COST = "ce", "ce", "GetCostAndUsage", false;
    ORG_LIST_ACCOUNTS = "organizations", "organizations", "ListAccounts", false;
    IAM_GET_USER = "iam", "iam", "GetUser", false;
    IAM_LIST_USERS = "iam", "iam", "ListUsers", false;
    IAM_LIST_ROLES = "iam", "iam", "ListRoles", false;
    IAM_LIST_ATTACHED_POLICIES = "iam", "iam", "ListAttachedUserPolicies", false;
    IAM_ACCOUNT_DETAILS = "iam", "iam", "GetAccountAuthorizationDetails", false;
    IAM_CREATE_USER = "iam", "iam", "CreateUser", false;
    IAM_ATTACH_USER_POLICY = "iam", "iam", "AttachUserPolicy", false;
    IAM_CREATE_ACCESS_KEY = "iam", "iam", "CreateAccessKey", false;
    RDS_DESCRIBE_INSTANCES = "rds", "rds", "DescribeDBInstances", false;
}

/// A list of actions a kind of workload draws its habits from.
pub(crate) type Theme = &'static [&'static ActionDef];

/// What back-end services typically call: one theme per kind of service.
pub(crate) static SERVICE_THEMES: [Theme; 5] = [
    &[
        &S3_GET_OBJECT,
        &S3_PUT_OBJECT,
        &S3_LIST_OBJECTS,
        &S3_HEAD_OBJECT,
        &KMS_DECRYPT,
        &KMS_GENERATE_DATA_KEY,
        &S3_DELETE_OBJECT,
        &S3_GET_BUCKET_LOCATION,
    ],
    &[
        &SQS_RECEIVE,
        &SQS_DELETE,
        &SQS_SEND,
        &SNS_PUBLISH,
        &SQS_ATTRIBUTES,
        &KMS_DECRYPT,
        &LOGS_PUT_EVENTS,
        &LAMBDA_INVOKE,
    ],
    &[
        &DDB_GET_ITEM,
        &DDB_QUERY,
        &DDB_PUT_ITEM,
        &DDB_UPDATE_ITEM,
        &DDB_BATCH_WRITE,
        &DDB_DESCRIBE_TABLE,
        &KMS_DECRYPT,
        &CW_PUT_METRIC_DATA,
    ],
    &[
        &SSM_GET_PARAMETER,
        &SECRETS_GET_VALUE,
        &KMS_DECRYPT,
        &SSM_GET_PARAMETERS,
        &STS_CALLER_IDENTITY,
        &S3_GET_OBJECT,
    ],
    &[
        &CW_PUT_METRIC_DATA,
        &LOGS_PUT_EVENTS,
        &EC2_DESCRIBE_INSTANCES,
        &LOGS_CREATE_STREAM,
        &EC2_DESCRIBE_SECURITY_GROUPS,
        &LOGS_DESCRIBE_GROUPS,
        &EC2_DESCRIBE_VPCS,
    ],
];

/// A deploy pipeline: push an image, upload artifacts, roll a stack.
pub(crate) static CI_THEME: Theme = &[
    &ECR_UPLOAD_PART,
    &ECR_CHECK_LAYER,
    &S3_PUT_OBJECT,
    &STS_CALLER_IDENTITY,
    &CFN_DESCRIBE_EVENTS,
    &S3_GET_OBJECT,
    &CFN_DESCRIBE_STACKS,
    &ECR_INITIATE_UPLOAD,
    &ECR_COMPLETE_UPLOAD,
    &ECR_AUTH_TOKEN,
    &ECR_PUT_IMAGE,
    &CFN_CREATE_CHANGE_SET,
    &CFN_EXECUTE_CHANGE_SET,
    &LAMBDA_UPDATE_CODE,
];

/// A data pipeline's nightly run.
pub(crate) static BATCH_THEME: Theme = &[
    &S3_GET_OBJECT,
    &S3_PUT_OBJECT,
    &S3_LIST_OBJECTS,
    &GLUE_GET_PARTITIONS,
    &ATHENA_GET_QUERY,
    &ATHENA_START_QUERY,
    &ATHENA_GET_RESULTS,
    &GLUE_GET_TABLE,
    &DDB_BATCH_WRITE,
];

/// The monthly cost report.
pub(crate) static MONTHLY_THEME: Theme = &[
    &CE_GET_COST,
    &S3_PUT_OBJECT,
    &ORG_LIST_ACCOUNTS,
    &STS_CALLER_IDENTITY,
];

/// A request-serving back end, regional by nature.
pub(crate) static REGIONAL_THEME: Theme = &[
    &DDB_GET_ITEM,
    &DDB_QUERY,
    &SQS_SEND,
    &DDB_PUT_ITEM,
    &KINESIS_PUT_RECORDS,
    &S3_GET_OBJECT,
    &KMS_DECRYPT,
];

/// An engineer at a terminal.
pub(crate) static HUMAN_THEME: Theme = &[
    &S3_LIST_OBJECTS,
    &S3_GET_OBJECT,
    &LOGS_FILTER_EVENTS,
    &EC2_DESCRIBE_INSTANCES,
    &STS_CALLER_IDENTITY,
    &S3_LIST_BUCKETS,
    &CFN_DESCRIBE_STACKS,
    &LAMBDA_GET_FUNCTION,
    &DDB_SCAN,
    &SSM_GET_PARAMETER,
    &LOGS_DESCRIBE_GROUPS,
    &S3_PUT_OBJECT,
    &IAM_GET_USER,
    &SQS_ATTRIBUTES,
];

/// An attacker finding out what a stolen key can reach.
pub(crate) static RECON_THEME: Theme = &[
    &STS_CALLER_IDENTITY,
    &S3_LIST_BUCKETS,
    &IAM_LIST_USERS,
    &IAM_LIST_ROLES,
    &IAM_LIST_ATTACHED_POLICIES,
    &EC2_DESCRIBE_INSTANCES,
    &IAM_ACCOUNT_DETAILS,
];

/// Probing for permissions the key does not have.
pub(crate) static PROBE_THEME: Theme = &[
    &IAM_LIST_USERS,
    &IAM_LIST_ROLES,
    &IAM_ACCOUNT_DETAILS,
    &SECRETS_LIST,
    &SECRETS_GET_VALUE,
    &KMS_LIST_KEYS,
    &LAMBDA_LIST_FUNCTIONS,
    &RDS_DESCRIBE_INSTANCES,
    &SSM_DESCRIBE_PARAMETERS,
    &EC2_DESCRIBE_INSTANCES,
    &S3_GET_OBJECT,
    &DDB_SCAN,
];

/// Persistence: a new user with admin rights and its own key.
pub(crate) static ESCALATION: [&ActionDef; 3] = [
    &IAM_CREATE_USER,
    &IAM_ATTACH_USER_POLICY,
    &IAM_CREATE_ACCESS_KEY,
];

/// A region with the UTC offset (minutes) of the people and traffic near it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RegionDef {
    /// AWS region name.
    pub name: &'static str,
    /// Local time offset from UTC, in minutes.
    pub utc_offset_min: i32,
}

/// The regions keys are homed in; `us-east-1` first, where global services log.
pub(crate) static REGIONS: [RegionDef; 8] = [
    RegionDef {
        name: "us-east-1",
        utc_offset_min: -300,
    },
    RegionDef {
        name: "us-west-2",
        utc_offset_min: -480,
    },
    RegionDef {
        name: "eu-west-1",
        utc_offset_min: 0,
    },
    RegionDef {
        name: "eu-central-1",
        utc_offset_min: 60,
    },
    RegionDef {
        name: "ap-southeast-1",
        utc_offset_min: 480,
    },
    RegionDef {
        name: "ap-northeast-1",
        utc_offset_min: 540,
    },
    RegionDef {
        name: "sa-east-1",
        utc_offset_min: -180,
    },
    RegionDef {
        name: "ap-south-1",
        utc_offset_min: 330,
    },
];

/// Index into [`REGIONS`].
pub(crate) type Region = u8;

/// Picks a home region, weighted towards the big ones as real fleets are.
pub(crate) fn home_region(rng: &mut SmallRng) -> Region {
    const WEIGHTED: [Region; 12] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 7];
    WEIGHTED[rng.gen_range(0..WEIGHTED.len())]
}

/// Service and project words that make up principal names.
pub(crate) static PROJECTS: [&str; 20] = [
    "billing",
    "payments",
    "reporting",
    "search",
    "ingest",
    "notify",
    "orders",
    "inventory",
    "checkout",
    "ledger",
    "catalog",
    "media",
    "analytics",
    "audit",
    "export",
    "pricing",
    "shipping",
    "identity",
    "mailer",
    "warehouse",
];

/// People who hold personal access keys.
pub(crate) static PEOPLE: [&str; 8] = [
    "alice.nguyen",
    "bob.kowalski",
    "chen.wei",
    "dana.okafor",
    "emil.larsen",
    "farah.haddad",
    "gita.rao",
    "hugo.martin",
];
