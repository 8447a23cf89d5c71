"""Stage functions: one per rule, all the file I/O of that rule, around the pure science modules."""
