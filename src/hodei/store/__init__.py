"""PostgreSQL, the only state: named SQL queries, migrations, repositories, embedded server."""
