"""Everything that talks to PostgreSQL: connections, migrations and the queue functions' wrappers."""
