"""The toolkit's version and the version of the result-file formats it writes.

Left out on purpose: anything else; this module imports nothing so every layer can use it.
"""

__version__ = "0.2.0"
FORMAT_VERSION = 1  # result files (config.json, JSONL headers, summaries); readers refuse a newer one
