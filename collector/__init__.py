"""collector: from capture files and UDP sockets to FlowBatches (standard library and numpy only)."""
