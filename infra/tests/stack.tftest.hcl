# Wiring of the packaged stack (build/stack), checked offline against a mocked
# AWS provider. tests/infra runs it after `make package`; by hand:
#   cd build/stack && terraform init && terraform test
mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["us-east-1a", "us-east-1b", "us-east-1c"] }
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
  mock_resource "aws_api_gateway_rest_api" {
    defaults = { execution_arn = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234" }
  }
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
    condition = alltrue([for f in values(local.chalice_functions) :
    f.reserved_concurrent_executions == -1 && f.publish == false])
    error_message = "reserved and provisioned concurrency must be off by default"
  }

  assert {
    condition     = length(aws_lambda_provisioned_concurrency_config.api_handler) == 0
    error_message = "no provisioned concurrency by default"
  }

  assert {
    condition = (length(aws_subnet.private) == 2
      && length(distinct(aws_subnet.private[*].availability_zone)) == 2
    && toset(aws_efs_mount_target.this[*].subnet_id) == toset(aws_subnet.private[*].id))
    error_message = "two AZs by default, and a mount target in every subnet"
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

  # Least privilege: no wildcard action or resource; S3 only on this bucket's
  # prefixes; EFS only through the access point.
  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.lambda.statement :
      !contains(s.actions, "*") && !contains(s.resources, "*")
      && alltrue([for a in s.actions : !endswith(a, ":*")])
    ])
    error_message = "the function policy must not use wildcard actions or resources"
  }

  assert {
    condition = alltrue(flatten([for s in data.aws_iam_policy_document.lambda.statement : [
      for r in s.resources : contains([
        "${aws_s3_bucket.models.arn}/models/*", "${aws_s3_bucket.models.arn}/inputs/*",
        "${aws_s3_bucket.models.arn}/outputs/*", aws_s3_bucket.models.arn,
      ], r)
    ] if anytrue([for a in s.actions : startswith(a, "s3:")])]))
    error_message = "S3 permissions must be limited to models/, inputs/, outputs/ of this bucket"
  }

  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.lambda.statement :
      s.resources == toset(["${aws_s3_bucket.models.arn}/outputs/*"])
      if contains(s.actions, "s3:PutObject") && contains(s.resources, "${aws_s3_bucket.models.arn}/outputs/*")
      ]) && alltrue([for s in data.aws_iam_policy_document.lambda.statement :
      !contains(s.resources, "${aws_s3_bucket.models.arn}/outputs/*") if contains(s.actions, "s3:GetObject")
    ])
    error_message = "outputs/ is write-only for the functions"
  }

  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.lambda.statement :
      length(s.condition) == 1 && one([for c in s.condition : c.variable]) == "elasticfilesystem:AccessPointArn"
      && one(flatten([for c in s.condition : c.values])) == aws_efs_access_point.lambda.arn
      if anytrue([for a in s.actions : startswith(a, "elasticfilesystem:")])
    ])
    error_message = "EFS permissions must be conditioned on the access point"
  }

  # The API role's own statements (it also inherits the default role's):
  # writes only, to outputs/ and the two upload prefixes, never a wildcard.
  assert {
    condition = alltrue(flatten([for s in data.aws_iam_policy_document.api.statement : [
      for r in s.resources : contains([
        "${aws_s3_bucket.models.arn}/models/*", "${aws_s3_bucket.models.arn}/inputs/*",
        "${aws_s3_bucket.models.arn}/outputs/*",
      ], r)
    ]])) && alltrue([for s in data.aws_iam_policy_document.api.statement : s.actions == toset(["s3:PutObject"])])
    error_message = "the API role may add only s3:PutObject on outputs/ and the upload prefixes"
  }

  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.lambda.statement :
      !contains(s.actions, "s3:PutObject") && !contains(s.actions, "s3:DeleteObject")
    ])
    error_message = "the default role (S3-event handler) must not write to S3"
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
    condition = (toset(keys(aws_api_gateway_gateway_response.errors)) == toset(["DEFAULT_4XX", "DEFAULT_5XX"])
      && alltrue([for r in aws_api_gateway_gateway_response.errors :
        r.rest_api_id == aws_api_gateway_rest_api.rest_api.id
        && strcontains(r.response_templates["application/json"], "\"requestId\":\"$context.requestId\"")
    ]))
    error_message = "API Gateway's own 4xx/5xx (e.g. a missing API key) must use the documented error shape"
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
    az_count                = 3
    efs_throughput_mode     = "provisioned"
    reserved_concurrency    = { on_object_created = 5 }
    provisioned_concurrency = { api_handler = 2 }
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
    condition = (local.chalice_functions.on_object_created.reserved_concurrent_executions == 5
    && local.chalice_functions.api_handler.reserved_concurrent_executions == -1)
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

run "rejects_a_single_az" {
  command = plan

  variables {
    az_count = 1
  }

  expect_failures = [var.az_count]
}
