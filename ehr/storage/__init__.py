"""Relational storage: SQLAlchemy tables, engine set-up and the low-level repository."""
