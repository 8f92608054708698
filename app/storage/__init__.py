"""The only package that imports SQLModel/SQLAlchemy: tables, engines, the SQL store."""
