"""An AI agent's side of x402: a paying HTTP client and a research task that buys data per call."""

from clearhouse.agent.client import PayingClient, PaymentRefused, Purchase

__all__ = ["PayingClient", "PaymentRefused", "Purchase"]
