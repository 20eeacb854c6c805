# Batch jobs (docs/jobs.md): POST /jobs sends one message per block to the
# jobs queue; its event source mapping (chalice.tf.json, completed by
# infra/stack.py's wire_job_queue) runs run_job_blocks on each, at most
# var.job_max_concurrency at once, and reports failed blocks one by one
# (ReportBatchItemFailures). A block that fails var.job_max_receive_count
# times goes to the dead-letter queue, whose own mapping runs
# fail_dead_blocks: it records the block as failed on its job (a block whose
# every delivery died before the handler could record anything would
# otherwise leave the job running forever), and an alarm notifies.

locals {
  # SQS's guidance for a Lambda consumer: a visibility timeout of six times
  # the function's timeout, so a message in flight is not handed to a second
  # worker while the first still runs it (its retries included).
  job_worker_timeout_seconds  = 900 # .chalice/config.json, run_job_blocks
  job_visibility_seconds      = 6 * local.job_worker_timeout_seconds
  dead_letter_timeout_seconds = 60 # .chalice/config.json, fail_dead_blocks
}

resource "aws_sqs_queue" "jobs_dlq" {
  name                       = "${local.name}-jobs-dlq"
  sqs_managed_sse_enabled    = true    # SSE-SQS: no KMS key for the ESM and the API to be granted
  message_retention_seconds  = 1209600 # 14 days, SQS's maximum: a letter fail_dead_blocks cannot record waits here
  visibility_timeout_seconds = 6 * local.dead_letter_timeout_seconds
}

resource "aws_sqs_queue" "jobs" {
  name                       = "${local.name}-jobs"
  sqs_managed_sse_enabled    = true
  visibility_timeout_seconds = local.job_visibility_seconds
  message_retention_seconds  = 345600 # 4 days (SQS's default), well under RESULT_RETENTION_DAYS
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.jobs_dlq.arn
    maxReceiveCount     = var.job_max_receive_count
  })
}

# Two alarms: blocks reached the DLQ (fail_dead_blocks received them and
# recorded them on their jobs, which name each block and its error), and
# dead letters that stay in it (fail_dead_blocks could not record them: a
# job that is not on this store, or the function failing).
resource "aws_cloudwatch_metric_alarm" "jobs_dead_letters" {
  alarm_name          = "${local.name}-jobs-dead-letters"
  alarm_description   = "Job blocks failed every delivery and reached ${aws_sqs_queue.jobs_dlq.name}; GET /jobs/{id} names each with its error (docs/jobs.md)."
  namespace           = "AWS/SQS"
  metric_name         = "NumberOfMessagesReceived"
  dimensions          = { QueueName = aws_sqs_queue.jobs_dlq.name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "jobs_dlq" {
  alarm_name          = "${local.name}-jobs-dlq"
  alarm_description   = "Dead letters stay in ${aws_sqs_queue.jobs_dlq.name}: fail_dead_blocks could not record them on their jobs; see its log group (docs/jobs.md)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.jobs_dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# The functions are in private subnets without NAT: api_handler reaches SQS
# (SendMessageBatch for POST /jobs) through this interface endpoint, whose
# private DNS name is SQS's standard one, so the code needs no endpoint
# setting. (The event source mapping polls from the Lambda service, outside
# the VPC; the workers themselves never call SQS.) Priced in `make cost`
# (--sqs-endpoint-azs).
resource "aws_vpc_endpoint" "sqs" {
  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${var.region}.sqs"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.sqs_endpoint.id]
  private_dns_enabled = true
  policy              = data.aws_iam_policy_document.sqs_endpoint.json

  tags = { Name = "${local.name}-sqs" }
}

data "aws_iam_policy_document" "sqs_endpoint" {
  statement {
    sid       = "ThisStackJobQueueOnly"
    actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    resources = [aws_sqs_queue.jobs.arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }
  }
}

resource "aws_security_group" "sqs_endpoint" {
  name        = "${local.name}-sqs-endpoint"
  description = "SQS interface endpoint: HTTPS from the Lambda security group only"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${local.name}-sqs-endpoint" }
}

resource "aws_vpc_security_group_ingress_rule" "sqs_endpoint_https_from_lambda" {
  security_group_id            = aws_security_group.sqs_endpoint.id
  description                  = "HTTPS from the Chalice functions"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.lambda.id
}

resource "aws_vpc_security_group_egress_rule" "lambda_https_to_sqs" {
  security_group_id            = aws_security_group.lambda.id
  description                  = "HTTPS to the SQS interface endpoint"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.sqs_endpoint.id
}

# run_job_blocks: what one block needs and nothing more. It reads its rows
# and the model from EFS (function_base), archives assembled outputs to
# outputs/ (a multipart upload), and its event source mapping receives and
# deletes the queue's messages with this role.
resource "aws_iam_role" "jobs" {
  name               = "${local.name}-jobs"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "jobs" {
  name   = "${local.name}-jobs"
  role   = aws_iam_role.jobs.id
  policy = data.aws_iam_policy_document.jobs.json
}

data "aws_iam_policy_document" "jobs" {
  source_policy_documents = [data.aws_iam_policy_document.function_base.json]

  statement {
    sid       = "ConsumeTheJobQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
    resources = [aws_sqs_queue.jobs.arn]
  }

  statement {
    sid       = "ArchiveJobOutputs"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.models.arn}/outputs/*"]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = local.log_streams_by_role["jobs"]
  }
}

# fail_dead_blocks: receive and delete the DLQ's letters, and write the
# blocks' failures on EFS (function_base). Nothing of S3, nothing of the
# jobs queue.
resource "aws_iam_role" "job_dead_letters" {
  name               = "${local.name}-job-dead-letters"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "job_dead_letters" {
  name   = "${local.name}-job-dead-letters"
  role   = aws_iam_role.job_dead_letters.id
  policy = data.aws_iam_policy_document.job_dead_letters.json
}

data "aws_iam_policy_document" "job_dead_letters" {
  source_policy_documents = [data.aws_iam_policy_document.function_base.json]

  statement {
    sid       = "ConsumeTheJobDeadLetters"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
    resources = [aws_sqs_queue.jobs_dlq.arn]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = local.log_streams_by_role["job_dead_letters"]
  }
}

# api_handler: queue a job's blocks, and sign GET URLs of results (S3
# authorizes a presigned URL against the signer's permissions).
data "aws_iam_policy_document" "api_jobs" {
  statement {
    sid       = "QueueJobBlocks"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.jobs.arn]
  }

  statement {
    sid       = "SignResultUrls"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.models.arn}/outputs/*"]
  }
}

resource "aws_iam_role_policy" "api_jobs" {
  name   = "${local.name}-api-jobs"
  role   = aws_iam_role.api.id
  policy = data.aws_iam_policy_document.api_jobs.json
}

# The dashboard's row for jobs (infra/monitoring.tf appends these widgets).
locals {
  job_dashboard_widgets = [
    {
      type = "metric", x = 0, y = 24, width = 12, height = 6
      properties = {
        title = "Jobs: blocks queued, in flight, dead-lettered", region = var.region, view = "timeSeries", stat = "Maximum", period = 60
        metrics = [
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.jobs.name, { label = "queued" }],
          ["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", aws_sqs_queue.jobs.name, { label = "in flight" }],
          ["AWS/SQS", "NumberOfMessagesReceived", "QueueName", aws_sqs_queue.jobs_dlq.name, { label = "dead-lettered", yAxis = "right", stat = "Sum" }],
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.jobs_dlq.name, { label = "dead letters not recorded", yAxis = "right" }],
        ]
      }
    },
    {
      type = "metric", x = 12, y = 24, width = 12, height = 6
      properties = {
        title   = "Jobs: rows done per minute", region = var.region, view = "timeSeries", stat = "Sum", period = 60
        metrics = [[{ expression = "SEARCH('${local.emf_search_service} MetricName=\"JobRowsDone\"', 'Sum', 60)", id = "rows" }]]
      }
    },
  ]
}
