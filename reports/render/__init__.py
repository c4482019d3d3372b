"""Renderers of a monthly report: table, CSV, JSON."""
