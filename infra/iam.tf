# Two execution roles (.chalice/config.json sets manage_iam_role=false and
# points the functions at them), so Chalice's policy autogeneration, which
# grants s3:* on "*", never reaches AWS:
# - "lambda", the stage default: the S3-event function (and any function
#   added later) may only read models/ and inputs/ and use EFS;
# - "api", api_handler only: the same, plus writing outputs/ and signing
#   upload URLs for models/ and inputs/.
resource "aws_iam_role" "lambda" {
  name               = "${local.name}-lambda"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
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

# ec2:CreateNetworkInterface & co. for the VPC attachment; AWS maintains it.
resource "aws_iam_role_policy_attachment" "vpc_access" {
  role       = aws_iam_role.lambda.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

resource "aws_iam_role_policy" "lambda" {
  name   = "${local.name}-lambda"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

resource "aws_iam_role" "api" {
  name               = "${local.name}-api"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy_attachment" "api_vpc_access" {
  role       = aws_iam_role.api.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

resource "aws_iam_role_policy" "api" {
  name   = "${local.name}-api"
  role   = aws_iam_role.api.id
  policy = data.aws_iam_policy_document.api.json
}

data "aws_iam_policy_document" "api" {
  source_policy_documents = [data.aws_iam_policy_document.lambda.json]

  statement {
    sid       = "WriteOutputs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.models.arn}/outputs/*"]
  }

  # POST /uploads hands clients presigned PUT URLs for models/ and inputs/
  # (objects over API Gateway's 10 MB); S3 authorizes such a URL against the
  # permissions of the role that signed it, so the role needs this to sign.
  statement {
    sid     = "SignUploadUrls"
    actions = ["s3:PutObject"]
    resources = [
      "${aws_s3_bucket.models.arn}/models/*",
      "${aws_s3_bucket.models.arn}/inputs/*",
    ]
  }
}

data "aws_iam_policy_document" "lambda" {
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

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for group in aws_cloudwatch_log_group.lambda : "${group.arn}:*"]
  }
}
