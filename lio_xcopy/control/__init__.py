"""Control plane: provisioning through rtslib-fb, the CLI, service glue."""
