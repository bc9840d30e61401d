"""Browser tests: headless Chromium against a real gateway served on a TCP port."""
