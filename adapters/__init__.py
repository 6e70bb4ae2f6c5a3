"""The agency node: an aggregate-only gRPC service over the agency's own store."""
