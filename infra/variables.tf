variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "prefix" {
  description = "Prefix of every resource name created by the overlay."
  type        = string
  default     = "efs-ml"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.prefix))
    error_message = "prefix must be 2-31 lowercase letters, digits or dashes (it is part of the S3 bucket name)."
  }
}

variable "environment" {
  description = "Environment name (dev, test, prod, ...); part of resource names and tags."
  type        = string
  default     = "dev"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,15}$", var.environment))
    error_message = "environment must be 1-16 lowercase letters, digits or dashes."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource through the provider's default_tags."
  type        = map(string)
  default     = {}
}

variable "az_count" {
  description = "Number of availability zones (one private subnet and one EFS mount target each) the functions run in."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 6
    error_message = "az_count must be between 2 and 6: EFS needs a mount target in every AZ a function may run in."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC; each private subnet is a /24 carved from it."
  type        = string
  default     = "10.42.0.0/16"
}

variable "efs_throughput_mode" {
  description = "EFS throughput mode: elastic (scales with Lambda fan-out, pay per GiB transferred), bursting (50 KiB/s per GiB stored) or provisioned."
  type        = string
  default     = "elastic"

  validation {
    condition     = contains(["elastic", "bursting", "provisioned"], var.efs_throughput_mode)
    error_message = "efs_throughput_mode must be elastic, bursting or provisioned."
  }
}

variable "efs_provisioned_throughput_mibps" {
  description = "Throughput in MiB/s when efs_throughput_mode is provisioned; ignored otherwise."
  type        = number
  default     = 10
}

variable "efs_transition_to_ia" {
  description = "How long a file stays unread before EFS moves it to Infrequent Access storage."
  type        = string
  default     = "AFTER_30_DAYS"
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete the bucket with all object versions in it. Keep false for data you care about."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which overwritten (noncurrent) object versions are deleted from the bucket."
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "Retention of the functions' CloudWatch log groups, in days."
  type        = number
  default     = 7
}

variable "reserved_concurrency" {
  description = "Reserved concurrency per Chalice function name (e.g. { on_object_created = 5 }); functions not listed are unreserved."
  type        = map(number)
  default     = {}
}

variable "provisioned_concurrency" {
  description = "Provisioned concurrency per Chalice function name (e.g. { api_handler = 2 }). Every function is invoked through its `live` alias; a function listed here is also published so the alias points at a version holding warm environments. Billed per hour."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for n in values(var.provisioned_concurrency) : n >= 1])
    error_message = "provisioned_concurrency values must be >= 1; leave a function out to turn it off."
  }
}

variable "api_throttle_rate_limit" {
  description = "Steady-state requests per second allowed per API key."
  type        = number
  default     = 20
}

variable "api_throttle_burst_limit" {
  description = "Request burst allowed per API key."
  type        = number
  default     = 40
}

variable "api_quota_per_day" {
  description = "Requests per day allowed per API key; 0 means no quota."
  type        = number
  default     = 0
}
