"""Generated protobuf code for the Kademlia wire messages (regenerate with ``scripts/gen-protos``).

Kept as checked-in ``*_pb2.py`` so the package needs no protoc at install time.
"""
