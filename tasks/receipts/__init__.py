"""Delivery receipts: providers' events (SendGrid's Event Webhook, GatewayAPI's delivery reports)
read back into the ledger by key, the suppression list they feed, and the reach they show."""
