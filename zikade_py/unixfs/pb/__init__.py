"""Generated protobuf code for UnixFS data (regenerate with ``scripts/gen-protos``)."""
