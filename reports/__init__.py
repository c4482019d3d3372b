"""reports: the `egress` command line and the monthly report renderings."""
