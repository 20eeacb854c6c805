# Private-only network: the functions reach EFS through mount targets and S3
# through a gateway endpoint, so no NAT gateway (~$33/month each) is needed.

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Zones are chosen by zone ID (var.az_ids, else the first var.az_count IDs in sorted order), which name the same physical zone in every account; a new zone does not move the chosen set
  state = "available"
  # Local Zones and Wavelength Zones have no EFS mount targets.
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

# Zones by ID, not name: "us-east-1a" is a different physical zone in each
# account (names are shuffled per account), zone IDs ("use1-az1") are not, so
# the stack lands where var.az_ids says, or where another account's
# resources (a peered VPC, a shared EFS) are.
locals {
  az_ids   = length(var.az_ids) > 0 ? var.az_ids : slice(sort(data.aws_availability_zones.available.zone_ids), 0, var.az_count)
  az_count = length(local.az_ids)
}

resource "aws_vpc" "this" {
  #checkov:skip=CKV2_AWS_11:No instances and no internet path: traffic is Lambda to EFS/S3 only; flow logs would cost more than the rest of the idle stack
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true # EFS mount target DNS names need both DNS settings.

  tags = { Name = "${local.name}-vpc" }
}

# Take every rule off the default security group so nothing uses it by
# accident. On destroy, the functions' ENIs are parked in it
# (replacement_security_group_ids, set by infra/stack.py) so that the Lambda
# group can be deleted while AWS still releases them.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
}

resource "aws_subnet" "private" {
  count = local.az_count

  vpc_id                  = aws_vpc.this.id
  availability_zone_id    = local.az_ids[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, count.index)
  map_public_ip_on_launch = false

  tags = { Name = "${local.name}-private-${local.az_ids[count.index]}" }
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id

  tags = { Name = "${local.name}-private" }
}

resource "aws_route_table_association" "private" {
  count = local.az_count

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

# A VPC Lambda has no route to S3 without this endpoint (or a NAT); gateway
# endpoints are free. The policy keeps it to this stack's bucket.
resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]
  policy            = data.aws_iam_policy_document.s3_endpoint.json

  tags = { Name = "${local.name}-s3" }
}

# Every request a function sends to S3 travels this endpoint, so its policy
# must allow each action the code performs (chalicelib/s3.py IAM_ACTIONS;
# tests/infra/test_s3_permissions.py checks it): GET and HEAD (GetObject),
# the outputs/ archive, the async ingest's self-copy (GetObject + PutObject),
# DELETE /models|inputs/{name} (DeleteObject), a job's results (a multipart
# upload, aborted on failure: AbortMultipartUpload), and ListBucket so that a
# missing key is a 404. moto evaluates no endpoint policy: the local
# rehearsal cannot catch a missing action. The roles still decide which
# function may do what; this only keeps the VPC's S3 traffic on this bucket.
data "aws_iam_policy_document" "s3_endpoint" {
  statement {
    sid       = "ThisStackObjectsOnly"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.models.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }
  }

  statement {
    sid       = "ListThisStackBucketOnly"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.models.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }
  }
}

resource "aws_security_group" "lambda" {
  #checkov:skip=CKV2_AWS_5:Attached to every function by vpc_config in chalice.tf.json, which checkov's terraform runner does not join with the .tf files
  name        = "${local.name}-lambda"
  description = "Chalice functions: no ingress; egress to EFS (NFS) and S3 (HTTPS via the gateway endpoint) only"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${local.name}-lambda" }
}

resource "aws_security_group" "efs" {
  name        = "${local.name}-efs"
  description = "EFS mount targets: NFS from the Lambda security group only"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${local.name}-efs" }
}

# Standalone rule resources: inline rules would make the two groups reference
# each other, a dependency cycle.
resource "aws_vpc_security_group_ingress_rule" "efs_nfs_from_lambda" {
  security_group_id            = aws_security_group.efs.id
  description                  = "NFS from the Chalice functions"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.lambda.id
}

resource "aws_vpc_security_group_egress_rule" "lambda_nfs_to_efs" {
  security_group_id            = aws_security_group.lambda.id
  description                  = "NFS to the EFS mount targets"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_security_group.efs.id
}

resource "aws_vpc_security_group_egress_rule" "lambda_https_to_s3" {
  security_group_id = aws_security_group.lambda.id
  description       = "HTTPS to S3 through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.s3.prefix_list_id
}
