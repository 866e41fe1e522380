"""Loaders that bring outside data into the warehouse's raw schema: pure parsers plus idempotent loads."""
