"""Device credentials: the device CA, CRLs, sealed secrets and label codes."""
