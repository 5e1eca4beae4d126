"""Capture servers standing in for Twilio and SMTP in tests and the demo."""
