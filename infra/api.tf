# The REST API and its stage come from Chalice via the build step
# (aws_api_gateway_rest_api.rest_api, aws_api_gateway_stage.rest_api), which
# marks every operation as requiring an API key, puts API Gateway's own error
# responses into the API body (infra/stack.py, GATEWAY_RESPONSES), names the
# API after the environment and makes it var.api_endpoint_type; this file
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
