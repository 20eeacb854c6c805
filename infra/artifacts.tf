# The deployment package, uploaded once and shared by every function
# (infra/stack.py points each at it with s3_bucket/s3_key/s3_object_version
# and source_code_hash). A direct upload would send the zip once per function
# and stop working at 50 MB; from S3 only the 250 MB unzipped limit applies.
#
# A bucket of its own rather than a prefix of the models bucket: no function
# role has any grant on it, and the S3 gateway endpoint's policy admits only
# the models bucket, so from inside the VPC the package cannot even be
# reached. Its contents are rebuilt by `make package`, so it may be
# force-destroyed, while the models bucket (the system of record) keeps
# bucket_force_destroy = false and its own lifecycle.
resource "aws_s3_bucket" "artifacts" {
  #checkov:skip=CKV2_AWS_62:Holds only the deployment package; nothing reacts to new objects
  #checkov:skip=CKV_AWS_18:Server access logs need a second bucket; the only writer is terraform apply (CloudTrail records it)
  #checkov:skip=CKV_AWS_144:A rebuildable build artifact: `make package` recreates it, a replica adds nothing
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256); SSE-KMS would also need a key grant for Lambda's code fetch
  bucket        = "${local.global_name}-artifacts-${local.account_id}"
  force_destroy = true # only rebuildable packages live here

  lifecycle {
    precondition {
      condition     = length("${local.global_name}-artifacts-${local.account_id}") <= 63
      error_message = "S3 bucket names are at most 63 characters: shorten var.prefix or var.environment (or the region is long)."
    }
  }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Versioned: each function pins the exact object version it was deployed
# from, and the previous packages stay available for a rollback.
resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket                                 = aws_s3_bucket.artifacts.id
  transition_default_minimum_object_size = "all_storage_classes_128K"

  rule {
    id     = "expire-old-packages"
    status = "Enabled"

    filter {
      prefix = ""
    }

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.artifacts]
}

resource "aws_s3_bucket_policy" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  policy = data.aws_iam_policy_document.artifacts_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}

data "aws_iam_policy_document" "artifacts_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.artifacts.arn, "${aws_s3_bucket.artifacts.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_object" "deployment" {
  #checkov:skip=CKV_AWS_186:Encrypted by the bucket's SSE-S3 default; a customer key would need a grant for Lambda's code fetch
  bucket      = aws_s3_bucket.artifacts.id
  key         = "lambda/deployment.zip"
  source      = "${path.module}/deployment.zip"
  source_hash = filebase64sha256("${path.module}/deployment.zip")

  # The bucket must be versioned (s3_object_version) and deny plain HTTP
  # before the first upload.
  depends_on = [
    aws_s3_bucket_versioning.artifacts,
    aws_s3_bucket_policy.artifacts,
    aws_s3_bucket_server_side_encryption_configuration.artifacts,
  ]
}
