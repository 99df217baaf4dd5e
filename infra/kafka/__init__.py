"""Kafka: clients configured from settings, and provisioning of the contract's topics."""
