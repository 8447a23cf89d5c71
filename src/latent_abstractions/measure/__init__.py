"""The measurements on the tau grid and their references: network features, linear probes, mutual information from
score gaps, forking, the exact filter of the dataset, sample quality, emergence times and the agreement table.
Tensors and arrays in and out; no file I/O."""
