"""Developer tooling for running the service locally. Never packaged for Lambda."""
