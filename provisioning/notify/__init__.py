"""Verification-code delivery behind one small interface."""
