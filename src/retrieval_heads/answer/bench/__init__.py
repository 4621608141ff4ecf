"""`rheads answer bench`: the answering methods on generated item families, judged on the model's own answers.

Items: `items.py`; metrics and tables: `evaluate.py`; the run: `run.py`.
"""
