"""The sidecar agent: Envoy bootstrap, running Envoy, health on the status port."""
