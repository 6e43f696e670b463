"""Storage: tables, migrations, and the queries the shell runs. SQLite and PostgreSQL share
every line here except claiming work, which is dialect-specific by design."""
