# One group per Chalice function, created before the function so Lambda never
# creates it without a retention. local.chalice_function_names is written into
# chalice.tf.json by the build step (infra/stack.py).
resource "aws_cloudwatch_log_group" "lambda" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every group at rest; the functions log no secrets, so a customer key would add cost only
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 7, see the cost section of infra/README.md); raise it where compliance asks for a year
  for_each = local.chalice_function_names

  name              = "/aws/lambda/${each.value}"
  retention_in_days = var.log_retention_days
}

# API access logs: one JSON line per request (infra/stack.py,
# log_api_access: requestId, source IP, API key id or IAM caller, method,
# path, status), so who deleted or replaced which model is on record. Kept
# var.api_access_log_retention_days and encrypted with a key of the stack's
# own (they hold callers' IPs and identities).
resource "aws_cloudwatch_log_group" "api_access" {
  name              = "/aws/apigateway/${local.name}/access"
  retention_in_days = var.api_access_log_retention_days
  kms_key_id        = aws_kms_key.logs.arn
}

resource "aws_kms_key" "logs" {
  description             = "Encrypts the ${local.name} API access logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.logs_key.json
}

resource "aws_kms_alias" "logs" {
  name          = "alias/${local.name}-logs"
  target_key_id = aws_kms_key.logs.key_id
}

data "aws_iam_policy_document" "logs_key" {
  #checkov:skip=CKV_AWS_109:A key policy's "*" resource is this key; the account root must keep administering it or the key becomes unmanageable
  #checkov:skip=CKV_AWS_111:As above: the account (its IAM policies) decides who may use the key
  #checkov:skip=CKV_AWS_356:In a key policy "*" means this key only
  statement {
    sid       = "AccountAdministersTheKey"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch Logs may use the key for this stack's access-log group only.
  statement {
    sid       = "CloudWatchLogsEncryptsTheAccessLog"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aws/apigateway/${local.name}/access"]
    }
  }
}

# API Gateway writes logs only with the account's CloudWatch role, one
# setting per account and region shared by every API there. By default the
# stack creates the role and sets it; where the account already has one
# (`aws apigateway get-account` shows cloudwatchRoleArn), or several stages
# share the account and region, let exactly one stack own it and set
# manage_api_gateway_account = false in the others (infra/README.md).
resource "aws_iam_role" "api_gateway_logs" {
  count              = var.manage_api_gateway_account ? 1 : 0
  name               = "${local.global_name}-apigw-logs"
  assume_role_policy = data.aws_iam_policy_document.api_gateway_assume.json
}

data "aws_iam_policy_document" "api_gateway_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["apigateway.amazonaws.com"]
    }
  }
}

# AWS's policy for this role: the account setting serves every API of the
# region, so it cannot be narrowed to this stack's log group.
resource "aws_iam_role_policy_attachment" "api_gateway_logs" {
  count      = var.manage_api_gateway_account ? 1 : 0
  role       = aws_iam_role.api_gateway_logs[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
}

resource "aws_api_gateway_account" "this" {
  count               = var.manage_api_gateway_account ? 1 : 0
  cloudwatch_role_arn = aws_iam_role.api_gateway_logs[0].arn

  depends_on = [aws_iam_role_policy_attachment.api_gateway_logs]
}
