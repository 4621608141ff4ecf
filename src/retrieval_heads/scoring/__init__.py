"""Scoring: the paper's copy score, ROUGE, and the answer judge.

Left out on purpose: running models; everything here works on token ids and strings.
"""
