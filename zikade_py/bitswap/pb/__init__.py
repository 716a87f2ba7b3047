"""Generated protobuf code for Bitswap messages (regenerate with ``scripts/gen-protos``)."""
