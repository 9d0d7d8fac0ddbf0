"""xDS: the ADS server and its generators (cds, eds, lds, rds) that configure Envoy sidecars and proxyless gRPC."""
