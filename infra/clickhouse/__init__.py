"""ClickHouse: connections, the schema (versioned SQL migrations) and provisioning."""
