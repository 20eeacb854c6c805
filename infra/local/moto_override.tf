# Copied next to the packaged stack for the local rehearsal only (never into
# build/stack): the endpoint comes from AWS_ENDPOINT_URL, which the rehearsal
# points at its moto server on loopback.
provider "aws" {
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = false # moto answers sts:GetCallerIdentity
  s3_use_path_style           = true
}

# moto ignores the conditions of bucket-policy statements, so the artifacts
# bucket's TLS-only Deny (aws:SecureTransport = false) would refuse every
# object request there, Terraform's own upload and refresh of the package
# included (the rehearsal speaks plain HTTP to moto). Here the Deny covers
# only s3:PutObjectAcl, which nothing uses (ACLs are disabled); the real
# statement is checked by terraform test, and moto's enforcement of it by
# the rehearsal's plain-HTTP write to the models bucket.
data "aws_iam_policy_document" "artifacts_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:PutObjectAcl"]
    resources = ["${aws_s3_bucket.artifacts.arn}/*"]

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
