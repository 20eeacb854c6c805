# The single source of truth for version pins: the build step removes the
# `< 1.4` / `< 5` pins (and the unused null provider) that Chalice emits.
terraform {
  # 1.7 is the first release whose `terraform test` has mock providers.
  required_version = ">= 1.7.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.75: transition_default_minimum_object_size (S3 lifecycle) and
      # everything else used here; < 6.0: 6.x changes resource schemas
      # (e.g. aws_region.name). Tested against 5.100.0 (infra/README.md).
      version = ">= 5.75, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      Project     = var.prefix
      Environment = var.environment
      ManagedBy   = "terraform"
    })
  }
}

data "aws_partition" "current" {}

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

locals {
  # Prefix of every overlay resource name, e.g. "efs-ml-dev".
  name = "${var.prefix}-${var.environment}"
  # Names unique beyond the region (IAM roles and policies per account, S3
  # buckets per partition) and the dashboard carry the region too, so one
  # prefix and environment can be deployed in two regions.
  global_name = var.region_in_global_names ? "${local.name}-${var.region}" : local.name
  # Where the functions' EMF metrics go (METRICS_NAMESPACE, set by the build
  # step) and where the dashboard reads them: one namespace per environment.
  metrics_namespace = var.metrics_namespace != "" ? var.metrics_namespace : local.name
  account_id        = data.aws_caller_identity.current.account_id
  partition         = data.aws_partition.current.partition
}
