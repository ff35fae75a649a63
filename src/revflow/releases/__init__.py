"""Release actions that span features: a rollback that also starts a migration."""
