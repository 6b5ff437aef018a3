"""Results people look at outside keyframe-qa: finished runs read back (runs.py), and written for players
and spreadsheets (players.py: WebVTT, CSV) and for FiftyOne (fiftyone.py)."""
