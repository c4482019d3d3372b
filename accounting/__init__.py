"""accounting: attribute flows to members, bin them, store them, and share the invoice."""
