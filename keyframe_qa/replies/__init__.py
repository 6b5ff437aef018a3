"""Reading model replies: boxes (boxes.py), time spans (moments.py), and the tolerant reader both
share (reading.py). Pure text in, records out: nothing here loads a model or reads a video."""
