# The single source of truth for version pins: the build step removes the
# `< 1.4` / `< 5` pins (and the unused null provider) that Chalice emits.
terraform {
  # 1.7 is the first release whose `terraform test` has mock providers.
  required_version = ">= 1.7.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Elastic EFS throughput and aws_vpc_security_group_*_rule need 5.x.
      version = "~> 5.46"
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
}
