"""Kubernetes team environments (DESIGN.md §4): manifests, validation, server-side apply, status.

`manifests` is pure (Application + DeployConfig -> dicts), `validation` checks them before
anything is applied, `client` talks to the API server, `environment` ties them together
(`deploy`, `undeploy`, `status`). Heavy modules (`kubernetes`, `jsonschema`) load on first use.
"""
