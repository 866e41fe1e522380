"""Fraud models: PaySim-layout import, point-in-time features, training, a model registry."""
