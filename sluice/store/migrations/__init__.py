"""Alembic migrations for Sluice's SQL schema (a package so wheels ship them)."""
