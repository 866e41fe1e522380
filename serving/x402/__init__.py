"""x402: HTTP 402 pay-per-call for merchants' APIs, a local facilitator over a simulated chain,
and agent payment tokens. See docs/architecture.md ("x402 gateway") for the flow."""
