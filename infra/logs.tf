# One group per Chalice function, created before the function so Lambda never
# creates it without a retention. local.chalice_function_names is written into
# chalice.tf.json by the build step (infra/stack.py).
resource "aws_cloudwatch_log_group" "lambda" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every group at rest; the functions log no secrets, so a customer key would add cost only
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 7, see the cost section of infra/README.md); raise it where compliance asks for a year
  for_each = local.chalice_function_names

  name              = "/aws/lambda/${each.value}"
  retention_in_days = var.log_retention_days
}
