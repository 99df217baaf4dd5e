"""Models: architectures (torch), preprocessing, versioned artifacts, the registry and the serving client."""
