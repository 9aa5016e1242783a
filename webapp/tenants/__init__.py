"""Tenants, plans and tenant users."""
