"""Evaluation: label files read and checked, replies scored per kind, and the statistics of a comparison
(cluster bootstrap over videos, paired differences, McNemar). Pure: no model, no video decoding."""
