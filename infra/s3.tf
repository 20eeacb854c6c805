# System of record for models/, inputs/ and outputs/. The name `models` is
# what .chalice/config.json references (${aws_s3_bucket.models.id}).
resource "aws_s3_bucket" "models" {
  #checkov:skip=CKV2_AWS_62:The ObjectCreated notification is in chalice.tf.json (aws_s3_bucket_notification.models_notify), which checkov's terraform runner does not join with the .tf files
  #checkov:skip=CKV_AWS_18:Server access logs need a second bucket; enable CloudTrail S3 data events where an audit trail is required
  #checkov:skip=CKV_AWS_144:Single-region stack: EFS and the functions live in one region, so a replica could not serve them; versioning covers accidental overwrites
  #checkov:skip=CKV_AWS_145:SSE-S3 (AES256) default encryption; SSE-KMS would bill every GET/PUT and need key grants for presigned uploads
  bucket        = "${local.global_name}-models-${data.aws_caller_identity.current.account_id}"
  force_destroy = var.bucket_force_destroy
}

resource "aws_s3_bucket_public_access_block" "models" {
  bucket = aws_s3_bucket.models.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "models" {
  bucket = aws_s3_bucket.models.id

  rule {
    object_ownership = "BucketOwnerEnforced" # disables ACLs altogether
  }
}

resource "aws_s3_bucket_versioning" "models" {
  bucket = aws_s3_bucket.models.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "models" {
  bucket = aws_s3_bucket.models.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "models" {
  bucket = aws_s3_bucket.models.id
  # AWS's default for new configurations; stated so the provider need not
  # wait for it to show up in what it reads back.
  transition_default_minimum_object_size = "all_storage_classes_128K"

  # Versioning keeps every overwritten model; bound what that costs.
  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    # An empty prefix (every key) rather than `filter {}`: S3 reports both as
    # Prefix "", and the provider waits until what it reads back matches.
    filter {
      prefix = ""
    }

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # RESULT_RETENTION_DAYS on S3's side: results and job documents expire
  # (infra/jobs.tf; the hourly sweep does the same on EFS).
  dynamic "rule" {
    for_each = var.result_retention_days > 0 ? ["outputs/", "jobs/"] : []
    content {
      id     = "expire-${trimsuffix(rule.value, "/")}"
      status = "Enabled"

      filter {
        prefix = rule.value
      }

      expiration {
        days = var.result_retention_days
      }

      abort_incomplete_multipart_upload {
        days_after_initiation = 7
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.models]
}

resource "aws_s3_bucket_policy" "models" {
  bucket = aws_s3_bucket.models.id
  policy = data.aws_iam_policy_document.bucket.json

  # S3 rejects a bucket policy while the public access block is being written.
  depends_on = [aws_s3_bucket_public_access_block.models]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.models.arn, "${aws_s3_bucket.models.arn}/*"]

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
