# Three execution roles (.chalice/config.json sets manage_iam_role=false and
# points the functions at them), so Chalice's policy autogeneration, which
# grants s3:* on "*", never reaches AWS. Each role has one inline policy and
# no AWS-managed one (AWSLambdaVPCAccessExecutionRole grants log writes and
# ENI actions on "*"):
# - "lambda", the stage default, i.e. the S3-event function: read models/
#   and inputs/, use EFS, send failed events to the failed-events queue;
# - "api", api_handler only: read, use EFS, write outputs/ and sign upload
#   URLs for models/ and inputs/;
# - "sweeper", reclaim_debris only: use EFS (it deletes crash debris there,
#   which needs ClientWrite through the access point); no S3 at all.
# Every role writes only its own functions' log groups.
locals {
  # Role -> the log streams of the functions that run as it
  # (local.chalice_function_roles is written by the build step).
  log_streams_by_role = {
    for role in distinct(values(local.chalice_function_roles)) : role => [
      for fn, r in local.chalice_function_roles : "${aws_cloudwatch_log_group.lambda[fn].arn}:*" if r == role
    ]
  }
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name               = "${local.global_name}-lambda"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "lambda" {
  name   = "${local.name}-lambda"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

resource "aws_iam_role" "api" {
  name               = "${local.global_name}-api"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "api" {
  name   = "${local.name}-api"
  role   = aws_iam_role.api.id
  policy = data.aws_iam_policy_document.api.json
}

resource "aws_iam_role" "sweeper" {
  name               = "${local.global_name}-sweeper"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json

  lifecycle {
    precondition {
      condition     = length("${local.global_name}-sweeper") <= 64
      error_message = "IAM role names are at most 64 characters: shorten var.prefix or var.environment."
    }
  }
}

resource "aws_iam_role_policy" "sweeper" {
  name   = "${local.name}-sweeper"
  role   = aws_iam_role.sweeper.id
  policy = data.aws_iam_policy_document.sweeper.json
}

# What every function needs: its VPC attachment and the EFS mount.
data "aws_iam_policy_document" "function_base" {
  # Lambda creates and deletes the functions' (Hyperplane) ENIs with the
  # execution role. The Describe actions have no resource-level permissions,
  # so they need "*" (read-only).
  statement {
    sid       = "DescribeNetwork"
    actions   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
    resources = ["*"]
  }

  # ENIs only in this stack's subnets with its security groups (the default
  # group is where ENIs are parked on destroy), and only in its VPC:
  # ec2:Vpc applies to the network-interface, subnet and security-group
  # resources of these actions.
  statement {
    sid = "CreateEnisInTheStackSubnets"
    actions = [
      "ec2:CreateNetworkInterface",
    ]
    resources = concat(
      aws_subnet.private[*].arn,
      [aws_security_group.lambda.arn, aws_default_security_group.this.arn],
      ["arn:${local.partition}:ec2:${var.region}:${local.account_id}:network-interface/*"],
    )

    condition {
      test     = "ArnEquals"
      variable = "ec2:Vpc"
      values   = [aws_vpc.this.arn]
    }
  }

  statement {
    sid = "ManageEnisInTheStackVpc"
    actions = [
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["arn:${local.partition}:ec2:${var.region}:${local.account_id}:network-interface/*"]

    condition {
      test     = "ArnEquals"
      variable = "ec2:Vpc"
      values   = [aws_vpc.this.arn]
    }
  }

  statement {
    sid       = "MountEfsThroughTheAccessPoint"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.this.arn]

    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.lambda.arn]
    }
  }
}

# Reading the system of record (the S3-event function and api_handler).
data "aws_iam_policy_document" "read_bucket" {
  statement {
    sid     = "ReadModelsAndInputs"
    actions = ["s3:GetObject"]
    resources = [
      "${aws_s3_bucket.models.arn}/models/*",
      "${aws_s3_bucket.models.arn}/inputs/*",
    ]
  }

  # Without ListBucket, S3 answers a missing key with 403 instead of 404 and
  # the API could not tell "not found" (S3_NOT_FOUND) from "forbidden". It
  # lists key names of this bucket only.
  statement {
    sid       = "ListTheBucket"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.models.arn]
  }
}

# The S3-event function (and any function added later without a role).
data "aws_iam_policy_document" "lambda" {
  source_policy_documents = [
    data.aws_iam_policy_document.function_base.json,
    data.aws_iam_policy_document.read_bucket.json,
  ]

  # The on_failure destination of the event-invoke config: Lambda sends the
  # failed event with the function's role.
  statement {
    sid       = "SendFailedEvents"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.failed_events.arn]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = local.log_streams_by_role["lambda"]
  }
}

data "aws_iam_policy_document" "api" {
  source_policy_documents = [
    data.aws_iam_policy_document.function_base.json,
    data.aws_iam_policy_document.read_bucket.json,
  ]

  statement {
    sid       = "WriteOutputs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.models.arn}/outputs/*"]
  }

  # POST /uploads hands clients presigned PUT URLs for models/ and inputs/
  # (objects over API Gateway's 10 MB); S3 authorizes such a URL against the
  # permissions of the role that signed it, so the role needs this to sign.
  # The async ingest's hand-off (CopyObject of a key onto itself, which fires
  # the ObjectCreated notification) needs it too, with ReadModelsAndInputs.
  statement {
    sid     = "SignUploadUrls"
    actions = ["s3:PutObject"]
    resources = [
      "${aws_s3_bucket.models.arn}/models/*",
      "${aws_s3_bucket.models.arn}/inputs/*",
    ]
  }

  # DELETE /models|inputs/{name} deletes the system of record's object
  # first, or the next event or re-ingest would bring the copy back. Only
  # DeleteObject (on a versioned bucket a delete marker; old versions stay
  # and only an administrator can purge them: no DeleteObjectVersion).
  statement {
    sid     = "DeleteModelsAndInputs"
    actions = ["s3:DeleteObject"]
    resources = [
      "${aws_s3_bucket.models.arn}/models/*",
      "${aws_s3_bucket.models.arn}/inputs/*",
    ]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = local.log_streams_by_role["api"]
  }
}

data "aws_iam_policy_document" "sweeper" {
  source_policy_documents = [data.aws_iam_policy_document.function_base.json]

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = local.log_streams_by_role["sweeper"]
  }
}
