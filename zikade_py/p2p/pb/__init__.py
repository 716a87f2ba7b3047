"""Generated protobuf code for the p2p layer (regenerate with ``scripts/gen-protos``)."""
