# The REST API and its stage come from Chalice via the build step
# (aws_api_gateway_rest_api.rest_api, aws_api_gateway_stage.rest_api), which
# marks every operation as requiring an API key, puts API Gateway's own error
# responses into the API body (infra/stack.py, GATEWAY_RESPONSES), names the
# API after the environment and makes it var.api_endpoint_type; this file
# issues one key bound to a throttled usage plan (with var.api_auth = "iam"
# the body requires SigV4 instead, infra/stack.py offer_iam_auth, and the key
# goes unused). `chalice local` is never
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

# With api_auth = "iam" every operation needs a SigV4 signature of an AWS
# principal allowed execute-api:Invoke on this stage: attach this policy to
# the callers' roles or users (output api_invoke_policy_arn).
resource "aws_iam_policy" "invoke" {
  count       = var.api_auth == "iam" ? 1 : 0
  name        = "${local.global_name}-invoke"
  description = "Call every route of the ${local.name} API (SigV4)"
  policy      = data.aws_iam_policy_document.invoke.json
}

data "aws_iam_policy_document" "invoke" {
  statement {
    sid       = "InvokeThisStage"
    actions   = ["execute-api:Invoke"]
    resources = ["${aws_api_gateway_rest_api.rest_api.execution_arn}/${aws_api_gateway_stage.rest_api.stage_name}/*/*"]
  }
}
