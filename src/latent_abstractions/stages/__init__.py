"""Stage functions: one per workflow rule, the only code that reads and writes a rule's files.

A rule names files; its script (workflow/scripts/<rule>.py) turns ``snakemake.*`` into typed values and calls
one function here; that function reads its inputs, calls the pure science modules (tensors and arrays in and
out), and writes its outputs atomically with provenance. Modules group rules by stage and by environment:
``data``, ``train``, ``sample``, ``measure``, ``exact_filter`` (torch env), ``probes`` (analysis env, no torch)
and ``report`` (report env, no torch).
"""
