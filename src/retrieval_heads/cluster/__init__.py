"""Past one machine: shards of a run (`shard.py`), their merge (`merge.py`), and launchers onto Ray and Slurm.

Left out on purpose: a scheduler of our own; the launchers hand the shards to an existing engine.
"""
