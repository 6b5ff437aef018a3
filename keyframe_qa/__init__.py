"""keyframe-qa."""
