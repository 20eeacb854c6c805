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

variable "region_in_global_names" {
  description = "Put the region in IAM role, bucket and dashboard names (efs-ml-dev-us-east-1-...). Set false only for a stack deployed before names carried the region: renaming replaces the roles and the buckets, and the models bucket (the system of record) cannot be replaced while it holds objects."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Extra tags applied to every resource through the provider's default_tags."
  type        = map(string)
  default     = {}
}

variable "az_count" {
  description = "Number of availability zones (one private subnet and one EFS mount target each) the functions run in; ignored when az_ids is set."
  type        = number
  default     = 2

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 6
    error_message = "az_count must be between 2 and 6: EFS needs a mount target in every AZ a function may run in."
  }
}

variable "az_ids" {
  description = "Availability zone IDs (e.g. [\"use1-az1\", \"use1-az4\"]) of the private subnets, one EFS mount target each; empty: the first az_count zone IDs of the region in sorted order. IDs, unlike zone names, mean the same zone in every account."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.az_ids) == 0 || (length(var.az_ids) >= 2 && length(var.az_ids) <= 6 && length(distinct(var.az_ids)) == length(var.az_ids))
    error_message = "az_ids must be empty or 2-6 distinct zone IDs."
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

variable "api_access_log_retention_days" {
  description = "Retention of the API access logs (who called what, when, with which answer), in days; a year by default, an audit trail's usual minimum (about 0.5 KB per request)."
  type        = number
  default     = 365
}

variable "manage_api_gateway_account" {
  description = "Create API Gateway's CloudWatch role and set it for the account and region (needed for access logs; one setting shared by every API there). Set false where the account already has one, or in every stack but one when several share an account and region."
  type        = bool
  default     = true
}

variable "reserved_concurrency" {
  description = "Reserved concurrency per Chalice function name; functions not listed (api_handler by default) share the account's unreserved pool. The S3-event function is capped so a burst of uploads (up to 1 GiB copies each) cannot starve api_handler of concurrency or EFS throughput; the hourly sweep never runs twice at once. Setting this map replaces the whole default."
  type        = map(number)
  default = {
    on_object_created = 5
    reclaim_debris    = 1
  }

  validation {
    condition     = alltrue([for n in values(var.reserved_concurrency) : n >= 0 && floor(n) == n])
    error_message = "reserved_concurrency values must be whole numbers >= 0 (0 stops the function); leave a function out to unreserve it."
  }
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

variable "api_auth" {
  description = "How API Gateway authenticates callers: api_key (default; the x-api-key header of the issued key, throttled by its usage plan) or iam (SigV4-signed requests of AWS principals allowed execute-api:Invoke, e.g. through the api_invoke_policy_arn output; Chalice's IAMAuthorizer). See infra/README.md, \"Who may call the API\"."
  type        = string
  default     = "api_key"

  validation {
    condition     = contains(["api_key", "iam"], var.api_auth)
    error_message = "api_auth must be api_key or iam."
  }
}

variable "api_endpoint_type" {
  description = "REST API endpoint type: REGIONAL (default; no CloudFront hop, and the only type whose 29 s integration timeout AWS may raise) or EDGE."
  type        = string
  default     = "REGIONAL"

  validation {
    condition     = contains(["REGIONAL", "EDGE"], var.api_endpoint_type)
    error_message = "api_endpoint_type must be REGIONAL or EDGE."
  }
}

variable "s3_event_max_retries" {
  description = "Retries Lambda makes of a failed S3 event (0-2) before sending it to the failed-events queue."
  type        = number
  default     = 2

  validation {
    condition     = contains([0, 1, 2], var.s3_event_max_retries)
    error_message = "s3_event_max_retries must be 0, 1 or 2."
  }
}

variable "s3_event_max_age_seconds" {
  description = "How long an S3 event may wait for the (reserved-concurrency-capped) function before it goes to the failed-events queue; 60-21600. The 3 h default drains 60 worst-case 900 s copies at concurrency 5."
  type        = number
  default     = 10800

  validation {
    condition     = var.s3_event_max_age_seconds >= 60 && var.s3_event_max_age_seconds <= 21600
    error_message = "s3_event_max_age_seconds must be between 60 and 21600."
  }
}

variable "alarm_emails" {
  description = "E-mail addresses subscribed to a new SNS topic for the alarms (each must confirm); empty: no topic is created."
  type        = list(string)
  default     = []
}

variable "alarm_topic_arn" {
  description = "ARN of an existing SNS topic the alarms also notify; empty: none."
  type        = string
  default     = ""
}

variable "api_5xx_threshold" {
  description = "API 5xx answers per 5 minutes above which the api-5xx alarm fires."
  type        = number
  default     = 5
}

variable "api_latency_p99_ms" {
  description = "p99 API latency (ms, sustained 15 minutes) above which the api-latency alarm fires; API Gateway ends requests at 29000."
  type        = number
  default     = 20000
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the functions' EMF metrics (METRICS_NAMESPACE); empty: <prefix>-<environment>, so environments never mix."
  type        = string
  default     = ""
}

variable "job_max_concurrency" {
  description = "Most run_job_blocks instances the jobs queue's event source mapping runs at once (2-1000). Size it against EFS: each worker reads its block's rows (one stream, ~300 MB/s at best) and the model on a cold start; with elastic throughput the mount gives ~1,500 MiB/s per client and 3-10 GiB/s per file system for reads, so 10 workers that each read 64 rows of 602 KB (38 MB per block, ~0.2 s of reading against ~1 s of inference) stay far below it. Bursting throughput (50 KiB/s per GiB stored) cannot feed more than a couple: raise this only with elastic or provisioned throughput (docs/jobs.md)."
  type        = number
  default     = 10

  validation {
    condition     = var.job_max_concurrency >= 2 && var.job_max_concurrency <= 1000 && floor(var.job_max_concurrency) == var.job_max_concurrency
    error_message = "job_max_concurrency must be a whole number from 2 to 1000 (the range SQS event source mappings accept)."
  }
}

variable "job_max_receive_count" {
  description = "Attempts of one job block before SQS moves its message to the dead-letter queue; also JOB_MAX_RECEIVE_COUNT of the functions, so the last attempt records the block as failed on the job."
  type        = number
  default     = 3

  validation {
    condition     = var.job_max_receive_count >= 1 && var.job_max_receive_count <= 1000
    error_message = "job_max_receive_count must be from 1 to 1000."
  }
}

variable "result_retention_days" {
  description = "Days results (outputs/) and finished jobs (jobs/) are kept: an S3 lifecycle rule here, and the hourly sweep on EFS (RESULT_RETENTION_DAYS). 0 keeps them forever."
  type        = number
  default     = 30

  validation {
    condition     = var.result_retention_days >= 0 && floor(var.result_retention_days) == var.result_retention_days
    error_message = "result_retention_days must be a whole number >= 0."
  }
}
