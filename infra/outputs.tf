# `terraform output -json > outputs.json` is what clients read. The function
# ARNs (function_arns) are added by the build step, which knows every function.

output "api_url" {
  description = "Base URL of the REST API (append /health, /ingest, /predict)."
  value       = aws_api_gateway_stage.rest_api.invoke_url
}

output "rest_api_id" {
  description = "Id of the REST API."
  value       = aws_api_gateway_rest_api.rest_api.id
}

output "api_key" {
  description = "Value of the API key to send in the x-api-key header."
  value       = aws_api_gateway_api_key.client.value
  sensitive   = true
}

output "api_key_id" {
  description = "Id of the API key (aws apigateway get-api-key --include-value)."
  value       = aws_api_gateway_api_key.client.id
}

output "efs_file_system_id" {
  description = "Id of the EFS file system."
  value       = aws_efs_file_system.this.id
}

output "efs_access_point_arn" {
  description = "ARN of the access point every function mounts at /mnt/efs."
  value       = aws_efs_access_point.lambda.arn
}

output "s3_bucket_name" {
  description = "Bucket holding models/, inputs/ and outputs/."
  value       = aws_s3_bucket.models.id
}

output "vpc_id" {
  description = "Id of the VPC the functions run in."
  value       = aws_vpc.this.id
}

output "private_subnet_ids" {
  description = "Private subnets (one per AZ, each with an EFS mount target)."
  value       = aws_subnet.private[*].id
}

output "lambda_security_group_id" {
  description = "Security group of the functions."
  value       = aws_security_group.lambda.id
}

output "region" {
  description = "Region the stack is deployed in."
  value       = var.region
}

output "failed_events_queue_url" {
  description = "SQS queue holding S3 events that failed every retry or expired (replay: infra/replay_failed_events.py)."
  value       = aws_sqs_queue.failed_events.url
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the stack's metrics."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "artifacts_bucket_name" {
  description = "Bucket holding the deployment package."
  value       = aws_s3_bucket.artifacts.id
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify, when var.alarm_emails created one."
  value       = one(aws_sns_topic.alarms[*].arn)
}

output "api_auth" {
  description = "How callers authenticate: api_key (send api_key in x-api-key) or iam (sign with SigV4)."
  value       = var.api_auth
}

output "api_invoke_policy_arn" {
  description = "With api_auth = iam: the policy that lets a role or user call the API; null otherwise."
  value       = one(aws_iam_policy.invoke[*].arn)
}

output "api_access_log_group" {
  description = "CloudWatch log group of the API's access log (one JSON line per request)."
  value       = aws_cloudwatch_log_group.api_access.name
}

output "job_queue_url" {
  description = "URL of the batch jobs queue (one message per block)."
  value       = aws_sqs_queue.jobs.url
}

output "job_dlq_url" {
  description = "URL of the jobs' dead-letter queue (blocks that failed every attempt)."
  value       = aws_sqs_queue.jobs_dlq.url
}
