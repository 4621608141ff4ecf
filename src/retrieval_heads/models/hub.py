"""Hub ids before loading: fail in one line, at once, when a hub id can be neither downloaded nor read from the cache.

`check_hub(repo_id)` looks in the local Hugging Face cache (`try_to_load_from_cache`, no network) and makes one
metadata request (HEAD of config.json, a short timeout, no retries) to the Hub, and returns whether to load
from the cache only:
- cached, Hub reachable: False (transformers loads it and checks for updates as usual);
- cached, Hub unreachable or refusing: True (load the cached files without transformers' retries);
- not cached: the one request tells a missing or gated repo (one line) from a Hub that cannot be reached, or
  that `HF_HUB_OFFLINE` forbids (one line, without any request), each naming `rheads models` for the models
  that load offline.

Left out on purpose: revisions other than `main`, and downloading anything ourselves (transformers does).
"""

from __future__ import annotations

import functools

from ..errors import RHeadsError

TIMEOUT_S = 5.0  # the metadata request's limit; a reachable Hub answers well within it
_OFFLINE_HINT = "list the models that load offline with `rheads models`, or pass a local model directory or .gguf file"


def _cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a malformed id or cache: as good as not cached
        return False


def _probe(repo_id: str) -> str | None:
    """None when the Hub serves the repo's config.json; else why not: 'missing', 'gated' or a network error."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=TIMEOUT_S)
    except GatedRepoError:
        return "gated"
    except (RepositoryNotFoundError, EntryNotFoundError):
        return "missing"
    except Exception as err:  # no network, DNS, timeout, proxy, server error: the Hub cannot be used now
        text = str(err).splitlines()[0] if str(err) else ""
        return f"{type(err).__name__}: {text}" if text else type(err).__name__
    return None


@functools.lru_cache(maxsize=64)  # one request per id and process (the CLI checks before the heavy imports)
def check_hub(repo_id: str) -> bool:
    """Whether to load `repo_id` from the local cache only; raises a one-line RHeadsError when it cannot load."""
    from huggingface_hub import constants

    cached = _cached(repo_id)
    if constants.HF_HUB_OFFLINE:
        if cached:
            return True
        raise RHeadsError(f"model '{repo_id}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
                          f"{_OFFLINE_HINT}")
    why = _probe(repo_id)
    if why is None:
        return False
    if cached:
        return True
    if why == "missing":
        raise RHeadsError(f"no model '{repo_id}' on the Hugging Face Hub (or it is private): check the id; "
                          f"{_OFFLINE_HINT}")
    if why == "gated":
        raise RHeadsError(f"model '{repo_id}' is gated on the Hugging Face Hub: accept its terms there and log in "
                          f"(`hf auth login`); or {_OFFLINE_HINT}")
    raise RHeadsError(f"model '{repo_id}' is not in the local Hugging Face cache and the Hub cannot be reached "
                      f"({why}): check your network; or {_OFFLINE_HINT}")
