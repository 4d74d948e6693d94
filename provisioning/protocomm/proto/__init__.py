"""Generated protobuf modules for protocomm (regenerate with ``scripts/gen_protos.py``)."""
