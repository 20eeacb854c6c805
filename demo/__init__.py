"""The demonstration client: contract checks, workflow and reports (never packaged into the Lambda)."""
