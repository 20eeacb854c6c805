# Wiring of the packaged stack (build/stack), checked offline against a mocked
# AWS provider. tests/infra runs it after `make package`; by hand:
#   cd build/stack && terraform init && terraform test
mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["us-east-1a", "us-east-1b", "us-east-1c"], zone_ids = ["use1-az6", "use1-az1", "use1-az4"] }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "us-east-1" }
  }
  # Provider-side validation needs well-formed ARNs where mocks would be random strings.
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/efs-ml-dev-lambda" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::efs-ml-dev-models-123456789012" }
  }
  mock_resource "aws_efs_file_system" {
    defaults = { arn = "arn:aws:elasticfilesystem:us-east-1:123456789012:file-system/fs-12345678" }
  }
  mock_resource "aws_efs_access_point" {
    defaults = { arn = "arn:aws:elasticfilesystem:us-east-1:123456789012:access-point/fsap-12345678" }
  }
  mock_resource "aws_lambda_function" {
    defaults = { arn = "arn:aws:lambda:us-east-1:123456789012:function:efs-ml-dev", version = "$LATEST" }
  }
  mock_resource "aws_lambda_alias" {
    defaults = { arn = "arn:aws:lambda:us-east-1:123456789012:function:efs-ml-dev:live", invoke_arn = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:efs-ml-dev:live/invocations" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/efs-ml-dev" }
  }
  mock_resource "aws_cloudwatch_event_rule" {
    defaults = { arn = "arn:aws:events:us-east-1:123456789012:rule/efs-ml-dev-reclaim_debris-event" }
  }
  mock_resource "aws_subnet" {
    defaults = { arn = "arn:aws:ec2:us-east-1:123456789012:subnet/subnet-12345678" }
  }
  mock_resource "aws_security_group" {
    defaults = { arn = "arn:aws:ec2:us-east-1:123456789012:security-group/sg-12345678" }
  }
  mock_resource "aws_default_security_group" {
    defaults = { arn = "arn:aws:ec2:us-east-1:123456789012:security-group/sg-00000000" }
  }
  mock_resource "aws_sqs_queue" {
    defaults = { arn = "arn:aws:sqs:us-east-1:123456789012:efs-ml-dev-failed-events", url = "https://sqs.us-east-1.amazonaws.com/123456789012/efs-ml-dev-failed-events" }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:us-east-1:123456789012:efs-ml-dev-alarms" }
  }
  mock_resource "aws_vpc" {
    defaults = { arn = "arn:aws:ec2:us-east-1:123456789012:vpc/vpc-12345678" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555" }
  }
  mock_resource "aws_api_gateway_rest_api" {
    defaults = { execution_arn = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234" }
  }
}

# Mocks give every resource of a type the same values; these need their own.
override_resource {
  target = aws_s3_bucket.artifacts
  values = { id = "efs-ml-dev-artifacts-123456789012", arn = "arn:aws:s3:::efs-ml-dev-artifacts-123456789012" }
}
override_resource {
  target = aws_iam_role.api
  values = { arn = "arn:aws:iam::123456789012:role/efs-ml-dev-api" }
}
override_resource {
  target = aws_iam_role.sweeper
  values = { arn = "arn:aws:iam::123456789012:role/efs-ml-dev-sweeper" }
}
override_resource {
  target = aws_iam_role.jobs
  values = { arn = "arn:aws:iam::123456789012:role/efs-ml-dev-jobs" }
}
override_data {
  target = data.aws_iam_policy_document.function_base
  values = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"Base\"}]}" }
}
override_data {
  target = data.aws_iam_policy_document.read_bucket
  values = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Sid\":\"Read\"}]}" }
}

run "defaults" {
  command = apply

  assert {
    condition     = length(local.chalice_functions) >= 2
    error_message = "expected the REST handler and the S3 handler at least"
  }

  assert {
    condition = alltrue([for f in values(local.chalice_functions) :
      length(f.file_system_config) == 1
      && f.file_system_config[0].arn == aws_efs_access_point.lambda.arn
      && f.file_system_config[0].local_mount_path == "/mnt/efs"
    ])
    error_message = "every function must mount the access point at /mnt/efs"
  }

  assert {
    condition = alltrue([for f in values(local.chalice_functions) :
      toset(f.vpc_config[0].subnet_ids) == toset(aws_subnet.private[*].id)
      && toset(f.vpc_config[0].security_group_ids) == toset([aws_security_group.lambda.id])
    ])
    error_message = "every function must run in every private subnet with the Lambda security group"
  }

  assert {
    condition     = alltrue([for f in values(local.chalice_functions) : f.runtime == "python3.12"])
    error_message = "every function must run on python3.12"
  }

  assert {
    condition = (local.chalice_functions.api_handler.reserved_concurrent_executions == -1
      && local.chalice_functions.on_object_created.reserved_concurrent_executions == 5
      && local.chalice_functions.reclaim_debris.reserved_concurrent_executions == 1
    && alltrue([for f in values(local.chalice_functions) : f.publish == false]))
    error_message = "by default the S3-event function is capped at 5 and the sweep at 1, api_handler is unreserved, nothing is provisioned"
  }

  assert {
    condition = (local.chalice_functions.api_handler.timeout <= 29
      && local.chalice_functions.on_object_created.timeout == 900
    && local.chalice_functions.reclaim_debris.timeout == 300)
    error_message = "api_handler must end before API Gateway's 29 s; the S3-event function keeps 900 s, the sweep 300 s"
  }

  # One upload of the package, used by every function.
  assert {
    condition = alltrue([for f in values(local.chalice_functions) :
      f.s3_bucket == aws_s3_bucket.artifacts.id && f.s3_key == aws_s3_object.deployment.key
      && f.s3_object_version == aws_s3_object.deployment.version_id && f.filename == null
      && f.source_code_hash == aws_s3_object.deployment.source_hash
    ])
    error_message = "every function must take its code from the one aws_s3_object, with its hash"
  }

  assert {
    condition = (aws_s3_bucket.artifacts.id != aws_s3_bucket.models.id
      && aws_s3_bucket_public_access_block.artifacts.block_public_acls
      && aws_s3_bucket_public_access_block.artifacts.block_public_policy
      && aws_s3_bucket_public_access_block.artifacts.ignore_public_acls
      && aws_s3_bucket_public_access_block.artifacts.restrict_public_buckets
      && one(aws_s3_bucket_versioning.artifacts.versioning_configuration).status == "Enabled"
      && one(one(aws_s3_bucket_server_side_encryption_configuration.artifacts.rule).apply_server_side_encryption_by_default).sse_algorithm == "AES256"
      && anytrue([for st in data.aws_iam_policy_document.artifacts_bucket.statement :
    st.effect == "Deny" && contains([for c in st.condition : c.variable], "aws:SecureTransport")]))
    error_message = "the artifacts bucket must be private, versioned, encrypted and TLS-only"
  }

  # No function may read the package: no role names the artifacts bucket.
  assert {
    condition = alltrue(flatten([for doc in [data.aws_iam_policy_document.lambda, data.aws_iam_policy_document.api,
      data.aws_iam_policy_document.sweeper, data.aws_iam_policy_document.read_bucket,
      data.aws_iam_policy_document.function_base] : [
      for st in doc.statement : [for r in st.resources : !strcontains(r, aws_s3_bucket.artifacts.arn)]
    ]]))
    error_message = "function roles must have no grant on the artifacts bucket"
  }

  assert {
    condition     = length(aws_lambda_provisioned_concurrency_config.api_handler) == 0
    error_message = "no provisioned concurrency by default"
  }

  assert {
    condition = (length(aws_subnet.private) == 2
      && aws_subnet.private[*].availability_zone_id == ["use1-az1", "use1-az4"]
    && toset(aws_efs_mount_target.this[*].subnet_id) == toset(aws_subnet.private[*].id))
    error_message = "two AZs by default, the first two zone IDs in sorted order, and a mount target in every subnet"
  }

  assert {
    condition     = alltrue([for s in aws_subnet.private : !s.map_public_ip_on_launch])
    error_message = "subnets must be private"
  }

  assert {
    condition = (aws_vpc_endpoint.s3.vpc_endpoint_type == "Gateway"
    && aws_vpc_endpoint.s3.route_table_ids == toset([aws_route_table.private.id]))
    error_message = "the private route table needs the S3 gateway endpoint"
  }

  assert {
    condition = (length(aws_security_group.efs.ingress) == 0
      && aws_vpc_security_group_ingress_rule.efs_nfs_from_lambda.security_group_id == aws_security_group.efs.id
      && aws_vpc_security_group_ingress_rule.efs_nfs_from_lambda.from_port == 2049
      && aws_vpc_security_group_ingress_rule.efs_nfs_from_lambda.to_port == 2049
      && aws_vpc_security_group_ingress_rule.efs_nfs_from_lambda.ip_protocol == "tcp"
      && aws_vpc_security_group_ingress_rule.efs_nfs_from_lambda.referenced_security_group_id == aws_security_group.lambda.id
      && aws_vpc_security_group_ingress_rule.efs_nfs_from_lambda.cidr_ipv4 == null
    && aws_vpc_security_group_ingress_rule.efs_nfs_from_lambda.cidr_ipv6 == null)
    error_message = "EFS may only accept NFS (2049/tcp) from the Lambda security group"
  }

  assert {
    condition = (aws_efs_file_system.this.encrypted
      && aws_efs_file_system.this.throughput_mode == "elastic"
    && contains([for p in aws_efs_file_system.this.lifecycle_policy : p.transition_to_ia], "AFTER_30_DAYS"))
    error_message = "EFS must be encrypted, elastic, and move cold files to IA after 30 days"
  }

  assert {
    condition = (aws_efs_access_point.lambda.posix_user[0].uid == 1000
      && aws_efs_access_point.lambda.posix_user[0].gid == 1000
      && aws_efs_access_point.lambda.root_directory[0].path == "/lambda"
      && aws_efs_access_point.lambda.root_directory[0].creation_info[0].owner_uid == 1000
      && aws_efs_access_point.lambda.root_directory[0].creation_info[0].owner_gid == 1000
    && aws_efs_access_point.lambda.root_directory[0].creation_info[0].permissions == "0755")
    error_message = "the access point's user must own its /lambda root"
  }

  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.efs.statement :
      s.effect == "Deny" ? (
        contains([for c in s.condition : c.variable], "aws:SecureTransport")
        || contains([for c in s.condition : c.variable], "elasticfilesystem:AccessPointArn")
      ) : true
    ]) && length([for s in data.aws_iam_policy_document.efs.statement : s if s.effect == "Deny"]) == 2
    error_message = "the file-system policy must deny non-TLS access and access outside the access point"
  }

  # Least privilege: no wildcard action; "*" as a resource only for the
  # read-only EC2 Describe actions (no resource-level permissions exist).
  assert {
    condition = alltrue(flatten([for doc in [data.aws_iam_policy_document.function_base, data.aws_iam_policy_document.read_bucket,
      data.aws_iam_policy_document.lambda, data.aws_iam_policy_document.api, data.aws_iam_policy_document.sweeper] : [
      for s in doc.statement :
      !contains(s.actions, "*") && alltrue([for a in s.actions : !endswith(a, ":*")])
      && (!contains(s.resources, "*") || alltrue([for a in s.actions : startswith(a, "ec2:Describe")]))
    ]]))
    error_message = "the function policies must not use wildcard actions, nor \"*\" resources beyond ec2:Describe*"
  }

  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.function_base.statement :
      one([for c in s.condition : c.variable]) == "ec2:Vpc" && one(flatten([for c in s.condition : c.values])) == aws_vpc.this.arn
      && alltrue([for r in s.resources : startswith(r, "arn:aws:ec2:us-east-1:123456789012:")])
      if anytrue([for a in s.actions : startswith(a, "ec2:") && !startswith(a, "ec2:Describe")])
    ])
    error_message = "ENI actions must be limited to this account, region and VPC"
  }

  assert {
    condition = toset(flatten([for s in data.aws_iam_policy_document.function_base.statement : s.resources
      if contains(s.actions, "ec2:CreateNetworkInterface")])) == toset(concat(aws_subnet.private[*].arn,
      [aws_security_group.lambda.arn, aws_default_security_group.this.arn,
    "arn:aws:ec2:us-east-1:123456789012:network-interface/*"]))
    error_message = "ENIs may be created only in the stack's subnets with its security groups"
  }

  assert {
    condition = alltrue(flatten([for doc in [data.aws_iam_policy_document.read_bucket, data.aws_iam_policy_document.api] : [
      for s in doc.statement : [
        for r in s.resources : contains([
          "${aws_s3_bucket.models.arn}/models/*", "${aws_s3_bucket.models.arn}/inputs/*",
          "${aws_s3_bucket.models.arn}/outputs/*", aws_s3_bucket.models.arn,
        ], r)
    ] if anytrue([for a in s.actions : startswith(a, "s3:")])]]))
    error_message = "S3 permissions must be limited to models/, inputs/, outputs/ of this bucket"
  }

  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.read_bucket.statement :
      !contains(s.resources, "${aws_s3_bucket.models.arn}/outputs/*") && !contains(s.actions, "s3:PutObject")
    ])
    error_message = "outputs/ is write-only for the functions, and reading grants no write"
  }

  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.function_base.statement :
      length(s.condition) == 1 && one([for c in s.condition : c.variable]) == "elasticfilesystem:AccessPointArn"
      && one(flatten([for c in s.condition : c.values])) == aws_efs_access_point.lambda.arn
      if anytrue([for a in s.actions : startswith(a, "elasticfilesystem:")])
    ])
    error_message = "EFS permissions must be conditioned on the access point"
  }

  # The API role's own statements (it also has the base and read ones):
  # writes only, to outputs/ and the two upload prefixes, and its logs.
  assert {
    condition = alltrue(flatten([for s in data.aws_iam_policy_document.api.statement : [
      for r in s.resources : contains([
        "${aws_s3_bucket.models.arn}/models/*", "${aws_s3_bucket.models.arn}/inputs/*",
        "${aws_s3_bucket.models.arn}/outputs/*",
      ], r)
    ] if s.sid != "WriteOwnLogs"])) && alltrue([for s in data.aws_iam_policy_document.api.statement : s.actions == toset(["s3:PutObject"]) if !contains(["WriteOwnLogs", "DeleteModelsAndInputs"], s.sid)])
    error_message = "the API role may add only s3:PutObject on outputs/ and the upload prefixes"
  }

  # DELETE /models|inputs/{name}: exactly DeleteObject, on models/ and inputs/ only.
  assert {
    condition = (one([for s in data.aws_iam_policy_document.api.statement : s.actions if s.sid == "DeleteModelsAndInputs"]) == toset(["s3:DeleteObject"])
      && one([for s in data.aws_iam_policy_document.api.statement : s.resources if s.sid == "DeleteModelsAndInputs"]) == toset([
      "${aws_s3_bucket.models.arn}/models/*", "${aws_s3_bucket.models.arn}/inputs/*"])
      && alltrue([for s in data.aws_iam_policy_document.api.statement : !contains(s.actions, "s3:DeleteObject") if s.sid != "DeleteModelsAndInputs"])
    && alltrue([for s in data.aws_iam_policy_document.read_bucket.statement : !contains(s.actions, "s3:DeleteObject")]))
    error_message = "the API role may delete only models/ and inputs/ objects (s3:DeleteObject), and no other role may delete"
  }

  assert {
    condition = (data.aws_iam_policy_document.lambda.source_policy_documents == tolist([
      data.aws_iam_policy_document.function_base.json, data.aws_iam_policy_document.read_bucket.json])
      && alltrue([for s in data.aws_iam_policy_document.lambda.statement :
      !contains(s.actions, "s3:PutObject") && !contains(s.actions, "s3:DeleteObject")])
      && one([for s in data.aws_iam_policy_document.lambda.statement : s if contains(s.actions, "sqs:SendMessage")]).resources == toset([aws_sqs_queue.failed_events.arn])
    )
    error_message = "the S3-event role must not write to S3, and may send only to the failed-events queue"
  }

  assert {
    condition = (data.aws_iam_policy_document.sweeper.source_policy_documents == tolist([data.aws_iam_policy_document.function_base.json])
      && [for s in data.aws_iam_policy_document.sweeper.statement : s.sid] == ["WriteOwnLogs"]
      && local.chalice_functions.reclaim_debris.role == aws_iam_role.sweeper.arn
    && contains(one(data.aws_iam_policy_document.efs.statement[2].principals).identifiers, aws_iam_role.sweeper.arn))
    error_message = "the sweep runs as its own role: EFS write through the access point and its logs, no S3"
  }

  # Each role writes only the log groups of its own functions.
  assert {
    condition = alltrue([for role, doc in {
      lambda  = data.aws_iam_policy_document.lambda, api = data.aws_iam_policy_document.api,
      sweeper = data.aws_iam_policy_document.sweeper, jobs = data.aws_iam_policy_document.jobs,
      job_dead_letters = data.aws_iam_policy_document.job_dead_letters } :
      one([for s in doc.statement : s.resources if s.sid == "WriteOwnLogs"]) == toset([
        for fn, r in local.chalice_function_roles : "${aws_cloudwatch_log_group.lambda[fn].arn}:*" if r == role
    ])]) && local.chalice_function_roles == { api_handler = "api", on_object_created = "lambda", reclaim_debris = "sweeper", run_job_blocks = "jobs", fail_dead_blocks = "job_dead_letters" }
    error_message = "each role may write only its own functions' log streams"
  }

  # Globally unique names (IAM, S3) and the dashboard carry the region.
  assert {
    condition = (aws_iam_role.lambda.name == "efs-ml-dev-us-east-1-lambda" && aws_iam_role.api.name == "efs-ml-dev-us-east-1-api"
      && aws_iam_role.sweeper.name == "efs-ml-dev-us-east-1-sweeper"
      && aws_s3_bucket.models.bucket == "efs-ml-dev-us-east-1-models-123456789012"
    && aws_s3_bucket.artifacts.bucket == "efs-ml-dev-us-east-1-artifacts-123456789012")
    error_message = "role, bucket and dashboard names must carry the region"
  }

  assert {
    condition = (aws_s3_bucket_public_access_block.models.block_public_acls
      && aws_s3_bucket_public_access_block.models.block_public_policy
      && aws_s3_bucket_public_access_block.models.ignore_public_acls
    && aws_s3_bucket_public_access_block.models.restrict_public_buckets)
    error_message = "the bucket must block every kind of public access"
  }

  assert {
    condition = (one(aws_s3_bucket_versioning.models.versioning_configuration).status == "Enabled"
      && !aws_s3_bucket.models.force_destroy
    && one(one(aws_s3_bucket_server_side_encryption_configuration.models.rule).apply_server_side_encryption_by_default).sse_algorithm != "")
    error_message = "the bucket must be versioned, encrypted and not force-destroyed by default"
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.bucket.statement :
    s.effect == "Deny" && contains([for c in s.condition : c.variable], "aws:SecureTransport")])
    error_message = "the bucket policy must deny requests without TLS"
  }

  assert {
    condition = alltrue(flatten([
      for path, item in jsondecode(aws_api_gateway_rest_api.rest_api.body).paths : [
        for method, op in item : op.security == [{ api_key = [] }] if method != "options"
      ]
    ]))
    error_message = "every API operation must require the API key"
  }

  assert {
    condition = (jsondecode(aws_api_gateway_rest_api.rest_api.body).securityDefinitions.api_key == {
      type = "apiKey", name = "x-api-key", in = "header" }
      && one(aws_api_gateway_usage_plan.this.api_stages).stage == aws_api_gateway_stage.rest_api.stage_name
      && aws_api_gateway_usage_plan_key.client.key_id == aws_api_gateway_api_key.client.id
    && aws_api_gateway_usage_plan_key.client.usage_plan_id == aws_api_gateway_usage_plan.this.id)
    error_message = "the API key must be checked from x-api-key and bound to the usage plan of the stage"
  }

  assert {
    condition = (toset(keys(jsondecode(aws_api_gateway_rest_api.rest_api.body)["x-amazon-apigateway-gateway-responses"])) == toset(["DEFAULT_4XX", "DEFAULT_5XX"])
      && alltrue([for r in values(jsondecode(aws_api_gateway_rest_api.rest_api.body)["x-amazon-apigateway-gateway-responses"]) :
        strcontains(r.responseTemplates["application/json"], "\"requestId\":\"$context.requestId\"")
    ]))
    error_message = "API Gateway's own 4xx/5xx (e.g. a missing API key) must use the documented error shape, inside the API body"
  }

  assert {
    condition = (aws_api_gateway_rest_api.rest_api.name == "efs-ml-dev"
      && aws_api_gateway_rest_api.rest_api.endpoint_configuration[0].types == tolist(["REGIONAL"])
    && aws_api_gateway_deployment.rest_api.triggers.redeployment == md5(local.api_body))
    error_message = "the API is named per environment, REGIONAL by default, and redeployed when its body changes"
  }

  assert {
    condition = (length(aws_lambda_function_event_invoke_config.on_object_created.destination_config) == 1
      && aws_lambda_function_event_invoke_config.on_object_created.destination_config[0].on_failure[0].destination == aws_sqs_queue.failed_events.arn
      && aws_lambda_function_event_invoke_config.on_object_created.qualifier == "live"
      && aws_lambda_function_event_invoke_config.on_object_created.maximum_retry_attempts == 2
      && aws_lambda_function_event_invoke_config.on_object_created.maximum_event_age_in_seconds == 10800
    && aws_sqs_queue.failed_events.sqs_managed_sse_enabled && local.s3_event_functions == ["on_object_created"])
    error_message = "a failed or expired S3 event must go to the encrypted failed-events queue"
  }

  assert {
    condition = (aws_cloudwatch_metric_alarm.failed_events.dimensions.QueueName == aws_sqs_queue.failed_events.name
      && toset(keys(aws_cloudwatch_metric_alarm.function_errors)) == toset(keys(local.chalice_function_names))
      && toset(keys(aws_cloudwatch_metric_alarm.function_throttles)) == toset(keys(local.chalice_function_names))
      && aws_cloudwatch_metric_alarm.api_5xx.metric_name == "5XXError" && aws_cloudwatch_metric_alarm.api_latency.extended_statistic == "p99"
      && length(aws_sns_topic.alarms) == 0 && length(aws_cloudwatch_metric_alarm.api_5xx.alarm_actions) == 0
    && aws_cloudwatch_dashboard.this.dashboard_name == "efs-ml-dev-us-east-1")
    error_message = "alarms on the queue, every function and the API; no topic unless asked; a dashboard"
  }

  assert {
    condition = (toset(keys(aws_cloudwatch_metric_alarm.s3_event_delivery)) == toset([
      "on_object_created-destination-failures", "on_object_created-events-dropped"])
      && aws_cloudwatch_metric_alarm.s3_event_delivery["on_object_created-destination-failures"].metric_name == "DestinationDeliveryFailures"
      && aws_cloudwatch_metric_alarm.s3_event_delivery["on_object_created-events-dropped"].metric_name == "AsyncEventsDropped"
      && alltrue([for a in values(aws_cloudwatch_metric_alarm.s3_event_delivery) :
    a.dimensions.FunctionName == local.chalice_function_names.on_object_created && a.namespace == "AWS/Lambda" && a.threshold == 0]))
    error_message = "the S3-event function alarms when Lambda cannot deliver a failed event to the queue, or drops one"
  }

  assert {
    condition = (strcontains(aws_cloudwatch_dashboard.this.dashboard_body, "SEARCH('{\\\"efs-ml-dev\\\",Operation,Service}")
      && alltrue([for m in ["IngestBytes", "IngestDurationMs", "ModelLoadMs", "ModelCacheHit", "ModelCacheMiss", "ColdStart", "errorCode"] :
      strcontains(aws_cloudwatch_dashboard.this.dashboard_body, m)])
    && alltrue([for f in values(local.chalice_functions) : f.environment[0].variables.METRICS_NAMESPACE == "efs-ml-dev"]))
    error_message = "the dashboard must show the EMF metrics of the namespace the functions emit to"
  }

  # CloudWatch's dashboard schema: "metrics" is an array of arrays, one per metric.
  assert {
    condition = alltrue(flatten([for w in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : [
      for m in w.properties.metrics : can(m[0]) && !can(tostring(m))
    ] if w.type == "metric"]))
    error_message = "every metric of a dashboard widget must be an array of its own"
  }

  # Who called what: every request of the stage, one JSON line, kept and encrypted.
  assert {
    condition = (one(aws_api_gateway_stage.rest_api.access_log_settings).destination_arn == aws_cloudwatch_log_group.api_access.arn
      && alltrue([for f in ["requestId", "sourceIp", "apiKeyId", "userArn", "httpMethod", "path", "status"] :
      contains(keys(jsondecode(one(aws_api_gateway_stage.rest_api.access_log_settings).format)), f)])
      && aws_cloudwatch_log_group.api_access.retention_in_days == 365
      && aws_cloudwatch_log_group.api_access.kms_key_id == aws_kms_key.logs.arn && aws_kms_key.logs.enable_key_rotation
      && one([for s in data.aws_iam_policy_document.logs_key.statement : one(s.condition).values if s.sid == "CloudWatchLogsEncryptsTheAccessLog"]) == tolist([
    "arn:aws:logs:us-east-1:123456789012:log-group:${aws_cloudwatch_log_group.api_access.name}"]))
    error_message = "the API stage must write its access log to a retained group encrypted with the stack's key, which only that group may use"
  }

  assert {
    condition = (length(aws_api_gateway_account.this) == 1
      && aws_api_gateway_account.this[0].cloudwatch_role_arn == aws_iam_role.api_gateway_logs[0].arn
      && endswith(aws_iam_role_policy_attachment.api_gateway_logs[0].policy_arn, "service-role/AmazonAPIGatewayPushToCloudWatchLogs")
    && length(aws_iam_policy.invoke) == 0)
    error_message = "by default the stack sets API Gateway's CloudWatch role (access logs need it); no invoke policy with API keys"
  }

  assert {
    condition = (aws_cloudwatch_event_rule.reclaim_debris-event.name == "efs-ml-dev-reclaim_debris-event"
    && aws_cloudwatch_event_target.reclaim_debris-event.arn == aws_lambda_alias.reclaim_debris.arn)
    error_message = "the sweep's schedule is named per environment and invokes the live alias its permission allows"
  }

  assert {
    condition = (toset([for g in aws_cloudwatch_log_group.lambda : g.name]) == toset([
      for n in values(local.chalice_function_names) : "/aws/lambda/${n}"])
    && alltrue([for g in aws_cloudwatch_log_group.lambda : g.retention_in_days == 7]))
    error_message = "every function needs a log group with 7 days retention"
  }
}

run "scaled_out" {
  command = apply

  variables {
    az_count                 = 3
    efs_throughput_mode      = "provisioned"
    reserved_concurrency     = { on_object_created = 8 }
    provisioned_concurrency  = { api_handler = 2 }
    api_endpoint_type        = "EDGE"
    alarm_emails             = ["ops@example.com"]
    alarm_topic_arn          = "arn:aws:sns:us-east-1:123456789012:existing"
    s3_event_max_age_seconds = 3600
  }

  assert {
    condition = (aws_api_gateway_rest_api.rest_api.endpoint_configuration[0].types == tolist(["EDGE"])
    && aws_lambda_function_event_invoke_config.on_object_created.maximum_event_age_in_seconds == 3600)
    error_message = "EDGE and the event age are options"
  }

  assert {
    condition = (length(aws_sns_topic.alarms) == 1 && aws_sns_topic_subscription.alarm_emails["ops@example.com"].protocol == "email"
      && alltrue([for a in concat([aws_cloudwatch_metric_alarm.failed_events, aws_cloudwatch_metric_alarm.api_5xx], values(aws_cloudwatch_metric_alarm.function_errors)) :
    toset(a.alarm_actions) == toset([aws_sns_topic.alarms[0].arn, "arn:aws:sns:us-east-1:123456789012:existing"])]))
    error_message = "alarm_emails creates a topic that every alarm notifies, next to alarm_topic_arn"
  }

  assert {
    condition = (length(aws_efs_mount_target.this) == 3
    && toset(aws_efs_mount_target.this[*].subnet_id) == toset(aws_subnet.private[*].id))
    error_message = "a mount target in each of the three subnets"
  }

  assert {
    condition     = aws_efs_file_system.this.provisioned_throughput_in_mibps == 10
    error_message = "provisioned mode uses efs_provisioned_throughput_mibps"
  }

  assert {
    condition = (local.chalice_functions.on_object_created.reserved_concurrent_executions == 8
      && local.chalice_functions.api_handler.reserved_concurrent_executions == -1
    && local.chalice_functions.reclaim_debris.reserved_concurrent_executions == -1)
    error_message = "reserved concurrency applies to the listed function only"
  }

  assert {
    condition = (local.chalice_functions.api_handler.publish
      && length(aws_lambda_provisioned_concurrency_config.api_handler) == 1
      && aws_lambda_provisioned_concurrency_config.api_handler[0].provisioned_concurrent_executions == 2
      && aws_lambda_provisioned_concurrency_config.api_handler[0].qualifier == "live"
    && length(aws_lambda_provisioned_concurrency_config.on_object_created) == 0)
    error_message = "provisioned concurrency on the live alias of the listed function only"
  }
}

run "chosen_zone_ids" {
  command = plan

  variables {
    az_ids = ["use1-az4", "use1-az6", "use1-az2"]
  }

  assert {
    condition     = aws_subnet.private[*].availability_zone_id == ["use1-az4", "use1-az6", "use1-az2"] && length(aws_efs_mount_target.this) == 3
    error_message = "az_ids places one subnet and one mount target in each named zone, in order"
  }
}

run "rejects_a_single_zone_id" {
  command = plan

  variables {
    az_ids = ["use1-az1"]
  }

  expect_failures = [var.az_ids]
}

run "names_without_the_region_for_an_old_stack" {
  command = plan

  variables {
    region_in_global_names = false
  }

  assert {
    condition     = aws_iam_role.api.name == "efs-ml-dev-api" && aws_s3_bucket.models.bucket == "efs-ml-dev-models-123456789012"
    error_message = "region_in_global_names = false keeps the names a stack had before they carried the region"
  }
}

run "iam_auth" {
  command = apply

  variables {
    api_auth                   = "iam"
    manage_api_gateway_account = false
  }

  assert {
    condition = (alltrue(flatten([
      for path, item in jsondecode(aws_api_gateway_rest_api.rest_api.body).paths : [
        for method, op in item : op.security == [{ sigv4 = [] }] if method != "options"
      ]
      ])) && jsondecode(aws_api_gateway_rest_api.rest_api.body).securityDefinitions == {
      sigv4 = { type = "apiKey", name = "Authorization", in = "header", "x-amazon-apigateway-authtype" = "awsSigv4" } }
    && aws_api_gateway_deployment.rest_api.triggers.redeployment == md5(local.chalice_api_swagger_iam))
    error_message = "api_auth = iam must put SigV4 (AWS_IAM) on every operation but preflights, instead of the API key, and redeploy"
  }

  assert {
    condition = (length(aws_iam_policy.invoke) == 1
      && one(one(data.aws_iam_policy_document.invoke.statement).actions) == "execute-api:Invoke"
      && one(one(data.aws_iam_policy_document.invoke.statement).resources) == "${aws_api_gateway_rest_api.rest_api.execution_arn}/api/*/*"
    && length(aws_api_gateway_account.this) == 0 && length(aws_iam_role.api_gateway_logs) == 0)
    error_message = "iam auth comes with a policy to invoke this stage; manage_api_gateway_account = false leaves the account setting alone"
  }
}

run "rejects_an_unknown_auth" {
  command = plan

  variables {
    api_auth = "none"
  }

  expect_failures = [var.api_auth]
}

run "rejects_a_single_az" {
  command = plan

  variables {
    az_count = 1
  }

  expect_failures = [var.az_count]
}

run "rejects_an_unknown_endpoint_type" {
  command = plan

  variables {
    api_endpoint_type = "PRIVATE"
  }

  expect_failures = [var.api_endpoint_type]
}

# Batch jobs (infra/jobs.tf, infra/stack.py wire_job_queue).
run "jobs" {
  command = apply

  variables {
    job_max_concurrency   = 4
    result_retention_days = 7
  }

  assert {
    condition = (aws_lambda_event_source_mapping.run_job_blocks-sqs-event-source.function_response_types == toset(["ReportBatchItemFailures"])
      && aws_lambda_event_source_mapping.run_job_blocks-sqs-event-source.scaling_config[0].maximum_concurrency == 4
    && aws_lambda_event_source_mapping.run_job_blocks-sqs-event-source.event_source_arn == aws_sqs_queue.jobs.arn)
    error_message = "the jobs mapping reads the jobs queue, at most job_max_concurrency at once, with partial batch failures"
  }

  assert {
    condition = (aws_sqs_queue.jobs.sqs_managed_sse_enabled && aws_sqs_queue.jobs_dlq.sqs_managed_sse_enabled
      && jsondecode(aws_sqs_queue.jobs.redrive_policy).maxReceiveCount == 3
    && aws_sqs_queue.jobs.visibility_timeout_seconds == 6 * local.chalice_functions.run_job_blocks.timeout)
    error_message = "encrypted queues, a DLQ after 3 attempts, a visibility timeout of six worker timeouts"
  }

  assert {
    condition = (aws_vpc_endpoint.sqs.vpc_endpoint_type == "Interface" && aws_vpc_endpoint.sqs.private_dns_enabled
    && toset(aws_vpc_endpoint.sqs.subnet_ids) == toset(aws_subnet.private[*].id))
    error_message = "the functions reach SQS through an interface endpoint in every private subnet"
  }

  assert {
    condition = (local.chalice_functions.run_job_blocks.role == aws_iam_role.jobs.arn
    && aws_cloudwatch_metric_alarm.jobs_dlq.dimensions.QueueName == aws_sqs_queue.jobs_dlq.name)
    error_message = "the worker runs as the jobs role; the DLQ has an alarm"
  }

  assert {
    condition = (aws_lambda_event_source_mapping.fail_dead_blocks-sqs-event-source.event_source_arn == aws_sqs_queue.jobs_dlq.arn
      && aws_lambda_event_source_mapping.fail_dead_blocks-sqs-event-source.function_response_types == toset(["ReportBatchItemFailures"])
      && aws_lambda_event_source_mapping.fail_dead_blocks-sqs-event-source.scaling_config[0].maximum_concurrency == 2
      && local.chalice_functions.fail_dead_blocks.role == aws_iam_role.job_dead_letters.arn
      && aws_sqs_queue.jobs_dlq.visibility_timeout_seconds >= local.chalice_functions.fail_dead_blocks.timeout
    && aws_cloudwatch_metric_alarm.jobs_dead_letters.dimensions.QueueName == aws_sqs_queue.jobs_dlq.name)
    error_message = "fail_dead_blocks reads the DLQ as its own role, at most 2 at once, with partial batch failures; an alarm counts the letters"
  }

  assert {
    condition = length([for r in aws_s3_bucket_lifecycle_configuration.models.rule : r
    if try(r.expiration[0].days, 0) == 7 && contains(["outputs/", "jobs/"], try(r.filter[0].prefix, ""))]) == 2
    error_message = "results and job documents expire after result_retention_days in S3"
  }
}

run "rejects_a_job_concurrency_sqs_cannot_take" {
  command = plan

  variables {
    job_max_concurrency = 1
  }

  expect_failures = [var.job_max_concurrency]
}
