"""Build-time and operator tools of the deployment, run as modules from the project root (``python -m infra.stack``)."""
