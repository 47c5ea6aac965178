"""A Django database backend that runs an embedded PostgreSQL (with pgvector) when no DATABASE_URL is given."""
