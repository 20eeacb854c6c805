# Copied next to the packaged stack for the local rehearsal only (never into
# build/stack): the endpoint comes from AWS_ENDPOINT_URL, which the rehearsal
# points at its moto server on loopback.
provider "aws" {
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = false # moto answers sts:GetCallerIdentity
  s3_use_path_style           = true
}
