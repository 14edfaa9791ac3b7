"""The database and the job protocol: tables, migrations, CRUD, statuses, limits, claims."""
