"""The files keyframe-qa writes (paths.py: checked first, never destroying anything) and its caches
(cache.py: nothing read from them trusted). A foundation below every stage: any stage may use them."""
