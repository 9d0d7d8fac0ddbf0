"""`isthmus discovery`: the control plane's discovery process (the seed's istio-pilot): service discovery across
clusters, mesh config, and (next) the xDS server, with its debug and monitoring endpoints."""
