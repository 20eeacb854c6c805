resource "aws_efs_file_system" "this" {
  #checkov:skip=CKV_AWS_184:Encrypted with the AWS-managed aws/elasticfilesystem key; a customer key adds cost and a key policy without changing who can mount (the file-system policy and access point decide that)
  creation_token = "${local.name}-efs"
  encrypted      = true # with the AWS-managed aws/elasticfilesystem key

  # Elastic by default: bursting gives only 50 KiB/s per GiB stored, which a
  # Lambda fan-out over a small file system exhausts in minutes.
  throughput_mode                 = var.efs_throughput_mode
  provisioned_throughput_in_mibps = var.efs_throughput_mode == "provisioned" ? var.efs_provisioned_throughput_mibps : null

  lifecycle_policy {
    transition_to_ia = var.efs_transition_to_ia
  }

  # A file read again leaves IA at once, so hot models stay on Standard.
  lifecycle_policy {
    transition_to_primary_storage_class = "AFTER_1_ACCESS"
  }

  tags = { Name = "${local.name}-efs" }
}

# One mount target per subnet: a function in an AZ without one cannot mount.
resource "aws_efs_mount_target" "this" {
  count = local.az_count

  file_system_id  = aws_efs_file_system.this.id
  subnet_id       = aws_subnet.private[count.index].id
  security_groups = [aws_security_group.efs.id]
}

# The functions see /lambda of the file system as /mnt/efs. EFS creates the
# root directory owned by the access point's POSIX user on first mount;
# without creation_info the user could not write to it.
resource "aws_efs_access_point" "lambda" {
  file_system_id = aws_efs_file_system.this.id

  posix_user {
    uid = 1000
    gid = 1000
  }

  root_directory {
    path = "/lambda"

    creation_info {
      owner_uid   = 1000
      owner_gid   = 1000
      permissions = "0755"
    }
  }

  tags = { Name = "${local.name}-lambda" }
}

resource "aws_efs_file_system_policy" "this" {
  file_system_id = aws_efs_file_system.this.id
  policy         = data.aws_iam_policy_document.efs.json
}

data "aws_iam_policy_document" "efs" {
  statement {
    sid       = "DenyUnencryptedTransport"
    effect    = "Deny"
    actions   = ["*"]
    resources = [aws_efs_file_system.this.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # StringNotEquals also matches mounts that name no access point at all.
  statement {
    sid       = "DenyMountsOutsideTheAccessPoint"
    effect    = "Deny"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite", "elasticfilesystem:ClientRootAccess"]
    resources = [aws_efs_file_system.this.arn]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.lambda.arn]
    }
  }

  statement {
    sid       = "FunctionsMountThroughTheAccessPoint"
    actions   = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    resources = [aws_efs_file_system.this.arn]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.lambda.arn, aws_iam_role.api.arn, aws_iam_role.sweeper.arn, aws_iam_role.jobs.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "elasticfilesystem:AccessPointArn"
      values   = [aws_efs_access_point.lambda.arn]
    }
  }
}
