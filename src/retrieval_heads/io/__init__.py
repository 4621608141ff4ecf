"""Result files: JSONL records flushed as they go, atomic JSON writes, and run directories that resume.

Left out on purpose: any database or binary format.
"""
