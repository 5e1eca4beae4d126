"""Notifications: rules, templates, the durable outbox and the SMS, email and webhook channels."""
