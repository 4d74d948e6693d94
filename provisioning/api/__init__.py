"""The HTTP/JSON API the mobile app talks to."""
