# The REST API and its stage come from Chalice via the build step
# (aws_api_gateway_rest_api.rest_api, aws_api_gateway_stage.rest_api), which
# marks every operation as requiring an API key; this file
# issues one key bound to a throttled usage plan. `chalice local` is never
# packaged, so the local stage stays open.
resource "aws_api_gateway_api_key" "client" {
  name        = "${local.name}-client"
  description = "Key for clients of the ${local.name} API (header x-api-key)"
  enabled     = true
}

resource "aws_api_gateway_usage_plan" "this" {
  name = "${local.name}-usage-plan"

  api_stages {
    api_id = aws_api_gateway_rest_api.rest_api.id
    stage  = aws_api_gateway_stage.rest_api.stage_name
  }

  throttle_settings {
    rate_limit  = var.api_throttle_rate_limit
    burst_limit = var.api_throttle_burst_limit
  }

  dynamic "quota_settings" {
    for_each = var.api_quota_per_day > 0 ? [var.api_quota_per_day] : []
    content {
      limit  = quota_settings.value
      period = "DAY"
    }
  }
}

resource "aws_api_gateway_usage_plan_key" "client" {
  key_id        = aws_api_gateway_api_key.client.id
  key_type      = "API_KEY"
  usage_plan_id = aws_api_gateway_usage_plan.this.id
}

# API Gateway's own errors (a missing or wrong API key, an unknown route,
# throttling, an integration failure) in the service's documented error
# shape rather than API Gateway's {"message": ...}. $context.error.messageString
# is already a quoted JSON string. The build step makes the deployment wait
# for these and redeploy when they change (API Gateway applies them only
# through a deployment).
locals {
  gateway_error_templates = {
    DEFAULT_4XX = "{\"error\":\"INVALID_REQUEST\",\"message\":$context.error.messageString,\"requestId\":\"$context.requestId\"}"
    DEFAULT_5XX = "{\"error\":\"PROCESSING_FAILED\",\"message\":$context.error.messageString,\"requestId\":\"$context.requestId\"}"
  }
}

resource "aws_api_gateway_gateway_response" "errors" {
  for_each      = local.gateway_error_templates
  rest_api_id   = aws_api_gateway_rest_api.rest_api.id
  response_type = each.key

  response_templates = {
    "application/json" = each.value
  }
}
