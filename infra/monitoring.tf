# The failure path of S3 events, alarms, and a dashboard of what the code emits.
#
# An S3 event the function fails on (after var.s3_event_max_retries retries)
# or cannot start within var.s3_event_max_age_seconds (throttled by its
# reserved concurrency) goes to this queue instead of being dropped: the
# event-invoke config (infra/stack.py, catch_failed_s3_events) names it as
# the on_failure destination. infra/README.md ("When an S3 event fails")
# explains how to replay what lands here.
resource "aws_sqs_queue" "failed_events" {
  name                      = "${local.name}-failed-events"
  sqs_managed_sse_enabled   = true    # SSE-SQS: Lambda's delivery needs no KMS grant
  message_retention_seconds = 1209600 # 14 days, SQS's maximum: time to notice and replay
}

# Optional: a topic for the alarms, with e-mail subscribers.
resource "aws_sns_topic" "alarms" {
  #checkov:skip=CKV_AWS_26:CloudWatch cannot publish to a topic encrypted with the AWS-managed SNS key, and alarm messages carry no data beyond metric names
  count = length(var.alarm_emails) > 0 ? 1 : 0
  name  = "${local.name}-alarms"
}

resource "aws_sns_topic_subscription" "alarm_emails" {
  for_each  = toset(var.alarm_emails)
  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "email"
  endpoint  = each.value # AWS mails a confirmation link first
}

locals {
  alarm_actions = concat(aws_sns_topic.alarms[*].arn, var.alarm_topic_arn == "" ? [] : [var.alarm_topic_arn])
}

resource "aws_cloudwatch_metric_alarm" "failed_events" {
  alarm_name          = "${local.name}-failed-events"
  alarm_description   = "S3 events that failed every retry or expired wait in ${aws_sqs_queue.failed_events.name}: replay them (infra/README.md)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.failed_events.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Unhandled errors and timeouts of every function (handled API errors are
# responses, not Lambda errors; they show in the API's 5XXError below).
resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each            = local.chalice_function_names
  alarm_name          = "${each.value}-errors"
  alarm_description   = "${each.key} failed (unhandled error or timeout); see its log group /aws/lambda/${each.value}."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# A throttled api_handler is a refused client request at once; throttled
# asynchronous invocations (S3 events, the sweep) wait in Lambda's queue, so
# they alarm only after 15 minutes of it (raise var.reserved_concurrency).
resource "aws_cloudwatch_metric_alarm" "function_throttles" {
  for_each            = local.chalice_function_names
  alarm_name          = "${each.value}-throttles"
  alarm_description   = "${each.key} is throttled: its reserved concurrency (var.reserved_concurrency) or the account's limit is reached."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = each.key == "api_handler" ? 1 : 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# The failure path of the failure path: an S3 event Lambda could not deliver
# to the failed-events queue (DestinationDeliveryFailures: the queue or the
# role's sqs:SendMessage is broken, the event is lost) or dropped
# (AsyncEventsDropped: every retry failed or it expired; it also counts the
# events that did reach the queue, so this fires beside failed-events, and
# alone when delivery failed too).
locals {
  async_delivery_metrics = {
    DestinationDeliveryFailures = "destination-failures"
    AsyncEventsDropped          = "events-dropped"
  }
  async_delivery_alarms = {
    for pair in setproduct(local.s3_event_functions, keys(local.async_delivery_metrics)) :
    "${pair[0]}-${local.async_delivery_metrics[pair[1]]}" => { function = pair[0], metric = pair[1] }
  }
}

resource "aws_cloudwatch_metric_alarm" "s3_event_delivery" {
  for_each            = local.async_delivery_alarms
  alarm_name          = "${local.chalice_function_names[each.value.function]}-${local.async_delivery_metrics[each.value.metric]}"
  alarm_description   = "${each.value.function}: ${each.value.metric} > 0. ${each.value.metric == "DestinationDeliveryFailures" ? "S3 events could not be sent to ${aws_sqs_queue.failed_events.name} and are lost: check the queue and the role's sqs:SendMessage, then re-ingest the keys." : "S3 events were given up (retries spent or too old); they should be in ${aws_sqs_queue.failed_events.name}: replay them (infra/README.md)."}"
  namespace           = "AWS/Lambda"
  metric_name         = each.value.metric
  dimensions          = { FunctionName = local.chalice_function_names[each.value.function] }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  alarm_name          = "${local.name}-api-5xx"
  alarm_description   = "More than ${var.api_5xx_threshold} 5xx answers in 5 minutes (the error codes are on the ${local.name} dashboard)."
  namespace           = "AWS/ApiGateway"
  metric_name         = "5XXError"
  dimensions          = { ApiName = aws_api_gateway_rest_api.rest_api.name, Stage = aws_api_gateway_stage.rest_api.stage_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.api_5xx_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "api_latency" {
  alarm_name          = "${local.name}-api-latency-p99"
  alarm_description   = "p99 latency over ${var.api_latency_p99_ms} ms for 15 minutes; API Gateway ends requests at 29 s."
  namespace           = "AWS/ApiGateway"
  metric_name         = "Latency"
  dimensions          = { ApiName = aws_api_gateway_rest_api.rest_api.name, Stage = aws_api_gateway_stage.rest_api.stage_name }
  extended_statistic  = "p99"
  period              = 300
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.api_latency_p99_ms
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# The EMF metrics of chalicelib/observability.py (namespace
# local.metrics_namespace, dimensions Service + Operation), found with SEARCH
# so every operation shows without listing them here; errors by code come
# from the per-invocation summary log line (errorCode for HTTP, errorType
# for events) through Logs Insights.
locals {
  # The namespace is quoted: unquoted, SEARCH reads a namespace with a "/" or
  # a "." (e.g. "Company/ModelServer") as search syntax, not as one name.
  emf_search = "{\"${local.metrics_namespace}\",Operation,Service}"
  # ColdStart is dimensioned by function (chalicelib/observability.py); metrics
  # emitted outside an HTTP or S3 invocation (the jobs worker) by Service alone.
  emf_search_function = "{\"${local.metrics_namespace}\",Function,Service}"
  emf_search_service  = "{\"${local.metrics_namespace}\",Service}"
  log_sources         = join(" | ", [for name in values(local.chalice_function_names) : "SOURCE '/aws/lambda/${name}'"])
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = local.global_name
  dashboard_body = jsonencode({
    widgets = concat([
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title   = "Ingested bytes (per operation)", region = var.region, view = "timeSeries", stat = "Sum", period = 300
          metrics = [[{ expression = "SEARCH('${local.emf_search} MetricName=\"IngestBytes\"', 'Sum', 300)", id = "bytes" }]]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title = "Ingest duration ms (p50, p99)", region = var.region, view = "timeSeries", period = 300
          metrics = [
            [{ expression = "SEARCH('${local.emf_search} MetricName=\"IngestDurationMs\"', 'p50', 300)", id = "p50" }],
            [{ expression = "SEARCH('${local.emf_search} MetricName=\"IngestDurationMs\"', 'p99', 300)", id = "p99" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 8, height = 6
        properties = {
          title = "Model load ms on a cache miss (p50, max)", region = var.region, view = "timeSeries", period = 300
          metrics = [
            [{ expression = "SEARCH('${local.emf_search} MetricName=\"ModelLoadMs\"', 'p50', 300)", id = "load50" }],
            [{ expression = "SEARCH('${local.emf_search} MetricName=\"ModelLoadMs\"', 'Maximum', 300)", id = "loadmax" }],
          ]
        }
      },
      {
        type = "metric", x = 8, y = 6, width = 8, height = 6
        properties = {
          title = "Model cache hit ratio %", region = var.region, view = "timeSeries", period = 300
          yAxis = { left = { min = 0, max = 100 } }
          metrics = [
            [{ expression = "SUM(SEARCH('${local.emf_search} MetricName=\"ModelCacheHit\"', 'Sum', 300))", id = "hits", visible = false }],
            [{ expression = "SUM(SEARCH('${local.emf_search} MetricName=\"ModelCacheMiss\"', 'Sum', 300))", id = "misses", visible = false }],
            [{ expression = "100 * hits / (hits + misses)", id = "ratio", label = "hit ratio %" }],
          ]
        }
      },
      {
        type = "metric", x = 16, y = 6, width = 8, height = 6
        properties = {
          title   = "Cold starts (per operation)", region = var.region, view = "timeSeries", period = 300
          metrics = [[{ expression = "SEARCH('${local.emf_search_function} MetricName=\"ColdStart\"', 'Sum', 300)", id = "cold" }]]
        }
      },
      {
        type = "log", x = 0, y = 12, width = 12, height = 6
        properties = {
          title = "Errors by code (HTTP errorCode, event errorType)", region = var.region, view = "table"
          query = "${local.log_sources} | fields coalesce(errorCode, errorType) as code | filter ispresent(code) | stats count(*) as errors by code | sort errors desc"
        }
      },
      {
        type = "metric", x = 12, y = 12, width = 12, height = 6
        properties = {
          title = "API: requests, 4xx, 5xx", region = var.region, view = "timeSeries", stat = "Sum", period = 300
          metrics = [for m in ["Count", "4XXError", "5XXError"] :
            ["AWS/ApiGateway", m, "ApiName", aws_api_gateway_rest_api.rest_api.name, "Stage", aws_api_gateway_stage.rest_api.stage_name]
          ]
        }
      },
      {
        type = "metric", x = 0, y = 18, width = 12, height = 6
        properties = {
          title = "Functions: errors and throttles", region = var.region, view = "timeSeries", stat = "Sum", period = 300
          # concat, not flatten: each metric must stay an array of its own
          # (flatten made one flat list, which PutDashboard rejects).
          metrics = concat([for name, fn in local.chalice_function_names : [
            ["AWS/Lambda", "Errors", "FunctionName", fn, { label = "${name} errors" }],
            ["AWS/Lambda", "Throttles", "FunctionName", fn, { label = "${name} throttles" }],
          ]]...)
        }
      },
      {
        type = "metric", x = 12, y = 18, width = 12, height = 6
        properties = {
          title = "API latency ms (p50, p99) and failed S3 events", region = var.region, view = "timeSeries", period = 300
          metrics = [
            ["AWS/ApiGateway", "Latency", "ApiName", aws_api_gateway_rest_api.rest_api.name, "Stage", aws_api_gateway_stage.rest_api.stage_name, { stat = "p50" }],
            ["AWS/ApiGateway", "Latency", "ApiName", aws_api_gateway_rest_api.rest_api.name, "Stage", aws_api_gateway_stage.rest_api.stage_name, { stat = "p99" }],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.failed_events.name, { stat = "Maximum", yAxis = "right" }],
          ]
        }
      },
    ], local.job_dashboard_widgets) # infra/jobs.tf
  })
}
