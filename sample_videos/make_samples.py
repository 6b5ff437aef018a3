"""Regenerate the generated sample clips in this folder: `uv run python sample_videos/make_samples.py`.

scenes.mp4: 320x240, 10 fps, 12 s, three scenes with cuts at 4.0 s and 8.0 s (frames 40 and 80).
Every frame carries its frame number as a row of black/white cells (bit 0 on the left) and a red
marker in its top-left corner; each scene has its own background colour. Keyframes every 2 s,
two B-frames between references, H.264 in MP4.

phone_rotated.mp4: 320x240 coded, 10 fps, 3 s, with phone-style rotation metadata (a player
turns it 90 degrees clockwise and shows it 240x320).
"""

import os

from keyframe_qa.testing.synthetic import SyntheticSpec, write_video

HERE = os.path.dirname(os.path.abspath(__file__))

SAMPLES = {
    "scenes.mp4": SyntheticSpec(width=320, height=240, fps=10, frame_count=120, cuts=(40, 80), gop=20, bframes=2),
    "phone_rotated.mp4": SyntheticSpec(width=320, height=240, fps=10, frame_count=30, rotation=90, gop=10),
}

if __name__ == "__main__":
    for name, spec in SAMPLES.items():
        write_video(os.path.join(HERE, name), spec)
        print(f"wrote {name}")
