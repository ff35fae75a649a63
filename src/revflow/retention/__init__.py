"""Pruning: what finished work leaves behind, deleted once it is older than its retention."""
