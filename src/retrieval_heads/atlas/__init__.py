"""The head atlas: head scores as versioned, reusable files, so `atlas:NAME` works wherever a scores.json does.

    rheads niah --model smollm2-135m --mask top:20 --scores atlas:smollm2-135m
    HeadScores.load("atlas:paper-llama-2-7b-80k")      # the paper's published scores, per-head means
    check_model("atlas:smollm2-135m", model)            # refuse other dimensions, warn on other weights

`entry.py` is the file format, `store.py` the shipped and user folders and lookup by name, `match.py` the check
against a loaded model, `build.py` makes entries from detection runs and from the paper's score files.

Left out on purpose: per-sample scores (entries keep per-head means and counts) and any download.
"""

from .entry import FORMAT, VERSION, AtlasEntry, read_entry, write_entry
from .match import check_match, check_model, file_sha256, weights_file
from .store import ATLAS_ENV, PREFIX, SHIPPED_DIR, find_entry, is_atlas_spec, list_entries, user_dir

__all__ = ["ATLAS_ENV", "FORMAT", "PREFIX", "SHIPPED_DIR", "VERSION", "AtlasEntry", "check_match", "check_model",
           "file_sha256", "find_entry", "is_atlas_spec", "list_entries", "read_entry", "user_dir", "weights_file",
           "write_entry"]
