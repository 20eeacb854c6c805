# One group per Chalice function, created before the function so Lambda never
# creates it without a retention. local.chalice_function_names is written into
# chalice.tf.json by the build step (infra/stack.py).
resource "aws_cloudwatch_log_group" "lambda" {
  for_each = local.chalice_function_names

  name              = "/aws/lambda/${each.value}"
  retention_in_days = var.log_retention_days
}
