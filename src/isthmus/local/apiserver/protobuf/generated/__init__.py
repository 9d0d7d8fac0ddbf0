"""Generated protobuf code for a subset of Kubernetes' API types. Do not edit: the sources are
../proto/**/*.proto, and scripts/gen-protos.sh regenerates this package."""
